//! Read models for the dashboard and the API: totals, per-cache sizes, the path browser.

use chrono::NaiveDateTime;
use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable};

use super::models::Cache;
use super::schema::{caches, nars, store_paths};
use super::{AnyConnection, DbResult};

pub const PAGE_SIZE: i64 = 50;

#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub caches: i64,
    pub paths: i64,
    /// Bytes stored once per NAR.
    pub stored_bytes: i64,
    /// Bytes the same paths would take if every cache stored its own copy.
    pub logical_bytes: i64,
}

/// SUM of NAR file sizes as BIGINT: diesel types a SUM of BIGINT as NUMERIC, which the
/// two-backend connection cannot read.
fn stored_bytes() -> diesel::expression::SqlLiteral<Nullable<BigInt>> {
    sql("CAST(SUM(nars.file_size) AS BIGINT)")
}

fn as_i64(n: Option<i64>) -> i64 {
    n.unwrap_or(0)
}

pub fn totals(conn: &mut AnyConnection, cache_ids: Option<&[i64]>) -> DbResult<Totals> {
    let mut paths = store_paths::table.inner_join(nars::table).into_boxed();
    let mut distinct = nars::table.into_boxed();
    let mut cache_count = caches::table.into_boxed();
    if let Some(ids) = cache_ids {
        paths = paths.filter(store_paths::cache_id.eq_any(ids.to_vec()));
        let used = store_paths::table.filter(store_paths::cache_id.eq_any(ids.to_vec())).select(store_paths::nar_id);
        distinct = distinct.filter(nars::id.eq_any(used));
        cache_count = cache_count.filter(caches::id.eq_any(ids.to_vec()));
    }
    let (count, logical): (i64, Option<i64>) = paths.select((count_star(), stored_bytes())).first(conn)?;
    let stored: Option<i64> = distinct.select(stored_bytes()).first(conn)?;
    Ok(Totals {
        caches: cache_count.count().get_result(conn)?,
        paths: count,
        stored_bytes: as_i64(stored),
        logical_bytes: as_i64(logical),
    })
}

/// A fingerprint of these caches' contents (`None`: all): it changes whenever a path is
/// added or removed, so a live dashboard view can tell, cheaply and from any replica,
/// whether it needs drawing again.
pub fn contents_stamp(conn: &mut AnyConnection, cache_ids: Option<&[i64]>) -> DbResult<String> {
    let mut paths = store_paths::table.into_boxed();
    if let Some(ids) = cache_ids {
        paths = paths.filter(store_paths::cache_id.eq_any(ids.to_vec()));
    }
    let (count, newest): (i64, Option<i64>) =
        paths.select((count_star(), diesel::dsl::max(store_paths::id))).first(conn)?;
    Ok(format!("{count}-{}", newest.unwrap_or(0)))
}

/// Bytes of the cache's NAR files that other caches use too: storage deduplication saves.
pub fn shared_bytes(conn: &mut AnyConnection, cache_id: i64) -> DbResult<i64> {
    let own = store_paths::table.filter(store_paths::cache_id.eq(cache_id)).select(store_paths::nar_id);
    let others = store_paths::table.filter(store_paths::cache_id.ne(cache_id)).select(store_paths::nar_id);
    let bytes: Option<i64> =
        nars::table.filter(nars::id.eq_any(own)).filter(nars::id.eq_any(others)).select(stored_bytes()).first(conn)?;
    Ok(as_i64(bytes))
}

/// Path count and bytes per cache.
pub fn cache_sizes(conn: &mut AnyConnection, cache_id: i64) -> DbResult<(i64, i64)> {
    let (count, bytes): (i64, Option<i64>) = store_paths::table
        .inner_join(nars::table)
        .filter(store_paths::cache_id.eq(cache_id))
        .select((count_star(), stored_bytes()))
        .first(conn)?;
    Ok((count, as_i64(bytes)))
}

