//! The graph of a cache's paths that eviction and retention choose from, and removing
//! chosen closures without breaking one.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::*;
use crate::db::schema::{nars, path_references, pins, store_paths};
use crate::db::{AnyConnection, DbResult};

/// Paths read per query when eviction loads the graph of a cache.
const GRAPH_PAGE: usize = 20_000;

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
