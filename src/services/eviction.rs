//! Making room in a cache without breaking a closure: eviction when a push would take the
//! cache over its quota (in the order of the cache's policy), and retention (paths unused for
//! longer than the cache keeps them).
//!
//! Only paths nothing else in the cache references are removed, so every path left keeps all
//! its references; the references of a removed path may go in a later round. Pinned closures
//! and recently pushed paths (a push in progress needs its paths) are never removed. NARs no
//! path uses any more are left for garbage collection, after its grace period.

use chrono::NaiveDateTime;

use crate::db::lifecycle::{self, NewReclaim, Removable, Selection};
use crate::db::models::{Cache, QuotaPolicy};
use crate::db::{Db, DbResult, browse, now};

/// Paths considered in the first transaction; each next one doubles, up to `LAST_ROUND`:
/// most evictions need a few paths and answer fast, large ones amortise the search (about
/// half a second per round at 200,000 paths on SQLite).
const FIRST_ROUND: usize = 100;
const LAST_ROUND: usize = 1600;

static MIN_AGE: std::sync::OnceLock<chrono::Duration> = std::sync::OnceLock::new();

/// Sets EVICTION_MIN_AGE for this process (at start).
pub fn configure(min_age: chrono::Duration) {
    let _ = MIN_AGE.set(min_age);
}

/// Paths pushed at or after this are too young to evict.
pub fn pushed_before() -> NaiveDateTime {
    now() - MIN_AGE.get().copied().unwrap_or_else(|| crate::config::Lifecycle::default().eviction_min_age)
}

/// What a run removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    pub paths: i64,
    pub bytes: i64,
}

/// Serialises evictions within this process (two pushes at the quota at once would both
/// evict); replicas may overlap, which at worst frees a little more than needed.
static EVICTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Removes paths in the cache's policy order until `needed` bytes are freed or nothing more
/// may go. Paths pushed after `pushed_before` stay, and so do the paths named in `needed_by_push`
/// (base names: the references of the path being pushed).
pub async fn evict(
    db: &Db,
    cache: &Cache,
    needed: i64,
    pushed_before: NaiveDateTime,
    needed_by_push: &[String],
) -> DbResult<Removed> {
    let _one_at_a_time = EVICTING.lock().await;
    let (cache_id, order) = (cache.id, cache.policy());
    let needed_by_push = needed_by_push.to_vec();
    let removed = remove_rounds(db, cache_id, move |c, removed: Removed, round: usize| {
        if removed.bytes >= needed {
            return Ok(Vec::new());
        }
        let mut keep = lifecycle::pinned_closure(c, cache_id, now())?;
        keep.extend(lifecycle::path_ids(c, cache_id, &needed_by_push)?);
        let selection = Selection { cache_id, order, pushed_before, unused_since: None, keep: &keep };
        let mut left = needed - removed.bytes;
        // Only as many as the bytes still needed: the first paths in order, nothing more.
        Ok(lifecycle::removable_paths(c, &selection, round)?
            .into_iter()
            .take_while(|p| {
                let take = left > 0;
                left -= p.file_size;
                take
            })
            .collect())
    })
    .await?;
    record(db, cache, "eviction", removed).await;
    Ok(removed)
}

/// Evicts what takes the cache over its quota, when its policy evicts.
pub async fn fit_quota(db: &Db, cache: &Cache) -> DbResult<Removed> {
    let Some(quota) = cache.quota_bytes.filter(|_| cache.policy().evicts()) else { return Ok(Removed::default()) };
    let used = used_bytes(db, cache.id).await?;
    if used <= quota {
        return Ok(Removed::default());
    }
    evict(db, cache, used - quota, pushed_before(), &[]).await
}

/// Removes the paths unused (not downloaded, or pushed when never downloaded) since
/// `unused_since`, with the closure rule: a path something in the cache still needs stays.
pub async fn apply_retention(
    db: &Db,
    cache: &Cache,
    unused_since: NaiveDateTime,
    pushed_before: NaiveDateTime,
) -> DbResult<Removed> {
    let cache_id = cache.id;
    let removed = remove_rounds(db, cache_id, move |c, _, round: usize| {
        let keep = lifecycle::pinned_closure(c, cache_id, now())?;
        let selection = Selection {
            cache_id,
            order: QuotaPolicy::Lru,
            pushed_before,
            unused_since: Some(unused_since),
            keep: &keep,
        };
        lifecycle::removable_paths(c, &selection, round)
    })
    .await?;
    record(db, cache, "retention", removed).await;
    Ok(removed)
}

/// Runs rounds of (choose up to so many paths, remove them) in one transaction each, until
/// a round chooses nothing or removes nothing.
async fn remove_rounds<F>(db: &Db, cache_id: i64, choose: F) -> DbResult<Removed>
where
    F: Fn(&mut crate::db::AnyConnection, Removed, usize) -> DbResult<Vec<Removable>> + Clone + Send + 'static,
{
    let mut removed = Removed::default();
    let mut size = FIRST_ROUND;
    loop {
        let choose = choose.clone();
        // Chosen to end a deadlock with a concurrent commit: the round chooses again.
        let round = db
            .write_retrying(
                |_| false,
                move |c| {
                    let mut round = Removed::default();
                    for path in choose(c, removed, size)? {
                        if lifecycle::remove_path(c, cache_id, &path, now())? {
                            round.paths += 1;
                            round.bytes += path.file_size;
                        }
                    }
                    Ok(round)
                },
            )
            .await?;
        if round.paths == 0 {
            return Ok(removed);
        }
        removed.paths += round.paths;
        removed.bytes += round.bytes;
        size = (size * 2).min(LAST_ROUND);
    }
}

async fn record(db: &Db, cache: &Cache, kind: &'static str, removed: Removed) {
    if removed.paths == 0 {
        return;
    }
    let (cache_id, name) = (cache.id, &cache.name);
    tracing::info!("{kind} removed {} paths ({} bytes) from cache {name}", removed.paths, removed.bytes);
    crate::services::metrics::reclaimed(name, kind, removed.paths as u64, removed.bytes as u64);
    let reclaim = move |c: &mut crate::db::AnyConnection| {
        let entry =
            NewReclaim { cache_id: Some(cache_id), kind, paths: removed.paths, bytes: removed.bytes, objects: 0 };
        lifecycle::record_reclaim(c, &entry, now())
    };
    if let Err(e) = db.write(reclaim).await {
        tracing::warn!("could not record the {kind} of cache {name}: {e}");
    }
}

/// Bytes of NARs the cache holds and NARs uploaded to it that wait for their narinfo.
pub async fn used_bytes(db: &Db, cache_id: i64) -> DbResult<i64> {
    db.read(move |c| {
        let (_, stored) = browse::cache_sizes(c, cache_id)?;
        Ok(stored + crate::db::uploads::pending_bytes(c, cache_id)?)
    })
    .await
}
