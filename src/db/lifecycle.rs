//! Queries of the storage lifecycle: the graph of a cache's paths that eviction and retention
//! choose from, removing chosen closures without breaking one, pins, NARs no path uses any
//! more, and what was reclaimed.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};

use super::models::{Cache, Nar, Pin, Reclaim};
use super::schema::{nars, path_references, pins, reclaims, store_paths};
use super::{AnyConnection, DbResult};

const BATCH: usize = 500;
/// Paths read per query when eviction loads the graph of a cache.
const GRAPH_PAGE: usize = 20_000;

/// A path to remove when nothing else in its cache references it.
#[derive(Debug, Clone)]
pub struct Removable {
    pub id: i64,
    pub base_name: String,
    pub file_size: i64,
}

/// A path of a cache as eviction weighs it.
#[derive(Debug, Clone)]
pub struct GraphPath {
    pub id: i64,
    pub file_size: i64,
    pub created_at: NaiveDateTime,
    pub last_accessed_at: Option<NaiveDateTime>,
    pub access_count: i64,
}

/// Every path of a cache and the references between them, as indexes into `paths`
/// (referrer, referenced). References to paths the cache lacks and to the path itself are
/// left out.
#[derive(Debug, Default)]
pub struct CacheGraph {
    pub paths: Vec<GraphPath>,
    pub references: Vec<(u32, u32)>,
}

/// Reads the graph of a cache's paths in pages of [`GRAPH_PAGE`] paths, by hash part (each
/// page and its references one range of the (cache, hash part) index), as of one moment (one
/// read transaction; repeatable read on PostgreSQL): a path committed meanwhile is seen with
/// all its references or not at all.
pub fn cache_graph(conn: &mut AnyConnection, cache_id: i64) -> DbResult<CacheGraph> {
    conn.transaction(|conn| {
        if let AnyConnection::Postgresql(_) = conn {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(conn)?;
        }
        // Sized once: growing these would briefly hold both the old and the new copy.
        let count: i64 = store_paths::table.filter(store_paths::cache_id.eq(cache_id)).count().get_result(conn)?;
        let mut graph = CacheGraph { paths: Vec::with_capacity(count as usize), references: Vec::new() };
        // Each path's hash part (beside `graph.paths`), to resolve references (base names),
        // and the first and last hash part of each page.
        let mut hashes: Vec<[u8; 32]> = Vec::with_capacity(count as usize);
        let mut pages: Vec<(String, String)> = Vec::new();
        let mut after = String::new();
        loop {
            let page: Vec<(i64, String, i64, NaiveDateTime, Option<NaiveDateTime>, i64)> = store_paths::table
                .inner_join(nars::table)
                .filter(store_paths::cache_id.eq(cache_id))
                .filter(store_paths::hash_part.gt(&after))
                .order(store_paths::hash_part)
                .limit(GRAPH_PAGE as i64)
                .select((
                    store_paths::id,
                    store_paths::hash_part,
                    nars::file_size,
                    store_paths::created_at,
                    store_paths::last_accessed_at,
                    store_paths::access_count,
                ))
                .load(conn)?;
            let (Some(first), Some(last)) = (page.first(), page.last()) else { break };
            pages.push((first.1.clone(), last.1.clone()));
            after = last.1.clone();
            for (id, hash_part, file_size, created_at, last_accessed_at, access_count) in page {
                hashes.push(<[u8; 32]>::try_from(hash_part.as_bytes()).unwrap_or([0; 32]));
                graph.paths.push(GraphPath { id, file_size, created_at, last_accessed_at, access_count });
            }
        }
        // Sorted here rather than trusted to be: the database's collation orders the pages.
        let mut by_hash: Vec<u32> = (0..hashes.len() as u32).collect();
        by_hash.sort_unstable_by(|&a, &b| hashes[a as usize].cmp(&hashes[b as usize]));
        let find = |hash: &str| -> Option<u32> {
            let hash = <[u8; 32]>::try_from(hash.as_bytes()).ok()?;
            by_hash.binary_search_by(|&i| hashes[i as usize].cmp(&hash)).ok().map(|at| by_hash[at])
        };
        for (first, last) in pages {
            let rows: Vec<(String, String)> = path_references::table
                .inner_join(store_paths::table)
                .filter(store_paths::cache_id.eq(cache_id))
                .filter(store_paths::hash_part.between(first, last))
                .select((store_paths::hash_part, sql::<Text>("SUBSTR(path_references.reference, 1, 32)")))
                .load(conn)?;
            for (from, to) in rows {
                if let (Some(from), Some(to)) = (find(&from), find(&to))
                    && from != to
                {
                    graph.references.push((from, to));
                }
            }
        }
        Ok(graph)
    })
}

