//! Which store paths and NARs may be in which cache: a Bloom filter over every stored (cache,
//! hash part) and (cache, NAR file hash or NAR hash), so that a narinfo for a path a cache does
//! not hold (most of what Nix asks a second substituter), and a NAR it does not hold (what
//! `nix copy --to` asks before each upload), are answered without a database query, however
//! many different ones are asked for. "No" is certain; "maybe" is checked in the database
//! (about 1% of absent ones).
//!
//! "No" is answered only while the filter is trusted (see `replication`): it holds every path
//! committed up to the commit sequence number it last read, and a push through another
//! process waits until this process has read its commit, or until this process's lease has
//! lapsed, when this process stops trusting its filter until it has read again. So:
//! - a push through this process adds its path and NAR before committing them;
//! - paths stored through other processes are read in commit order ([`PresenceFilter::follow`]),
//!   each once; the misses remembered for them are forgotten (see `hot_cache`);
//! - until the first full load finishes, and whenever the filter is not trusted, every path
//!   is a "maybe"; when a load (or rebuild) finishes, every remembered miss is forgotten.
//!
//! Deleted paths stay in the filter (a "maybe" costs one query) until the next rebuild, which
//! also happens when the filter has taken in as many paths as it was sized for.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use std::time::Instant;

use super::deadline::Deadline;
use super::hot_cache::HotCache;
use crate::db::paths::{self, StoredPage};
use crate::db::replication::read_counters;
use crate::db::{Db, DbError};

/// A rebuild also drops deleted paths; done at least this often.
const REBUILD_EVERY: Duration = Duration::from_secs(6 * 3600);
/// A replacement that failed to load is tried again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Rows (or commits) read per query (a page binds up to this many NAR ids: SQLite allows 32,766).
const PAGE: i64 = 20_000;
/// Room for this many keys at least, so a small server never rebuilds for growth.
const MIN_CAPACITY: u64 = 100_000;
/// Bits per key and probes per lookup: about 1% false "maybe".
const BITS_PER_PATH: u64 = 10;
const PROBES: u64 = 7;

/// What the filter holds: a path of a cache, or a NAR one of its paths uses, by either of its
/// hashes (served NARs are named by their file hash, and looked up by NAR hash too).
#[derive(Clone, Copy)]
enum Key<'a> {
    Path(i64, &'a str),
    Nar(i64, &'a str),
}

impl Key<'_> {
    fn owned(self) -> (bool, i64, String) {
        match self {
            Key::Path(cache_id, hash) => (true, cache_id, hash.to_string()),
            Key::Nar(cache_id, hash) => (false, cache_id, hash.to_string()),
        }
    }

    fn from_owned((is_path, cache_id, hash): &(bool, i64, String)) -> Key<'_> {
        if *is_path { Key::Path(*cache_id, hash) } else { Key::Nar(*cache_id, hash) }
    }
}

/// A fixed-size Bloom filter that any number of threads add to and read at once.
struct Bloom {
    words: Vec<AtomicU64>,
    capacity: u64,
    added: AtomicU64,
}

impl Bloom {
    fn with_capacity(keys: u64) -> Self {
        let capacity = keys.max(MIN_CAPACITY);
        let words = (capacity * BITS_PER_PATH).div_ceil(64);
        Self { words: (0..words).map(|_| AtomicU64::new(0)).collect(), capacity, added: AtomicU64::new(0) }
    }

    /// The bit positions of a key: double hashing over two independent 64-bit hashes.
    fn positions(&self, key: Key<'_>) -> impl Iterator<Item = u64> + use<> {
        let (kind, cache_id, text) = match key {
            Key::Path(cache_id, hash) => (0u8, cache_id, hash),
            Key::Nar(cache_id, hash) => (1u8, cache_id, hash),
        };
        let hash = |seed: u64| {
            let mut hasher = DefaultHasher::new();
            (seed, kind, cache_id, text).hash(&mut hasher);
            hasher.finish()
        };
        let (first, step) = (hash(0x9e37_79b9), hash(0x85eb_ca6b) | 1);
        let bits = self.words.len() as u64 * 64;
        (0..PROBES).map(move |i| first.wrapping_add(i.wrapping_mul(step)) % bits)
    }

