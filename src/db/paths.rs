//! Store paths per cache, their references, and the shared NAR blobs.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use super::models::{Nar, NewNar, NewStorePath, StorePathRow};
use super::schema::{caches, nars, path_references, store_paths};
use super::{AnyConnection, DbResult};

/// Keeps `IN (...)` lists well under every backend's bind-parameter limit.
const BATCH: usize = 500;

/// Which of these base names does the cache hold? (Matched on hash part and name.)
pub fn present_base_names(conn: &mut AnyConnection, cache_id: i64, base_names: &[String]) -> DbResult<HashSet<String>> {
    in_batches(base_names, |hashes| {
        Ok(store_paths::table
            .filter(store_paths::cache_id.eq(cache_id))
            .filter(store_paths::hash_part.eq_any(hashes))
            .select((store_paths::hash_part, store_paths::name))
            .load(conn)?)
    })
}

/// [`present_base_names`] inside a write transaction. On PostgreSQL the rows found are locked
/// `FOR SHARE`: a concurrent delete of one of them waits until this transaction ends, and
/// a delete that got there first makes the row missing here. (SQLite runs one writer at a
/// time, so the plain query is enough.)
pub fn lock_present_base_names(
    conn: &mut AnyConnection,
    cache_id: i64,
    base_names: &[String],
) -> DbResult<HashSet<String>> {
    let AnyConnection::Postgresql(pg) = conn else {
        return present_base_names(conn, cache_id, base_names);
    };
    in_batches(base_names, |hashes| {
        Ok(store_paths::table
            .filter(store_paths::cache_id.eq(cache_id))
            .filter(store_paths::hash_part.eq_any(hashes))
            .select((store_paths::hash_part, store_paths::name))
            .for_share()
            .load(pg)?)
    })
}

/// Runs `load` on the hash parts of `base_names`, [`BATCH`] at a time, and collects the
/// (hash part, name) rows it finds as base names.
fn in_batches(
    base_names: &[String],
    mut load: impl FnMut(&[&str]) -> DbResult<Vec<(String, String)>>,
) -> DbResult<HashSet<String>> {
    let mut present = HashSet::new();
    for chunk in base_names.chunks(BATCH) {
        let hashes: Vec<&str> = chunk.iter().filter_map(|b| b.get(..32)).collect();
        present.extend(load(&hashes)?.into_iter().map(|(h, n)| format!("{h}-{n}")));
    }
    Ok(present)
}

/// A path with its NAR and reference base names, as needed to render its narinfo.
pub struct PathEntry {
    pub path: StorePathRow,
    pub nar: Nar,
    pub references: Vec<String>,
}

pub fn find_entry(conn: &mut AnyConnection, cache_id: i64, hash_part: &str) -> DbResult<Option<PathEntry>> {
    let found: Option<(StorePathRow, Nar)> = store_paths::table
        .inner_join(nars::table)
        .filter(store_paths::cache_id.eq(cache_id))
        .filter(store_paths::hash_part.eq(hash_part))
        .select((StorePathRow::as_select(), Nar::as_select()))
        .first(conn)
        .optional()?;
    let Some((path, nar)) = found else {
        return Ok(None);
    };
    let references = path_references::table
        .filter(path_references::store_path_id.eq(path.id))
        .order(path_references::reference)
        .select(path_references::reference)
        .load(conn)?;
    Ok(Some(PathEntry { path, nar, references }))
}

/// The NAR with this NarHash or FileHash (nix32), and the id of a path using it, if this
/// cache holds one. NAR URLs we write use the NarHash; `nix copy` names files by FileHash.
pub fn nar_in_cache(conn: &mut AnyConnection, cache_id: i64, hash: &str) -> DbResult<Option<(i64, Nar)>> {
    // The NAR first (by its hashes' indexes), then a path of this cache using it: as one
    // join, SQLite walked every path of the cache (17 ms a miss at 100,000 paths), and every
    // `nix copy --to` asks for a NAR it is about to upload.
    let candidates: Vec<Nar> =
        nars::table.filter(nars::nar_hash.eq(hash).or(nars::file_hash.eq(hash))).select(Nar::as_select()).load(conn)?;
    for nar in candidates {
        let path = store_paths::table
            .filter(store_paths::nar_id.eq(nar.id))
            .filter(store_paths::cache_id.eq(cache_id))
            .select(store_paths::id)
            .first::<i64>(conn)
            .optional()?;
        if let Some(path_id) = path {
            return Ok(Some((path_id, nar)));
        }
    }
    Ok(None)
}