pub fn caches_by_ids(conn: &mut AnyConnection, ids: Option<&[i64]>) -> DbResult<Vec<Cache>> {
    let mut query = caches::table.order(caches::name).select(Cache::as_select()).into_boxed();
    if let Some(ids) = ids {
        query = query.filter(caches::id.eq_any(ids.to_vec()).or(caches::is_public.eq(true)));
    }
    Ok(query.load(conn)?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Path,
    Size,
    Created,
    LastAccess,
    Accesses,
}

impl SortKey {
    pub const ALL: [SortKey; 5] = [Self::Path, Self::Size, Self::Created, Self::LastAccess, Self::Accesses];

    pub fn name(self) -> &'static str {
        match self {
            Self::Path => "path",
            Self::Size => "size",
            Self::Created => "created",
            Self::LastAccess => "last-access",
            Self::Accesses => "accesses",
        }
    }

    pub fn parse(s: &str) -> Self {
        Self::ALL.into_iter().find(|k| k.name() == s).unwrap_or(Self::Created)
    }
}

#[derive(Debug, Clone, Queryable)]
pub struct PathRow {
    pub hash_part: String,
    pub name: String,
    pub nar_size: i64,
    pub file_size: i64,
    pub created_at: NaiveDateTime,
    pub last_accessed_at: Option<NaiveDateTime>,
    pub access_count: i64,
}

/// One page of a cache's paths whose name or hash contains `search` (a base name,
/// `<hash>-<name>`, finds that path).
pub fn paths_page(
    conn: &mut AnyConnection,
    cache_id: i64,
    search: &str,
    sort: SortKey,
    descending: bool,
    page: i64,
) -> DbResult<(Vec<PathRow>, i64)> {
    let filtered = || {
        let mut q = store_paths::table.inner_join(nars::table).filter(store_paths::cache_id.eq(cache_id)).into_boxed();
        let base_name_hash = search.get(..32).filter(|hash| {
            search.as_bytes().get(32) == Some(&b'-') && hibernation::nix::store_path::is_hash_part(hash)
        });
        if let Some(hash) = base_name_hash {
            q = q.filter(store_paths::hash_part.eq(hash.to_string()));
        } else if !search.is_empty() {
            let pattern = format!("%{}%", search.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q = q.filter(
                store_paths::name
                    .like(pattern.clone())
                    .escape('\\')
                    .or(store_paths::hash_part.like(pattern).escape('\\')),
            );
        }
        q
    };
    let total: i64 = filtered().count().get_result(conn)?;
    let mut query = filtered();
    query = match (sort, descending) {
        (SortKey::Path, false) => query.order((store_paths::name.asc(), store_paths::id.asc())),
        (SortKey::Path, true) => query.order((store_paths::name.desc(), store_paths::id.desc())),
        (SortKey::Size, false) => query.order((nars::nar_size.asc(), store_paths::id.asc())),
        (SortKey::Size, true) => query.order((nars::nar_size.desc(), store_paths::id.desc())),
        (SortKey::Created, false) => query.order(store_paths::id.asc()),
        (SortKey::Created, true) => query.order(store_paths::id.desc()),
        (SortKey::LastAccess, false) => query.order((store_paths::last_accessed_at.asc(), store_paths::id.asc())),
        (SortKey::LastAccess, true) => query.order((store_paths::last_accessed_at.desc(), store_paths::id.desc())),
        (SortKey::Accesses, false) => query.order((store_paths::access_count.asc(), store_paths::id.asc())),
        (SortKey::Accesses, true) => query.order((store_paths::access_count.desc(), store_paths::id.desc())),
    };
    let rows = query
        .select((
            store_paths::hash_part,
            store_paths::name,
            nars::nar_size,
            nars::file_size,
            store_paths::created_at,
            store_paths::last_accessed_at,
            store_paths::access_count,
        ))
        .limit(PAGE_SIZE)
        .offset(page.max(0) * PAGE_SIZE)
        .load(conn)?;
    Ok((rows, total))
}