    /// Adds a key; only keys that set a new bit count towards the capacity (reading the
    /// same paths again does not fill the filter).
    fn insert(&self, key: Key<'_>) {
        let mut new = false;
        for bit in self.positions(key) {
            let mask = 1 << (bit % 64);
            new |= self.words[(bit / 64) as usize].fetch_or(mask, Ordering::Relaxed) & mask == 0;
        }
        if new {
            self.added.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds every path of a page, and the NARs they use (once per cache and NAR).
    fn insert_page(&self, page: &StoredPage) {
        let mut nars_seen = std::collections::HashSet::new();
        for path in &page.paths {
            self.insert(Key::Path(path.cache_id, &path.hash_part));
            if nars_seen.insert((path.cache_id, path.nar_id))
                && let Some((file_hash, nar_hash)) = page.nars.get(&path.nar_id)
            {
                self.insert(Key::Nar(path.cache_id, file_hash));
                self.insert(Key::Nar(path.cache_id, nar_hash));
            }
        }
    }

    fn may_contain(&self, key: Key<'_>) -> bool {
        self.positions(key).all(|bit| self.words[(bit / 64) as usize].load(Ordering::Relaxed) & (1 << (bit % 64)) != 0)
    }

    fn is_full(&self) -> bool {
        self.added.load(Ordering::Relaxed) > self.capacity
    }
}

/// Every stored path in a new filter, page by page, then those committed while the pages were
/// read; returns the filter and the last commit it holds.
async fn load_all(db: &Db) -> Result<(Bloom, i64), DbError> {
    let started = Instant::now();
    // Read first: every commit up to it is visible to the pages read after.
    let (counters, paths, nars) =
        db.read(|c| Ok((read_counters(c)?, paths::count_all(c)?, paths::count_nars(c)?))).await?;
    // A key per path and two per NAR (most NARs belong to one path; many paths may share one),
    // with room to grow to twice the size before a rebuild.
    let bloom = Bloom::with_capacity((paths + 2 * nars) as u64 * 2);
    let mut after = 0;
    loop {
        let page = db.read(move |c| paths::keys_after(c, after, PAGE)).await?;
        let Some(last) = page.paths.last() else { break };
        after = last.id;
        bloom.insert_page(&page);
    }
    let until = db.read(read_counters).await?.paths;
    let seen = read_committed(db, &bloom, counters.paths, until, None).await?;
    tracing::info!(
        "presence filter loaded: {paths} paths and {nars} NARs in {:.1} s ({} MiB)",
        started.elapsed().as_secs_f64(),
        bloom.words.len() * 8 / (1024 * 1024)
    );
    Ok((bloom, seen))
}

/// Adds the paths committed after commit `after` up to `until`, page by page, and forgets the
/// misses remembered for them in `hot`; returns the last commit read.
async fn read_committed(
    db: &Db,
    bloom: &Bloom,
    mut after: i64,
    until: i64,
    hot: Option<&HotCache>,
) -> Result<i64, DbError> {
    while after < until {
        let (page, last) = db.read(move |c| paths::keys_committed_after(c, after, until, PAGE)).await?;
        bloom.insert_page(&page);
        if let Some(hot) = hot.filter(|_| !page.paths.is_empty()) {
            let keys: Vec<(i64, String)> = page.paths.iter().map(|p| (p.cache_id, p.hash_part.clone())).collect();
            hot.forget_misses(&keys);
        }
        after = last;
    }
    Ok(after)
}

/// A filter loading in the background to replace the one in place (see [`PresenceFilter::follow`]).
#[derive(Default)]
enum Replacement {
    #[default]
    None,
    Loading,
    Loaded(Result<(Bloom, i64), DbError>),
}

#[derive(Default)]
pub struct PresenceFilter {
    /// None until the first load: everything may be present.
    current: RwLock<Option<Arc<Bloom>>>,
    /// Keys added while a new filter was loading, replayed into it. Held while a key is added
    /// and while a new filter is put in place, so no key falls between the two.
    during_rebuild: std::sync::Mutex<Option<Vec<(bool, i64, String)>>>,
    /// When the filter in place was loaded.
    built_at: std::sync::Mutex<Option<Instant>>,
    replacement: std::sync::Mutex<Replacement>,
    /// When the last replacement that failed to load was started.
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// Until when a "no" is certain (see `replication`).
    trusted: Deadline,
}

impl PresenceFilter {
    fn bloom(&self) -> Option<Arc<Bloom>> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// False only when the cache certainly does not hold the path.
    pub fn may_contain(&self, cache_id: i64, hash_part: &str) -> bool {
        self.may_contain_key(Key::Path(cache_id, hash_part))
    }

    /// False only when no path of the cache uses a NAR with this file hash or NAR hash.
    pub fn may_hold_nar(&self, cache_id: i64, hash: &str) -> bool {
        self.may_contain_key(Key::Nar(cache_id, hash))
    }

    fn may_contain_key(&self, key: Key<'_>) -> bool {
        !self.trusted.is_ahead() || self.bloom().is_none_or(|bloom| bloom.may_contain(key))
    }

    /// Its "no" is certain until `until` (every commit a push returned for is read, or the
    /// push waits for this process); see `replication`.
    pub fn trust_until(&self, until: Instant) {
        self.trusted.extend_to(until);
    }

    /// Records a path about to be stored (before its commit: an extra "maybe" is harmless).
    pub fn add_path(&self, cache_id: i64, hash_part: &str) {
        self.add(Key::Path(cache_id, hash_part));
    }

    /// Records a NAR a path about to be stored uses, by one of its hashes.
    pub fn add_nar(&self, cache_id: i64, hash: &str) {
        self.add(Key::Nar(cache_id, hash));
    }

    fn add(&self, key: Key<'_>) {
        let mut pending = self.during_rebuild.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bloom) = self.bloom() {
            bloom.insert(key);
        }
        if let Some(pending) = pending.as_mut() {
            pending.push(key.owned());
        }
    }

    /// Loads every stored path into a new filter and puts it in place; returns the last
    /// commit it holds.
    pub async fn rebuild(&self, db: &Db) -> Result<i64, DbError> {
        self.begin_rebuild();
        let loaded = load_all(db).await;
        self.finish_rebuild(loaded)
    }

    fn begin_rebuild(&self) {
        *self.during_rebuild.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// Puts a loaded filter in place, with the keys added while it loaded.
    fn finish_rebuild(&self, loaded: Result<(Bloom, i64), DbError>) -> Result<i64, DbError> {
        let mut pending = self.during_rebuild.lock().unwrap_or_else(|e| e.into_inner());
        let added_meanwhile = pending.take();
        let (bloom, seen) = loaded?;
        for key in added_meanwhile.unwrap_or_default() {
            bloom.insert(Key::from_owned(&key));
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(bloom));
        *self.built_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        Ok(seen)
    }

    fn needs_rebuild(&self) -> bool {
        let stale =
            self.built_at.lock().unwrap_or_else(|e| e.into_inner()).is_none_or(|at| at.elapsed() >= REBUILD_EVERY);
        let failed_lately =
            self.failed_at.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|at| at.elapsed() < RETRY_AFTER);
        (stale || self.bloom().is_none_or(|bloom| bloom.is_full())) && !failed_lately
    }

    /// Brings the filter up to commit `until` (read from the database just before): adds the
    /// paths committed after `seen` and forgets the misses `hot` remembered for them. The first
    /// time, loads every path (forgetting every remembered miss). When the filter is full or
    /// old, a new one loads in the background while this one goes on answering and following,
    /// and takes its place at a later call once it has caught up (at a hundred million paths a
    /// load takes minutes, which the process spends answering from the database otherwise).
    /// Returns the last commit the filter holds.
    pub async fn follow(
        self: &Arc<Self>,
        db: &Db,
        hot: &HotCache,
        seen: Option<i64>,
        until: i64,
    ) -> Result<i64, DbError> {
        let (Some(seen), Some(bloom)) = (seen, self.bloom()) else {
            let seen = self.rebuild(db).await?;
            hot.forget_all_misses();
            return Ok(seen);
        };
        let mut seen = read_committed(db, &bloom, seen, until, Some(hot)).await?;
        let loaded = {
            let mut replacement = self.replacement.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::take(&mut *replacement) {
                Replacement::Loaded(loaded) => Some(loaded),
                other => {
                    *replacement = other;
                    None
                }
            }
        };
        match loaded {
            Some(Ok((new, loaded_up_to))) => {
                // It loaded from a later or earlier point than this filter has followed to.
                let new_seen = read_committed(db, &new, loaded_up_to, seen, None).await?.max(seen);
                seen = self.finish_rebuild(Ok((new, new_seen)))?;
                hot.forget_all_misses();
            }
            Some(Err(e)) => {
                self.during_rebuild.lock().unwrap_or_else(|e| e.into_inner()).take();
                *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                tracing::warn!("could not load a new presence filter (the current one goes on): {e}");
            }
            None if self.needs_rebuild() => self.start_replacement(db),
            None => {}
        }
        Ok(seen)
    }

    fn start_replacement(self: &Arc<Self>, db: &Db) {
        {
            let mut replacement = self.replacement.lock().unwrap_or_else(|e| e.into_inner());
            if !matches!(*replacement, Replacement::None) {
                return;
            }
            *replacement = Replacement::Loading;
        }
        self.begin_rebuild();
        let (this, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            let loaded = load_all(&db).await;
            *this.replacement.lock().unwrap_or_else(|e| e.into_inner()) = Replacement::Loaded(loaded);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_part(i: u64) -> String {
        format!("{i:032}")
    }

    #[test]
    fn never_forgets_and_rarely_says_maybe_for_absent_paths() {
        let bloom = Bloom::with_capacity(50_000);
        for i in 0..50_000 {
            bloom.insert(Key::Path(1, &hash_part(i)));
        }
        assert!((0..50_000).all(|i| bloom.may_contain(Key::Path(1, &hash_part(i)))), "no false negatives");
        let false_maybes = (50_000..150_000).filter(|i| bloom.may_contain(Key::Path(1, &hash_part(*i)))).count();
        assert!(false_maybes < 2_000, "{false_maybes} of 100000 absent paths were a maybe");
        // The same hash part in another cache, or as a NAR hash, is another key.
        let other_cache = (0..10_000).filter(|i| bloom.may_contain(Key::Path(2, &hash_part(*i)))).count();
        assert!(other_cache < 200, "{other_cache}");
        let as_nar = (0..10_000).filter(|i| bloom.may_contain(Key::Nar(1, &hash_part(*i)))).count();
        assert!(as_nar < 200, "{as_nar}");
        assert!(!bloom.is_full());
    }

    /// A filter whose "no" is trusted (its process holds its lease; see `replication`).
    fn trusted() -> Arc<PresenceFilter> {
        let filter = Arc::new(PresenceFilter::default());
        filter.trust_until(Instant::now() + Duration::from_secs(600));
        filter
    }

    fn open_db(dir: &tempfile::TempDir) -> Db {
        Db::open(&format!("sqlite:{}/db.sqlite?mode=rwc", dir.path().display()), false).unwrap()
    }

    #[test]
    fn before_the_first_load_everything_may_be_present() {
        let filter = trusted();
        assert!(filter.may_contain(1, &hash_part(1)) && filter.may_hold_nar(1, &hash_part(1)));
        filter.add_path(1, &hash_part(1));
        assert!(filter.may_contain(1, &hash_part(2)));
    }

    #[tokio::test]
    async fn an_untrusted_filter_says_maybe_to_everything() {
        let dir = tempfile::tempdir().unwrap();
        let filter = PresenceFilter::default();
        filter.rebuild(&open_db(&dir)).await.unwrap();
        assert!(filter.may_contain(1, &hash_part(1)), "loaded, but its process holds no lease");
        filter.trust_until(Instant::now() + Duration::from_secs(60));
        assert!(!filter.may_contain(1, &hash_part(1)));
    }

    #[tokio::test]
    async fn a_rebuild_keeps_paths_added_while_it_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir);
        let filter = trusted();
        filter.rebuild(&db).await.unwrap();
        assert!(!filter.may_contain(1, &hash_part(1)), "an empty database holds nothing");
        filter.add_path(1, &hash_part(1));
        filter.add_nar(1, &hash_part(11));
        assert!(filter.may_contain(1, &hash_part(1)), "a path pushed here is present at once");
        assert!(filter.may_hold_nar(1, &hash_part(11)), "and its NAR");
        // A push while the (empty) database is read again: the new filter has it.
        filter.begin_rebuild();
        let loaded = load_all(&db).await;
        filter.add_path(1, &hash_part(2));
        filter.add_nar(1, &hash_part(12));
        filter.finish_rebuild(loaded).unwrap();
        assert!(filter.may_contain(1, &hash_part(2)) && filter.may_hold_nar(1, &hash_part(12)));
        assert!(!filter.may_hold_nar(1, &hash_part(2)), "a path's key is not a NAR's");
        assert!(!filter.may_contain(1, &hash_part(1)), "a rebuild drops what the database does not hold");
        assert!(!filter.may_hold_nar(1, &hash_part(11)));
    }

    #[tokio::test]
    async fn misses_remembered_before_a_load_are_forgotten_when_it_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(&dir);
        let (filter, hot) = (trusted(), HotCache::default());
        // Before the first load every path is a "maybe", checked in the database and, when
        // absent, remembered; the path may have been stored elsewhere since.
        hot.trust_misses_until(Instant::now() + Duration::from_secs(60));
        hot.remember_miss(1, &hash_part(1), hot.misses_seen_at());
        let seen = filter.follow(&db, &hot, None, 0).await.unwrap();
        assert_eq!(seen, 0);
        assert!(!filter.may_contain(1, &hash_part(1)), "the filter was loaded");
        assert!(!hot.is_miss(1, &hash_part(1)), "the load answers for every path now");
    }