pub fn find_nar(conn: &mut AnyConnection, nar_hash: &str) -> DbResult<Option<Nar>> {
    Ok(nars::table.filter(nars::nar_hash.eq(nar_hash)).select(Nar::as_select()).first(conn).optional()?)
}

/// Is this NAR used by a path in a public cache or in one of `cache_ids`?
/// `cache_ids = None` means every cache (administrators).
pub fn nar_is_readable_by(conn: &mut AnyConnection, nar_id: i64, cache_ids: Option<&[i64]>) -> DbResult<bool> {
    let mut query = store_paths::table.inner_join(caches::table).filter(store_paths::nar_id.eq(nar_id)).into_boxed();
    if let Some(ids) = cache_ids {
        query = query.filter(caches::is_public.eq(true).or(caches::id.eq_any(ids.to_vec())));
    }
    Ok(query.select(store_paths::id).first::<i64>(conn).optional()?.is_some())
}

/// Inserts a NAR row; the caller maps a unique violation on `nar_hash` to "already stored".
pub fn insert_nar(conn: &mut AnyConnection, nar: &NewNar) -> DbResult<Nar> {
    diesel::insert_into(nars::table).values(nar).execute(conn)?;
    Ok(find_nar(conn, &nar.nar_hash)?.ok_or(diesel::result::Error::NotFound)?)
}

pub fn insert_path(conn: &mut AnyConnection, path: &NewStorePath, references: &[String]) -> DbResult<i64> {
    diesel::insert_into(store_paths::table).values(path).execute(conn)?;
    let id: i64 = store_paths::table
        .filter(store_paths::cache_id.eq(path.cache_id))
        .filter(store_paths::hash_part.eq(&path.hash_part))
        .select(store_paths::id)
        .first(conn)?;
    let mut unique: Vec<&String> = references.iter().collect();
    unique.sort();
    unique.dedup();
    for reference in unique {
        diesel::insert_into(path_references::table)
            .values((path_references::store_path_id.eq(id), path_references::reference.eq(reference)))
            .execute(conn)?;
    }
    Ok(id)
}

/// Adds `count` accesses to a path and moves its last-access time forward.
pub fn record_accesses(conn: &mut AnyConnection, path_id: i64, count: i64, at: chrono::NaiveDateTime) -> DbResult<()> {
    diesel::update(store_paths::table.find(path_id))
        .set((store_paths::access_count.eq(store_paths::access_count + count), store_paths::last_accessed_at.eq(at)))
        .execute(conn)?;
    Ok(())
}

/// How many paths all caches hold together.
pub fn count_all(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(store_paths::table.count().get_result(conn)?)
}

pub fn count_nars(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(nars::table.count().get_result(conn)?)
}

/// A stored path as the presence filter knows it: its cache, hash part and NAR.
#[derive(Debug, Clone, Queryable)]
pub struct StoredPath {
    pub id: i64,
    pub cache_id: i64,
    pub hash_part: String,
    pub nar_id: i64,
}

/// A page of stored paths, and the hashes their NARs are asked for by (file hash, NAR hash).
#[derive(Debug, Default)]
pub struct StoredPage {
    pub paths: Vec<StoredPath>,
    pub nars: HashMap<i64, (String, String)>,
}

type StoredPathColumns = (store_paths::id, store_paths::cache_id, store_paths::hash_part, store_paths::nar_id);
const STORED_PATH: StoredPathColumns =
    (store_paths::id, store_paths::cache_id, store_paths::hash_part, store_paths::nar_id);

