//! What the dashboard's pages show, read for one user: only the caches they can see count.
//! Each page's data comes from one read transaction, so its numbers agree with each other.

use chrono::{Duration, NaiveDateTime};

use super::identity::access::{Access, look_up, readable_cache_ids};
use super::identity::auth::Caller;
use crate::db::browse::{self, PathRow, SortKey, Totals};
use crate::db::models::{Cache, Reclaim, User};
use crate::db::traffic::{self, TrafficDelta};
use crate::db::{AnyConnection, Db, DbError, DbResult, caches, lifecycle, now};

/// The overview: totals, traffic by hour since `since`, the latest pushes.
pub struct Overview {
    pub totals: Totals,
    pub hourly: Vec<(NaiveDateTime, TrafficDelta)>,
    /// (cache, store path base name, when), newest first.
    pub recent: Vec<(String, String, NaiveDateTime)>,
    /// Bytes garbage collection deleted from storage in the last 30 days (all caches).
    pub reclaimed: i64,
    /// See [`overview_stamp`].
    pub stamp: String,
}

/// A fingerprint of what the overview shows `user`: the visible caches' contents and this
/// hour's traffic. Cheap, and from the database, so any replica answers the same.
fn stamp_with(conn: &mut AnyConnection, ids: Option<&[i64]>) -> DbResult<String> {
    let contents = browse::contents_stamp(conn, ids)?;
    let this_hour = traffic::hourly(conn, ids, traffic::current_hour())?;
    let (hits, misses, bytes) = this_hour
        .iter()
        .fold((0, 0, 0), |(h, m, b), (_, d)| (h + d.narinfo_hits, m + d.narinfo_misses, b + d.nar_bytes));
    let caches = browse::caches_by_ids(conn, ids)?.len();
    Ok(format!("{contents}-{caches}-{hits}-{misses}-{bytes}"))
}

pub async fn overview_stamp(db: &Db, user: &User) -> Result<String, DbError> {
    let caller = Caller::session(user);
    db.read(move |c| {
        let ids = readable_cache_ids(c, &caller)?;
        stamp_with(c, ids.as_deref())
    })
    .await
}

pub async fn overview(db: &Db, user: &User, since: NaiveDateTime) -> Result<Overview, DbError> {
    let caller = Caller::session(user);
    db.read(move |c| {
        let ids = readable_cache_ids(c, &caller)?;
        Ok(Overview {
            totals: browse::totals(c, ids.as_deref())?,
            hourly: traffic::hourly(c, ids.as_deref(), since)?,
            recent: traffic::recent_pushes(c, ids.as_deref(), 10)?,
            reclaimed: lifecycle::reclaimed_bytes_since(c, now() - Duration::days(30), "gc")?,
            stamp: stamp_with(c, ids.as_deref())?,
        })
    })
    .await
}

/// A cache in the list: its size and quota.
pub struct CacheSummary {
    pub cache: Cache,
    pub paths: i64,
    pub bytes: i64,
}

/// The caches `user` can see, by name.
pub async fn visible_caches(db: &Db, user: &User) -> Result<Vec<CacheSummary>, DbError> {
    let caller = Caller::session(user);
    db.read(move |c| {
        let ids = readable_cache_ids(c, &caller)?;
        let mut rows = Vec::new();
        for cache in browse::caches_by_ids(c, ids.as_deref())? {
            let (paths, bytes) = browse::cache_sizes(c, cache.id)?;
            rows.push(CacheSummary { cache, paths, bytes });
        }
        Ok(rows)
    })
    .await
}

/// The cache named `name` with `user`'s access and its public keys, if they can see it.
pub async fn readable(db: &Db, user: &User, name: &str) -> Result<Option<(Cache, Access, Vec<String>)>, DbError> {
    let (name, caller) = (name.to_string(), Caller::session(user));
    db.read(move |c| {
        let Some((cache, access)) = look_up(c, Some(&caller), &name)?.visible() else { return Ok(None) };
        let keys = caches::public_keys(c, cache.id)?;
        Ok(Some((cache, access, keys)))
    })
    .await
}

/// One page of a cache's paths: the rows, how many match in all, and the cache's contents
/// stamp (see [`browse::contents_stamp`]).
pub struct PathsPage {
    pub rows: Vec<PathRow>,
    pub total: i64,
    pub stamp: String,
}

pub async fn paths_page(
    db: &Db,
    cache_id: i64,
    search: String,
    sort: SortKey,
    desc: bool,
    page: i64,
) -> Result<PathsPage, DbError> {
    db.read(move |c| {
        let stamp = browse::contents_stamp(c, Some(&[cache_id]))?;
        let (rows, total) = browse::paths_page(c, cache_id, &search, sort, desc, page)?;
        Ok(PathsPage { rows, total, stamp })
    })
    .await
}

/// The latest eviction and retention run of the cache, and the latest garbage collection
/// (which works across caches).
pub async fn latest_reclaims(db: &Db, cache_id: i64) -> Result<Vec<Reclaim>, DbError> {
    db.read(move |c| {
        let mut found = lifecycle::latest_reclaims(c, Some(cache_id))?;
        found.retain(|r| r.kind != "fsck");
        found.extend(lifecycle::latest_reclaims(c, None)?.into_iter().filter(|r| r.kind == "gc"));
        Ok(found)
    })
    .await
}