/// Removes the paths `ids` of a cache, listed so that every path comes after those among
/// them that reference it (a closure chosen whole, referrers first). Each goes unless it is
/// gone, kept, or referenced by a path left in the cache (something committed since the
/// choice): then it stays, and so does everything it references. The NARs left unused are
/// marked for garbage collection. Returns how many paths went and their size.
pub fn remove_closure(
    conn: &mut AnyConnection,
    cache_id: i64,
    ids: &[i64],
    keep: &HashSet<i64>,
    now: NaiveDateTime,
) -> DbResult<(i64, i64)> {
    // A commit that references one of these holds its row FOR SHARE until it ends; waiting
    // for that lock here (in id order, as every eviction takes them) means the referrers
    // query below sees the new reference.
    let mut locked: Vec<(i64, String, String, i64)> = Vec::new();
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    for chunk in sorted.chunks(BATCH) {
        let query = store_paths::table
            .filter(store_paths::id.eq_any(chunk))
            .filter(store_paths::cache_id.eq(cache_id))
            .order(store_paths::id)
            .select((store_paths::id, store_paths::hash_part, store_paths::name, store_paths::nar_id));
        locked.extend(match conn {
            AnyConnection::Postgresql(pg) => query.for_update().load(pg)?,
            AnyConnection::Sqlite(_) => query.load(conn)?,
        });
    }
    let mut sizes: HashMap<i64, i64> = HashMap::new();
    let nar_ids: Vec<i64> = locked.iter().map(|(.., nar)| *nar).collect();
    for chunk in nar_ids.chunks(BATCH) {
        sizes.extend(
            nars::table.filter(nars::id.eq_any(chunk)).select((nars::id, nars::file_size)).load::<(i64, i64)>(conn)?,
        );
    }
    let found: HashMap<i64, (Removable, i64)> = locked
        .into_iter()
        .map(|(id, hash, name, nar_id)| {
            let file_size = sizes.get(&nar_id).copied().unwrap_or(0);
            (id, (Removable { id, base_name: format!("{hash}-{name}"), file_size }, nar_id))
        })
        .collect();
    let (mut paths, mut bytes, mut unused) = (0, 0, Vec::new());
    for id in ids {
        let Some((path, nar_id)) = found.get(id) else { continue };
        if keep.contains(id) || !referrers(conn, cache_id, path.id, &path.base_name, 1)?.is_empty() {
            continue;
        }
        diesel::delete(store_paths::table.find(path.id)).execute(conn)?;
        paths += 1;
        bytes += path.file_size;
        unused.push(*nar_id);
    }
    mark_unreferenced(conn, &unused, now)?;
    Ok((paths, bytes))
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

/// The ids of every path the cache's live pins keep: the pinned paths and their closures.
pub fn pinned_closure(conn: &mut AnyConnection, cache_id: i64, now: NaiveDateTime) -> DbResult<HashSet<i64>> {
    let roots: Vec<String> = pins::table
        .filter(pins::cache_id.eq(cache_id))
        .filter(pins::expires_at.is_null().or(pins::expires_at.gt(now)))
        .select(pins::store_path)
        .load(conn)?;
    let mut seen_hashes: HashSet<String> = HashSet::new();
    let mut kept = HashSet::new();
    // Base names: the pinned paths, then the references of the last round's paths.
    let mut frontier = roots;
    while !frontier.is_empty() {
        frontier.retain(|b| b.get(..32).is_some_and(|hash| seen_hashes.insert(hash.to_string())));
        let ids: Vec<i64> = path_ids(conn, cache_id, &frontier)?.into_iter().collect();
        kept.extend(ids.iter().copied());
        frontier = Vec::new();
        for chunk in ids.chunks(BATCH) {
            frontier.extend(
                path_references::table
                    .filter(path_references::store_path_id.eq_any(chunk))
                    .select(path_references::reference)
                    .load::<String>(conn)?,
            );
        }
    }
    Ok(kept)
}

/// The ids of the paths of the cache with these base names.
pub fn path_ids(conn: &mut AnyConnection, cache_id: i64, base_names: &[String]) -> DbResult<HashSet<i64>> {
    let mut ids = HashSet::new();
    for chunk in base_names.chunks(BATCH) {
        let hashes: Vec<&str> = chunk.iter().filter_map(|b| b.get(..32)).collect();
        ids.extend(
            store_paths::table
                .filter(store_paths::cache_id.eq(cache_id))
                .filter(store_paths::hash_part.eq_any(hashes))
                .select(store_paths::id)
                .load::<i64>(conn)?,
        );
    }
    Ok(ids)
}

/// Sets (or moves) a pin; returns true when it existed and was moved.
pub fn put_pin(
    conn: &mut AnyConnection,
    cache_id: i64,
    name: &str,
    store_path: &str,
    now: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
) -> DbResult<bool> {
    let moved = diesel::update(pins::table.filter(pins::cache_id.eq(cache_id)).filter(pins::name.eq(name)))
        .set((pins::store_path.eq(store_path), pins::created_at.eq(now), pins::expires_at.eq(expires_at)))
        .execute(conn)?;
    if moved == 0 {
        diesel::insert_into(pins::table)
            .values((
                pins::cache_id.eq(cache_id),
                pins::name.eq(name),
                pins::store_path.eq(store_path),
                pins::created_at.eq(now),
                pins::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
    }
    Ok(moved > 0)
}

pub fn list_pins(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<Pin>> {
    Ok(pins::table.filter(pins::cache_id.eq(cache_id)).order(pins::name).select(Pin::as_select()).load(conn)?)
}

/// Removes a pin; false when the cache had no pin of that name.
pub fn delete_pin(conn: &mut AnyConnection, cache_id: i64, name: &str) -> DbResult<bool> {
    Ok(diesel::delete(pins::table.filter(pins::cache_id.eq(cache_id)).filter(pins::name.eq(name))).execute(conn)? > 0)
}

/// Removes pins whose lifetime ended.
pub fn delete_expired_pins(conn: &mut AnyConnection, now: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::delete(pins::table.filter(pins::expires_at.lt(now))).execute(conn)?)
}

/// What one eviction, retention or garbage collection run removed.
pub struct NewReclaim<'a> {
    pub cache_id: Option<i64>,
    pub kind: &'a str,
    pub paths: i64,
    pub bytes: i64,
    pub objects: i64,
}

pub fn record_reclaim(conn: &mut AnyConnection, reclaim: &NewReclaim, at: NaiveDateTime) -> DbResult<()> {
    diesel::insert_into(reclaims::table)
        .values((
            reclaims::cache_id.eq(reclaim.cache_id),
            reclaims::kind.eq(reclaim.kind),
            reclaims::at.eq(at),
            reclaims::paths.eq(reclaim.paths),
            reclaims::bytes.eq(reclaim.bytes),
            reclaims::objects.eq(reclaim.objects),
        ))
        .execute(conn)?;
    Ok(())
}

/// The latest reclaim of each kind for a cache (eviction, retention) or the server (gc).
pub fn latest_reclaims(conn: &mut AnyConnection, cache_id: Option<i64>) -> DbResult<Vec<Reclaim>> {
    let mut query = reclaims::table.select(Reclaim::as_select()).order(reclaims::at.desc()).limit(50).into_boxed();
    query = match cache_id {
        Some(id) => query.filter(reclaims::cache_id.eq(id)),
        None => query.filter(reclaims::cache_id.is_null()),
    };
    let mut seen = HashSet::new();
    Ok(query.load(conn)?.into_iter().filter(|r: &Reclaim| seen.insert(r.kind.clone())).collect())
}

/// Bytes reclaimed since `since`, over every cache and garbage collection.
pub fn reclaimed_bytes_since(conn: &mut AnyConnection, since: NaiveDateTime, kind: &str) -> DbResult<i64> {
    use diesel::sql_types::{BigInt, Nullable};
    let total: Option<i64> = reclaims::table
        .filter(reclaims::at.ge(since))
        .filter(reclaims::kind.eq(kind))
        .select(sql::<Nullable<BigInt>>("CAST(SUM(reclaims.bytes) AS BIGINT)"))
        .first(conn)?;
    Ok(total.unwrap_or(0))
}

/// A NAR garbage collection may delete.
#[derive(Debug, Clone)]
pub struct DueNar {
    pub id: i64,
    pub storage_key: String,
    pub file_size: i64,
}

/// Marks NARs that no path uses but were never marked (rows older than this feature, or
/// left by hand) as unreferenced from `now`, so that they get their grace period too.
pub fn mark_unused_nars(conn: &mut AnyConnection, now: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::update(nars::table)
        .filter(nars::unreferenced_since.is_null())
        .filter(diesel::dsl::not(diesel::dsl::exists(store_paths::table.filter(store_paths::nar_id.eq(nars::id)))))
        .set(nars::unreferenced_since.eq(now))
        .execute(conn)?)
}

/// Up to `limit` NARs unreferenced since before `cutoff`, after id `after`.
pub fn due_nars(conn: &mut AnyConnection, cutoff: NaiveDateTime, after: i64, limit: i64) -> DbResult<Vec<DueNar>> {
    let rows: Vec<(i64, String, i64)> = nars::table
        .filter(nars::unreferenced_since.lt(cutoff))
        .filter(nars::id.gt(after))
        .order(nars::id)
        .select((nars::id, nars::storage_key, nars::file_size))
        .limit(limit)
        .load(conn)?;
    Ok(rows.into_iter().map(|(id, storage_key, file_size)| DueNar { id, storage_key, file_size }).collect())
}

/// Deletes the NAR rows that are still due (no push took them meanwhile), each checked as it
/// is deleted; returns those it deleted. Their objects are the caller's to delete after the
/// commit. One transaction for the batch: a commit per NAR made collecting a million of them
/// take as many synchronous writes.
pub fn delete_due_nars(conn: &mut AnyConnection, due: Vec<DueNar>, cutoff: NaiveDateTime) -> DbResult<Vec<DueNar>> {
    let mut deleted = Vec::with_capacity(due.len());
    for nar in due {
        let removed = diesel::delete(nars::table.find(nar.id))
            .filter(nars::unreferenced_since.lt(cutoff))
            .filter(diesel::dsl::not(diesel::dsl::exists(store_paths::table.filter(store_paths::nar_id.eq(nars::id)))))
            .execute(conn)?;
        if removed > 0 {
            deleted.push(nar);
        }
    }
    Ok(deleted)
}

/// Which of these object keys a row owns: a NAR, a pending upload or a build log.
pub fn owned_keys(conn: &mut AnyConnection, keys: &[String]) -> DbResult<HashSet<String>> {
    use super::schema::{build_logs, pending_nars};
    let mut owned = HashSet::new();
    for chunk in keys.chunks(BATCH) {
        owned.extend(
            nars::table.filter(nars::storage_key.eq_any(chunk)).select(nars::storage_key).load::<String>(conn)?,
        );
        owned.extend(
            pending_nars::table
                .filter(pending_nars::storage_key.eq_any(chunk))
                .select(pending_nars::storage_key)
                .load::<String>(conn)?,
        );
        owned.extend(
            build_logs::table
                .filter(build_logs::storage_key.eq_any(chunk))
                .select(build_logs::storage_key)
                .load::<String>(conn)?,
        );
    }
    Ok(owned)
}

/// Rows past their use: expired sessions, login requests and links, old sign-in failures,
/// traffic older than `traffic_before`, expired pins and old reclaim records. Returns how
/// many rows went.
pub fn prune_expired(conn: &mut AnyConnection, now: NaiveDateTime, traffic_before: NaiveDateTime) -> DbResult<usize> {
    use super::schema::{sessions, sign_in_failures, traffic_hourly, user_links};
    let mut pruned = diesel::delete(sessions::table.filter(sessions::expires_at.lt(now))).execute(conn)?;
    pruned += diesel::delete(user_links::table.filter(user_links::expires_at.lt(now))).execute(conn)?;
    pruned += diesel::delete(sign_in_failures::table.filter(sign_in_failures::at.lt(now - chrono::Duration::days(1))))
        .execute(conn)?;
    pruned += diesel::delete(traffic_hourly::table.filter(traffic_hourly::hour.lt(traffic_before))).execute(conn)?;
    pruned += super::cli_logins::delete_expired(conn)?;
    pruned += super::oidc::delete_expired_flows(conn)?;
    pruned += super::trust::delete_expired_used(conn)?;
    pruned += delete_expired_pins(conn, now)?;
    pruned += diesel::delete(reclaims::table.filter(reclaims::at.lt(traffic_before))).execute(conn)?;
    Ok(pruned)
}

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
    use super::schema::{cache_upstreams, caches};
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

/// Deletes a NAR row no path uses, due or not (fsck found it broken); the object is the
/// caller's to delete. False when a path still uses it.
pub fn delete_unused_nar(conn: &mut AnyConnection, id: i64) -> DbResult<bool> {
    Ok(diesel::delete(nars::table.find(id))
        .filter(diesel::dsl::not(diesel::dsl::exists(store_paths::table.filter(store_paths::nar_id.eq(nars::id)))))
        .execute(conn)?
        > 0)
}

/// Lets SQLite refresh the statistics its query planner uses (PostgreSQL's autovacuum does
/// its own); cheap when nothing changed much.
pub fn refresh_statistics(conn: &mut AnyConnection) -> DbResult<()> {
    use diesel::connection::SimpleConnection;
    if let AnyConnection::Sqlite(sqlite) = conn {
        sqlite.batch_execute("PRAGMA optimize")?;
    }
    Ok(())
}