/// The NARs of a page of paths, in a second query: joined, SQLite chose to walk the NARs
/// and sort every path of each for every page (a million paths sharing one NAR: seconds).
/// A page's NAR ids are bound one by one on SQLite: pages stay under its 32,766 variables.
fn with_nars(conn: &mut AnyConnection, paths: Vec<StoredPath>) -> DbResult<StoredPage> {
    let ids: HashSet<i64> = paths.iter().map(|p| p.nar_id).collect();
    let nars = nars::table
        .filter(nars::id.eq_any(ids.into_iter().collect::<Vec<_>>()))
        .select((nars::id, nars::file_hash, nars::nar_hash))
        .load::<(i64, String, String)>(conn)?
        .into_iter()
        .map(|(id, file_hash, nar_hash)| (id, (file_hash, nar_hash)))
        .collect();
    Ok(StoredPage { paths, nars })
}

/// Up to `limit` paths with ids above `after_id`, in id order: a page of every stored path.
pub fn keys_after(conn: &mut AnyConnection, after_id: i64, limit: i64) -> DbResult<StoredPage> {
    let paths = store_paths::table
        .filter(store_paths::id.gt(after_id))
        .order(store_paths::id)
        .limit(limit)
        .select(STORED_PATH)
        .load(conn)?;
    with_nars(conn, paths)
}

/// The paths committed after commit `after_seq` up to `until_seq`, in commit order: at most
/// `limit` commits' worth (a commit that stores many paths at once is read whole), and the
/// last commit read. The `commit_seq` index serves it.
pub fn keys_committed_after(
    conn: &mut AnyConnection,
    after_seq: i64,
    until_seq: i64,
    limit: i64,
) -> DbResult<(StoredPage, i64)> {
    let last = until_seq.min(after_seq.saturating_add(limit));
    let paths = store_paths::table
        .filter(store_paths::commit_seq.gt(after_seq))
        .filter(store_paths::commit_seq.le(last))
        .order((store_paths::commit_seq, store_paths::id))
        .select(STORED_PATH)
        .load(conn)?;
    Ok((with_nars(conn, paths)?, last))
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;

    use super::*;

    use super::super::connection::migrated_in_memory as migrated;

    /// A migrated database holding what `sql` inserts.
    fn holding(sql: &str) -> AnyConnection {
        let mut conn = migrated();
        let AnyConnection::Sqlite(sqlite) = &mut conn else { unreachable!() };
        sqlite.batch_execute(sql).unwrap();
        conn
    }

    #[test]
    fn finds_a_nar_by_either_hash_only_in_a_cache_that_uses_it() {
        let mut conn = holding(
            "INSERT INTO caches (id, name) VALUES (1, 'one'), (2, 'two');
             INSERT INTO nars (id, nar_hash, nar_size, compression, file_hash, file_size, storage_key)
             VALUES (7, 'narhash', 10, 'zstd', 'filehash', 9, 'nar/k');
             INSERT INTO store_paths (id, cache_id, nar_id, hash_part, name, signatures)
             VALUES (40, 1, 7, 'aaaa', 'x', '');",
        );
        for hash in ["narhash", "filehash"] {
            let (path_id, nar) = nar_in_cache(&mut conn, 1, hash).unwrap().expect("in cache one");
            assert_eq!((path_id, nar.id, nar.storage_key.as_str()), (40, 7, "nar/k"));
            assert!(nar_in_cache(&mut conn, 2, hash).unwrap().is_none(), "cache two has no path using it");
        }
        assert!(nar_in_cache(&mut conn, 1, "other").unwrap().is_none());
    }

    /// SQLite picks the (nar_id, cache_id) index for "a path of this cache using this NAR",
    /// not the cache's index, which walks every path of the cache.
    #[test]
    fn a_path_using_a_nar_is_looked_up_from_the_nar_side() {
        #[derive(diesel::QueryableByName)]
        struct Step {
            #[diesel(sql_type = diesel::sql_types::Text)]
            detail: String,
        }
        let mut conn = migrated();
        let AnyConnection::Sqlite(sqlite) = &mut conn else { unreachable!() };
        let plan: Vec<Step> = diesel::sql_query(
            "EXPLAIN QUERY PLAN SELECT store_paths.id FROM store_paths \
             WHERE store_paths.nar_id = 1 AND store_paths.cache_id = 1 LIMIT 1",
        )
        .load(sqlite)
        .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|s| s.detail).collect();
        assert!(plan.iter().any(|d| d.contains("store_paths_nar_cache")), "{plan:?}");
    }

    /// A page of paths for the presence filter, in store order, with each NAR's hashes once:
    /// many paths sharing a NAR cost one entry (a million of them used to be walked and
    /// sorted for every page when the NARs were joined in).
    #[test]
    fn pages_of_stored_paths_carry_their_nars_once() {
        let mut conn = holding(
            "INSERT INTO caches (id, name) VALUES (1, 'one'), (2, 'two');
             INSERT INTO nars (id, nar_hash, nar_size, compression, file_hash, file_size, storage_key)
             VALUES (7, 'n7', 10, 'zstd', 'f7', 9, 'k7'), (8, 'n8', 10, 'zstd', 'f8', 9, 'k8');
             INSERT INTO store_paths (id, cache_id, nar_id, hash_part, name, signatures, created_at, commit_seq)
             VALUES (1, 1, 7, 'a', 'x', '', '2026-01-01 00:00:03', 3), (2, 2, 7, 'b', 'x', '', '2026-01-01 00:00:01', 1),
                    (3, 1, 8, 'c', 'x', '', '2026-01-01 00:00:02', 2), (4, 1, 8, 'd', 'x', '', '2026-01-01 00:00:02', 4);",
        );
        let page = keys_after(&mut conn, 0, 2).unwrap();
        let hashes: Vec<&str> = page.paths.iter().map(|p| p.hash_part.as_str()).collect();
        assert_eq!(hashes, ["a", "b"], "id order, a page at a time");
        assert_eq!(page.nars.len(), 1);
        assert_eq!(page.nars[&7], ("f7".to_string(), "n7".to_string()));
        let next = keys_after(&mut conn, 2, 2).unwrap();
        assert_eq!((next.paths.len(), next.nars.len(), next.nars[&8].0.as_str()), (2, 1, "f8"));

        let (later, last) = keys_committed_after(&mut conn, 1, 3, 10).unwrap();
        let hashes: Vec<&str> = later.paths.iter().map(|p| p.hash_part.as_str()).collect();
        assert_eq!((hashes, last), (vec!["c", "a"], 3), "committed after 1 up to 3, in commit order");
        assert_eq!(later.nars.len(), 2);
        let (page, last) = keys_committed_after(&mut conn, 1, 4, 1).unwrap();
        assert_eq!((page.paths[0].hash_part.as_str(), page.paths.len(), last), ("c", 1, 2), "a commit at a time");
    }
}

