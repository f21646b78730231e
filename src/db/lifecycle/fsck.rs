//! What fsck walks: every NAR, the caches and their paths' references, and removing what is broken.

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use super::*;
use crate::db::models::{Cache, Nar};
use crate::db::schema::{nars, path_references, store_paths};
use crate::db::{AnyConnection, DbResult};

/// NARs fsck checks: every one, or those a cache's paths use.
pub fn count_nars(conn: &mut AnyConnection, cache_id: Option<i64>) -> DbResult<i64> {
    Ok(match cache_id {
        None => nars::table.count().get_result(conn)?,
        Some(id) => store_paths::table
            .filter(store_paths::cache_id.eq(id))
            .select(diesel::dsl::count(store_paths::nar_id).aggregate_distinct())
            .first(conn)?,
    })
}

/// Up to `limit` NARs after id `after`, by id: every one, or those a cache's paths use.
pub fn nars_after(conn: &mut AnyConnection, cache_id: Option<i64>, after: i64, limit: i64) -> DbResult<Vec<Nar>> {
    let mut query =
        nars::table.filter(nars::id.gt(after)).order(nars::id).limit(limit).select(Nar::as_select()).into_boxed();
    if let Some(id) = cache_id {
        let used = store_paths::table.filter(store_paths::cache_id.eq(id)).select(store_paths::nar_id);
        query = query.filter(nars::id.eq_any(used));
    }
    Ok(query.load(conn)?)
}

/// The caches fsck looks at (one, or all), each with whether it has upstream caches.
pub fn caches_with_upstream_flag(conn: &mut AnyConnection, cache_id: Option<i64>) -> DbResult<Vec<(Cache, bool)>> {
    use crate::db::schema::{cache_upstreams, caches};
    let mut query = caches::table.select(Cache::as_select()).order(caches::name).into_boxed();
    if let Some(id) = cache_id {
        query = query.filter(caches::id.eq(id));
    }
    let mut out = Vec::new();
    for cache in query.load(conn)? {
        let upstreams: i64 =
            cache_upstreams::table.filter(cache_upstreams::cache_id.eq(cache.id)).count().get_result(conn)?;
        out.push((cache, upstreams > 0));
    }
    Ok(out)
}

/// (base name, reference) for every reference of a path in the cache that the cache lacks.
pub fn missing_references(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<(String, String)>> {
    const REFERENCE_ABSENT: &str = "NOT EXISTS (SELECT 1 FROM store_paths o WHERE o.cache_id = store_paths.cache_id \
         AND o.hash_part = SUBSTR(path_references.reference, 1, 32))";
    let rows: Vec<(String, String, String)> = path_references::table
        .inner_join(store_paths::table)
        .filter(store_paths::cache_id.eq(cache_id))
        .filter(sql::<Bool>(REFERENCE_ABSENT))
        .select((store_paths::hash_part, store_paths::name, path_references::reference))
        .load(conn)?;
    Ok(rows.into_iter().map(|(hash, name, reference)| (format!("{hash}-{name}"), reference)).collect())
}

/// Removes the paths using these NARs (in every cache) and, in each cache, everything that
/// references them, directly or not. Returns how many paths went.
pub fn remove_paths_using_nars(conn: &mut AnyConnection, nar_ids: &[i64], now: NaiveDateTime) -> DbResult<usize> {
    let users: Vec<(i64, String, String)> = store_paths::table
        .filter(store_paths::nar_id.eq_any(nar_ids))
        .select((store_paths::cache_id, store_paths::hash_part, store_paths::name))
        .load(conn)?;
    let mut removed = 0;
    for (cache_id, hash, name) in users {
        removed += remove_closure_of_referrers(conn, cache_id, &format!("{hash}-{name}"), now)?;
    }
    Ok(removed)
}
