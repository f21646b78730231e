//! Queries of the storage lifecycle. Here: removing paths without breaking a closure (what
//! eviction, retention, deleting and fsck all end in). Beside it: the graph eviction and
//! retention choose from (`graph`), pins (`pinned`), garbage collection (`gc`), what fsck
//! walks (`fsck`) and the record of what was reclaimed (`reclaimed`).

mod fsck;
mod gc;
mod graph;
mod pinned;
mod reclaimed;

pub use fsck::*;
pub use gc::*;
pub use graph::*;
pub use pinned::*;
pub use reclaimed::*;

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::Cache;
use super::schema::{nars, path_references, store_paths};
use super::{AnyConnection, DbResult};

const BATCH: usize = 500;

/// A path to remove when nothing else in its cache references it.
#[derive(Debug, Clone)]
pub struct Removable {
    pub id: i64,
    pub base_name: String,
    pub file_size: i64,
}

/// The cache's settings as they are now: quota decisions never use a row remembered from an
/// earlier request.
pub fn current_cache(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Option<Cache>> {
    use super::schema::caches;
    Ok(caches::table.find(cache_id).select(Cache::as_select()).first(conn).optional()?)
}

/// Removes a path unless something in its cache references it by now (then false). A NAR it
/// leaves unused is marked for garbage collection, never deleted here.
pub fn remove_path(conn: &mut AnyConnection, cache_id: i64, path: &Removable, now: NaiveDateTime) -> DbResult<bool> {
    // A commit that references this path holds its row FOR SHARE until it ends; waiting for
    // that lock here means the referrers query below sees the new reference.
    let found: Option<i64> = match conn {
        AnyConnection::Postgresql(pg) => {
            store_paths::table.find(path.id).select(store_paths::nar_id).for_update().first(pg).optional()?
        }
        AnyConnection::Sqlite(_) => {
            store_paths::table.find(path.id).select(store_paths::nar_id).first(conn).optional()?
        }
    };
    let Some(nar_id) = found else { return Ok(false) };
    if !referrers(conn, cache_id, path.id, &path.base_name, 1)?.is_empty() {
        return Ok(false);
    }
    diesel::delete(store_paths::table.find(path.id)).execute(conn)?;
    mark_unreferenced(conn, &[nar_id], now)?;
    Ok(true)
}

/// Names of up to `limit` other paths in the cache that reference `base_name`.
pub fn referrers(
    conn: &mut AnyConnection,
    cache_id: i64,
    path_id: i64,
    base_name: &str,
    limit: i64,
) -> DbResult<Vec<String>> {
    let rows = referrer_rows(conn, cache_id, path_id, base_name, Some(limit))?;
    Ok(rows.into_iter().map(|(_, _, name)| name).collect())
}

/// (id, hash part, name) of the other paths in the cache that reference `base_name`. In two
/// steps, references by name then paths by id, each through an index: as one join, SQLite
/// without statistics walked every path of the cache instead.
fn referrer_rows(
    conn: &mut AnyConnection,
    cache_id: i64,
    path_id: i64,
    base_name: &str,
    limit: Option<i64>,
) -> DbResult<Vec<(i64, String, String)>> {
    let ids: Vec<i64> = path_references::table
        .filter(path_references::reference.eq(base_name))
        .select(path_references::store_path_id)
        .load(conn)?;
    let mut rows = Vec::new();
    for chunk in ids.chunks(BATCH) {
        rows.extend(
            store_paths::table
                .filter(store_paths::id.eq_any(chunk))
                .filter(store_paths::cache_id.eq(cache_id))
                .filter(store_paths::id.ne(path_id))
                .select((store_paths::id, store_paths::hash_part, store_paths::name))
                .load::<(i64, String, String)>(conn)?,
        );
        if limit.is_some_and(|l| rows.len() as i64 >= l) {
            break;
        }
    }
    if let Some(limit) = limit {
        rows.truncate(limit.max(0) as usize);
    }
    Ok(rows)
}

/// Marks the NARs among `nar_ids` that no path uses as unreferenced from `now` (the start of
/// their grace period before garbage collection).
pub fn mark_unreferenced(conn: &mut AnyConnection, nar_ids: &[i64], now: NaiveDateTime) -> DbResult<usize> {
    let mut marked = 0;
    for chunk in nar_ids.chunks(BATCH) {
        marked += diesel::update(nars::table)
            .filter(nars::id.eq_any(chunk))
            .filter(nars::unreferenced_since.is_null())
            .filter(diesel::dsl::not(diesel::dsl::exists(store_paths::table.filter(store_paths::nar_id.eq(nars::id)))))
            .set(nars::unreferenced_since.eq(now))
            .execute(conn)?;
    }
    Ok(marked)
}

/// A push uses this NAR again: it is no longer due for collection.
pub fn mark_referenced(conn: &mut AnyConnection, nar_id: i64) -> DbResult<()> {
    diesel::update(nars::table.find(nar_id))
        .filter(nars::unreferenced_since.is_not_null())
        .set(nars::unreferenced_since.eq(None::<NaiveDateTime>))
        .execute(conn)?;
    Ok(())
}

/// Removes `base_name` from the cache named `cache` with everything there that references it.
pub fn remove_with_referrers(
    conn: &mut AnyConnection,
    cache: &str,
    base_name: &str,
    now: NaiveDateTime,
) -> DbResult<usize> {
    use super::schema::caches;
    let Some(cache_id) = caches::table.filter(caches::name.eq(cache)).select(caches::id).first(conn).optional()? else {
        return Ok(0);
    };
    remove_closure_of_referrers(conn, cache_id, base_name, now)
}

/// Removes a path and, transitively, every path of the cache that references it.
fn remove_closure_of_referrers(
    conn: &mut AnyConnection,
    cache_id: i64,
    base_name: &str,
    now: NaiveDateTime,
) -> DbResult<usize> {
    let mut doomed: Vec<(i64, i64)> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut frontier = vec![base_name.to_string()];
    while let Some(name) = frontier.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let Some(hash) = name.get(..32) else { continue };
        let found: Option<(i64, i64)> = store_paths::table
            .filter(store_paths::cache_id.eq(cache_id))
            .filter(store_paths::hash_part.eq(hash))
            .select((store_paths::id, store_paths::nar_id))
            .first(conn)
            .optional()?;
        let Some((id, nar_id)) = found else { continue };
        doomed.push((id, nar_id));
        let referrers = referrer_rows(conn, cache_id, id, &name, None)?;
        frontier.extend(referrers.into_iter().map(|(_, h, n)| format!("{h}-{n}")));
    }
    let ids: Vec<i64> = doomed.iter().map(|(id, _)| *id).collect();
    let nar_ids: Vec<i64> = doomed.iter().map(|(_, nar)| *nar).collect();
    for chunk in ids.chunks(BATCH) {
        diesel::delete(store_paths::table.filter(store_paths::id.eq_any(chunk))).execute(conn)?;
    }
    mark_unreferenced(conn, &nar_ids, now)?;
    Ok(ids.len())
}