    /// Stores a path and its NAR (file hash `f<id>`, NAR hash `n<id>`) as a push through
    /// another process would: in a commit that takes the next commit sequence number.
    fn store(db: &Db, id: i64, hash_part: &str) {
        let hash_part = hash_part.to_string();
        db.write_blocking(move |c| {
            use diesel::RunQueryDsl;
            let seq = crate::db::replication::bump(c, crate::db::replication::Counter::Paths)?;
            diesel::sql_query(format!(
                "INSERT INTO nars (id, nar_hash, nar_size, compression, file_hash, file_size, storage_key) \
                 VALUES ({id}, 'n{id}', 1, 'none', 'f{id}', 1, 'k{id}')"
            ))
            .execute(c)?;
            diesel::sql_query(format!(
                "INSERT INTO store_paths (id, cache_id, nar_id, hash_part, name, signatures, commit_seq) \
                 VALUES ({id}, 1, {id}, '{hash_part}', 'x', '', {seq})"
            ))
            .execute(c)?;
            Ok(())
        })
        .unwrap();
    }

    fn until(db: &Db) -> i64 {
        db.write_blocking(read_counters).unwrap().paths
    }

    /// A database holding cache 1.
    fn db_with_cache(dir: &tempfile::TempDir) -> Db {
        let db = open_db(dir);
        db.write_blocking(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("INSERT INTO caches (id, name) VALUES (1, 'main')").execute(c)?;
            Ok(())
        })
        .unwrap();
        db
    }

    #[tokio::test]
    async fn following_reads_each_new_commit_once_and_forgets_its_misses() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_with_cache(&dir);
        store(&db, 1, &hash_part(1));
        let (filter, hot) = (trusted(), HotCache::default());
        hot.trust_misses_until(Instant::now() + Duration::from_secs(60));
        let seen = filter.follow(&db, &hot, None, until(&db)).await.unwrap();
        assert_eq!(seen, 1, "the load holds every commit so far");
        assert!(filter.may_contain(1, &hash_part(1)), "a stored path is loaded");
        assert!(filter.may_hold_nar(1, "f1") && filter.may_hold_nar(1, "n1"), "with its NAR's hashes");
        assert!(!filter.may_hold_nar(2, "f1"), "in its own cache only");
        // Stored through another process after the load: read by the next follow, which also
        // forgets a miss remembered for it.
        hot.remember_miss(1, &hash_part(2), hot.misses_seen_at());
        store(&db, 2, &hash_part(2));
        store(&db, 3, &hash_part(3));
        assert!(!filter.may_contain(1, &hash_part(2)) && !filter.may_hold_nar(1, "f2"));
        // Only as far as the counter it was given (read before): commit 3 comes next time.
        let seen = filter.follow(&db, &hot, Some(seen), 2).await.unwrap();
        assert_eq!(seen, 2);
        assert!(filter.may_contain(1, &hash_part(2)) && filter.may_hold_nar(1, "f2") && filter.may_hold_nar(1, "n2"));
        assert!(!hot.is_miss(1, &hash_part(2)), "a path stored elsewhere is no longer a remembered miss");
        assert!(!filter.may_contain(1, &hash_part(3)));
        let seen = filter.follow(&db, &hot, Some(seen), until(&db)).await.unwrap();
        assert_eq!(seen, 3);
        assert!(filter.may_contain(1, &hash_part(3)));
    }

    #[tokio::test]
    async fn an_old_filter_answers_while_its_replacement_loads_and_hands_over_everything() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_with_cache(&dir);
        store(&db, 1, &hash_part(1));
        let (filter, hot) = (trusted(), HotCache::default());
        let seen = filter.follow(&db, &hot, None, until(&db)).await.unwrap();
        // Path 1 is deleted; the filter is due for its rebuild (it is old).
        db.write_blocking(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("DELETE FROM store_paths WHERE id = 1").execute(c)?;
            Ok(())
        })
        .unwrap();
        *filter.built_at.lock().unwrap() = None;
        let seen = filter.follow(&db, &hot, Some(seen), until(&db)).await.unwrap();
        assert!(matches!(*filter.replacement.lock().unwrap(), Replacement::Loading | Replacement::Loaded(_)));
        assert!(filter.may_contain(1, &hash_part(1)), "the old filter answers meanwhile");
        while !matches!(*filter.replacement.lock().unwrap(), Replacement::Loaded(_)) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // After the replacement loaded: a commit through another process, read by the old
        // filter and caught up by the new one, and a push through this process.
        store(&db, 2, &hash_part(2));
        filter.add_path(1, &hash_part(3));
        let seen = filter.follow(&db, &hot, Some(seen), until(&db)).await.unwrap();
        assert_eq!(seen, 2);
        assert!(matches!(*filter.replacement.lock().unwrap(), Replacement::None), "the replacement is in place");
        assert!(!filter.may_contain(1, &hash_part(1)), "the new filter drops the deleted path");
        assert!(filter.may_contain(1, &hash_part(2)), "and holds the commit it missed while loading");
        assert!(filter.may_contain(1, &hash_part(3)), "and the push through this process");
        assert!(!filter.needs_rebuild());
    }
}