#[derive(Debug)]
pub enum DeleteOutcome {
    /// Gone; a NAR no path uses any more waits for garbage collection.
    Deleted,
    NotFound,
    /// Other paths in the cache reference it; deleting it would break their closures.
    StillNeeded(Vec<String>),
}

/// Deletes one path, unless other paths of the cache reference it.
pub fn delete(conn: &mut AnyConnection, cache_id: i64, hash_part: &str) -> DbResult<DeleteOutcome> {
    let found: Option<(i64, String, i64)> = store_paths::table
        .inner_join(nars::table)
        .filter(store_paths::cache_id.eq(cache_id))
        .filter(store_paths::hash_part.eq(hash_part))
        .select((store_paths::id, store_paths::name, nars::file_size))
        .first(conn)
        .optional()?;
    let Some((id, name, file_size)) = found else { return Ok(DeleteOutcome::NotFound) };
    let path = super::lifecycle::Removable { id, base_name: format!("{hash_part}-{name}"), file_size };
    if super::lifecycle::remove_path(conn, cache_id, &path, super::now())? {
        return Ok(DeleteOutcome::Deleted);
    }
    let dependents = super::lifecycle::referrers(conn, cache_id, id, &path.base_name, 5)?;
    Ok(if dependents.is_empty() { DeleteOutcome::NotFound } else { DeleteOutcome::StillNeeded(dependents) })
}
