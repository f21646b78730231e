//! In-memory caches for the narinfo hot path, so that hits, misses and private caches need no
//! database query in the steady state. What another process may change is forgotten when this
//! one reads that it changed, and trusted only while it keeps reading (see `replication`):
//! - a path pushed through another process: the push waits until this process has read it
//!   (which forgets the misses remembered for it); remembered misses are trusted only while
//!   this process holds its lease;
//! - a revoked token, a removed grant, a deleted user, a cache's settings: forgotten within a
//!   second everywhere (at once on the process where it happened); an expired token stops at
//!   its expiry everywhere;
//! - a deleted path: its rendered narinfo within [`NARINFO_TTL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::deadline::Deadline;
use crate::db::models::{Cache, Nar};
use crate::services::identity::access::Access;
use crate::services::identity::auth::Caller;

/// How long a cache row (visibility, priority) is reused.
const CACHE_ROW_TTL: Duration = Duration::from_secs(5);
/// How long a rendered narinfo is reused; store paths never change once visible.
const NARINFO_TTL: Duration = Duration::from_secs(60);
/// Entry limits keep the memory bounded (a few MiB each at most): a full map starts over.
/// A narinfo is about 0.5 KiB, so this is about 10 MiB; Nix asks for a closure's narinfos
/// within seconds, so the working set of a minute is far smaller.
const MAX_NARINFOS: usize = 20_000;
/// NARs up to this size are kept in memory once read (most paths of a closure are tiny):
/// at most `MAX_SMALL_NARS` of them, so 8 MiB.
pub const SMALL_NAR: u64 = 8 * 1024;
const MAX_SMALL_NARS: usize = 1024;
/// How long "this cache does not have this path" is reused.
pub const MISS_TTL: Duration = Duration::from_secs(5);
/// Only misses the presence filter was unsure of are remembered (about 1% of them).
const MAX_MISSES: usize = 50_000;
/// How long a token's access to a cache is reused.
pub const ACCESS_TTL: Duration = Duration::from_secs(5);
/// Tokens in use at once (per cache for accesses); only valid tokens are remembered.
const MAX_ACCESSES: usize = 10_000;

struct Expiring<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Expiring<K, V> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl, capacity }
    }

    fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn remove(&self, key: &K) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    fn remove_all<'a>(&self, keys: impl IntoIterator<Item = &'a K>)
    where
        K: 'a,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys {
            entries.remove(key);
        }
    }

    fn remove_where(&self, mut predicate: impl FnMut(&K) -> bool) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !predicate(k));
    }

    fn insert(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            // Rare and cheap enough: start over rather than track recency.
            entries.clear();
        }
        entries.insert(key, (Instant::now(), value));
    }
}

/// When a look-up began, in the count of paths made visible; see [`HotCache::misses_seen_at`].
#[derive(Clone, Copy)]
pub struct MissEpoch(u64);

/// When a look-up began, in the count of access changes; see [`HotCache::access_seen_at`].
#[derive(Clone, Copy)]
pub struct AccessEpoch(u64);

pub struct HotCache {
    caches: Expiring<String, Cache>,
    narinfos: Expiring<(i64, String), Arc<str>>,
    /// (cache id, NarHash or FileHash) to (a path using it, the NAR), for NAR downloads.
    nars: Expiring<(i64, String), (i64, Nar)>,
    /// Storage key to the bytes of a small NAR (a NAR never changes under its key).
    small_nars: Expiring<String, bytes::Bytes>,
    /// (cache id, hash part) of narinfos the cache did not have.
    misses: Expiring<(i64, String), ()>,
    /// Counts the times paths became visible here; see [`HotCache::misses_seen_at`].
    visible_epoch: AtomicU64,
    /// (SHA-256 of a token, cache id) to what that token may do there.
    accesses: Expiring<(String, i64), Access>,
    /// SHA-256 of a token to who it authenticates.
    callers: Expiring<String, Caller>,
    /// Counts the times access was forgotten; see [`HotCache::access_seen_at`].
    access_epoch: AtomicU64,
    /// Until when remembered callers, accesses and cache rows are trusted.
    access_trusted: Deadline,
    /// Until when remembered misses are trusted.
    misses_trusted: Deadline,
}

impl Default for HotCache {
    fn default() -> Self {
        Self {
            caches: Expiring::new(CACHE_ROW_TTL, 10_000),
            narinfos: Expiring::new(NARINFO_TTL, MAX_NARINFOS),
            nars: Expiring::new(NARINFO_TTL, MAX_NARINFOS),
            small_nars: Expiring::new(NARINFO_TTL, MAX_SMALL_NARS),
            misses: Expiring::new(MISS_TTL, MAX_MISSES),
            visible_epoch: AtomicU64::new(0),
            accesses: Expiring::new(ACCESS_TTL, MAX_ACCESSES),
            callers: Expiring::new(ACCESS_TTL, MAX_ACCESSES),
            access_epoch: AtomicU64::new(0),
            access_trusted: Deadline::default(),
            misses_trusted: Deadline::default(),
        }
    }
}

impl HotCache {
    pub fn cache(&self, name: &str) -> Option<Cache> {
        self.access_trusted.is_ahead().then(|| self.caches.get(&name.to_string())).flatten()
    }

    pub fn remember_cache_row(&self, cache: &Cache, looked_up: AccessEpoch) {
        let key = cache.name.clone();
        self.caches.insert(key.clone(), cache.clone());
        if self.access_epoch.load(Ordering::SeqCst) != looked_up.0 {
            self.caches.remove(&key);
        }
    }

    /// Forgets a cache's settings, narinfos and NARs after they changed in this process.
    pub fn forget_cache(&self, cache_id: i64, name: &str) {
        self.caches.remove_where(|k| k == name);
        self.narinfos.remove_where(|(id, _)| *id == cache_id);
        self.forget_nars(cache_id);
    }

    /// Forgets one narinfo after its path was deleted in this process (and the cache's NAR
    /// lookups, which are keyed by NAR hash: deletions are rare).
    pub fn forget_narinfo(&self, cache_id: i64, hash_part: &str) {
        self.narinfos.remove_where(|(id, h)| *id == cache_id && h == hash_part);
        self.forget_nars(cache_id);
    }

    /// Forgets a cache's NAR lookups and the small NARs read (one of its NARs is gone).
    pub fn forget_nars(&self, cache_id: i64) {
        self.nars.remove_where(|(id, _)| *id == cache_id);
        self.small_nars.remove_where(|_| true);
    }

    pub fn small_nar(&self, storage_key: &str) -> Option<bytes::Bytes> {
        self.small_nars.get(&storage_key.to_string())
    }

    pub fn remember_small_nar(&self, storage_key: &str, bytes: bytes::Bytes) {
        debug_assert!(bytes.len() as u64 <= SMALL_NAR);
        self.small_nars.insert(storage_key.to_string(), bytes);
    }

    pub fn nar(&self, cache_id: i64, hash: &str) -> Option<(i64, Nar)> {
        self.nars.get(&(cache_id, hash.to_string()))
    }

    pub fn remember_nar(&self, cache_id: i64, hash: &str, found: (i64, Nar)) {
        self.nars.insert((cache_id, hash.to_string()), found);
    }

    pub fn narinfo(&self, cache_id: i64, hash_part: &str) -> Option<Arc<str>> {
        self.narinfos.get(&(cache_id, hash_part.to_string()))
    }

    pub fn remember_narinfo(&self, cache_id: i64, hash_part: &str, text: Arc<str>) {
        self.narinfos.insert((cache_id, hash_part.to_string()), text);
    }

    /// Did the cache lack this path a moment ago (and can this process still vouch for it)?
    pub fn is_miss(&self, cache_id: i64, hash_part: &str) -> bool {
        self.misses_trusted.is_ahead() && self.misses.get(&(cache_id, hash_part.to_string())).is_some()
    }

    /// Remembered misses may be answered until `until` (see `replication`).
    pub fn trust_misses_until(&self, until: std::time::Instant) {
        self.misses_trusted.extend_to(until);
    }

    /// Remembered callers, accesses and cache rows may be used until `until`.
    pub fn trust_access_until(&self, until: std::time::Instant) {
        self.access_trusted.extend_to(until);
    }

    /// Taken before a path is looked up in the database: a miss read then is remembered only
    /// if no path became visible meanwhile (otherwise a look-up that raced a push could keep
    /// the path hidden after the push forgot its misses).
    pub fn misses_seen_at(&self) -> MissEpoch {
        MissEpoch(self.visible_epoch.load(Ordering::SeqCst))
    }

    pub fn remember_miss(&self, cache_id: i64, hash_part: &str, looked_up: MissEpoch) {
        let key = (cache_id, hash_part.to_string());
        self.misses.insert(key.clone(), ());
        // After the insert: a forget that bumped the epoch before this check is seen here,
        // and one that bumps it after removes the entry itself.
        if self.visible_epoch.load(Ordering::SeqCst) != looked_up.0 {
            self.misses.remove(&key);
        }
    }

    /// Paths became visible (pushed through this process, or read by the presence filter
    /// from what other processes stored): they are no longer misses.
    pub fn forget_misses<'a>(&self, paths: impl IntoIterator<Item = &'a (i64, String)>) {
        self.visible_epoch.fetch_add(1, Ordering::SeqCst);
        self.misses.remove_all(paths);
    }

    /// Any path may have become visible (the presence filter was loaded again).
    pub fn forget_all_misses(&self) {
        self.visible_epoch.fetch_add(1, Ordering::SeqCst);
        self.misses.remove_where(|_| true);
    }

    pub fn access(&self, token_hash: &str, cache_id: i64) -> Option<Access> {
        self.access_trusted.is_ahead().then(|| self.accesses.get(&(token_hash.to_string(), cache_id))).flatten()
    }

    /// Taken before access is looked up in the database: what was read is remembered only if
    /// access was not forgotten meanwhile (a look-up that raced a revocation would otherwise
    /// keep the revoked token working).
    pub fn access_seen_at(&self) -> AccessEpoch {
        AccessEpoch(self.access_epoch.load(Ordering::SeqCst))
    }

    pub fn remember_access(&self, token_hash: &str, cache_id: i64, access: Access, looked_up: AccessEpoch) {
        let key = (token_hash.to_string(), cache_id);
        self.accesses.insert(key.clone(), access);
        if self.access_epoch.load(Ordering::SeqCst) != looked_up.0 {
            self.accesses.remove(&key);
        }
    }

    /// Who this token authenticated a moment ago, unless it has expired since.
    pub fn caller(&self, token_hash: &str) -> Option<Caller> {
        if !self.access_trusted.is_ahead() {
            return None;
        }
        let now = crate::db::now();
        self.callers.get(&token_hash.to_string()).filter(|c| c.expires_at.is_none_or(|at| at > now))
    }

    pub fn remember_caller(&self, token_hash: &str, caller: &Caller, looked_up: AccessEpoch) {
        let key = token_hash.to_string();
        self.callers.insert(key.clone(), caller.clone());
        if self.access_epoch.load(Ordering::SeqCst) != looked_up.0 {
            self.callers.remove(&key);
        }
    }

    /// Rights changed in this process (a token revoked, a grant or a user removed): every
    /// remembered caller and access is decided again.
    pub fn forget_rights(&self) {
        self.access_epoch.fetch_add(1, Ordering::SeqCst);
        self.accesses.remove_where(|_| true);
        self.callers.remove_where(|_| true);
    }

    /// Another process changed who may do what, or a cache's settings: every remembered
    /// caller, access and cache row is read again.
    pub fn forget_access(&self) {
        self.forget_rights();
        self.caches.remove_where(|_| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(id: i64, name: &str) -> Cache {
        Cache {
            id,
            name: name.into(),
            is_public: true,
            priority: 41,
            created_at: crate::db::now(),
            quota_bytes: None,
            quota_policy: "refuse".into(),
            retention_seconds: None,
            allow_force_push: false,
        }
    }

    /// A cache whose follower has just read (see `replication`).
    fn trusted() -> HotCache {
        let hot = HotCache::default();
        let until = std::time::Instant::now() + Duration::from_secs(60);
        hot.trust_access_until(until);
        hot.trust_misses_until(until);
        hot
    }

    #[test]
    fn nothing_another_process_may_change_is_answered_until_trusted() {
        let hot = HotCache::default();
        hot.remember_cache_row(&cache(1, "main"), hot.access_seen_at());
        hot.remember_access("tokenhash", 1, Access::Read, hot.access_seen_at());
        hot.remember_miss(1, "abc", hot.misses_seen_at());
        assert!(hot.cache("main").is_none() && hot.access("tokenhash", 1).is_none() && !hot.is_miss(1, "abc"));
        let until = std::time::Instant::now() + Duration::from_secs(60);
        hot.trust_access_until(until);
        assert!(hot.cache("main").is_some() && hot.access("tokenhash", 1).is_some());
        assert!(!hot.is_miss(1, "abc"), "misses are trusted separately (the lease)");
        hot.trust_misses_until(until);
        assert!(hot.is_miss(1, "abc"));
        hot.forget_access();
        assert!(hot.cache("main").is_none() && hot.access("tokenhash", 1).is_none());
    }

    #[test]
    fn access_looked_up_before_it_was_forgotten_is_not_remembered() {
        let hot = trusted();
        let looked_up = hot.access_seen_at();
        // A revocation is read (here or from another process) while the database is asked.
        hot.forget_access();
        hot.remember_access("tokenhash", 1, Access::Push, looked_up);
        hot.remember_cache_row(&cache(1, "main"), looked_up);
        assert!(hot.access("tokenhash", 1).is_none(), "the revoked token would keep working");
        assert!(hot.cache("main").is_none());
        hot.remember_access("tokenhash", 1, Access::Push, hot.access_seen_at());
        assert_eq!(hot.access("tokenhash", 1), Some(Access::Push));
    }

    #[test]
    fn remembers_per_cache() {
        let hot = trusted();
        hot.remember_cache_row(&cache(1, "main"), hot.access_seen_at());
        hot.remember_narinfo(1, "abc", Arc::from("text"));
        hot.remember_narinfo(2, "abc", Arc::from("other"));
        assert_eq!(hot.cache("main").unwrap().id, 1);
        assert_eq!(hot.narinfo(1, "abc").as_deref(), Some("text"));
        assert_eq!(hot.narinfo(2, "abc").as_deref(), Some("other"));
        assert!(hot.narinfo(1, "abd").is_none());
        hot.forget_narinfo(2, "abc");
        assert!(hot.narinfo(2, "abc").is_none());
        hot.forget_cache(1, "main");
        assert!(hot.cache("main").is_none());
        assert!(hot.narinfo(1, "abc").is_none());
    }

    #[test]
    fn misses_and_accesses_are_forgotten_when_they_change_here() {
        let hot = trusted();
        hot.remember_miss(1, "abc", hot.misses_seen_at());
        assert!(hot.is_miss(1, "abc") && !hot.is_miss(2, "abc"));
        hot.forget_misses(&[(1, "abc".to_string())]);
        assert!(!hot.is_miss(1, "abc"));
        hot.remember_miss(1, "abc", hot.misses_seen_at());
        hot.forget_all_misses();
        assert!(!hot.is_miss(1, "abc"));
        hot.remember_access("tokenhash", 1, Access::Read, hot.access_seen_at());
        assert_eq!(hot.access("tokenhash", 1), Some(Access::Read));
        assert_eq!(hot.access("tokenhash", 2), None);
        hot.forget_rights();
        assert_eq!(hot.access("tokenhash", 1), None);
    }

    #[test]
    fn a_miss_looked_up_before_a_path_became_visible_is_not_remembered() {
        let hot = trusted();
        let looked_up = hot.misses_seen_at();
        // The path is pushed (and its misses forgotten) while the database is asked.
        hot.forget_misses(&[(1, "abc".to_string())]);
        hot.remember_miss(1, "abc", looked_up);
        assert!(!hot.is_miss(1, "abc"), "the stale answer would hide the pushed path");
        hot.remember_miss(1, "abc", hot.misses_seen_at());
        assert!(hot.is_miss(1, "abc"));
    }

    #[test]
    fn callers_are_forgotten_when_rights_change_or_their_token_expires() {
        let hot = trusted();
        let user = crate::db::models::User {
            id: crate::db::ids::UserId(7),
            login: "ann".into(),
            name: "Ann".into(),
            email: None,
            password_hash: None,
            permissions: crate::db::permissions::Permissions::NONE,
            created_at: crate::db::now(),
            has_avatar: false,
        };
        let caller = Caller::session(&user);
        hot.remember_caller("live", &caller, hot.access_seen_at());
        let expired = Caller { expires_at: Some(crate::db::now() - chrono::Duration::seconds(1)), ..caller.clone() };
        hot.remember_caller("expired", &expired, hot.access_seen_at());
        assert_eq!(hot.caller("live").map(|c| c.user_id), Some(crate::db::ids::UserId(7)));
        assert!(hot.caller("expired").is_none(), "an expired token is never answered from memory");
        hot.forget_rights();
        assert!(hot.caller("live").is_none());
    }

    #[test]
    fn entries_expire() {
        let short: Expiring<u8, u8> = Expiring::new(Duration::from_millis(1), 10);
        short.insert(1, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.get(&1), None);
        let small: Expiring<u8, u8> = Expiring::new(Duration::from_secs(60), 2);
        for k in 0..3 {
            small.insert(k, k);
        }
        assert_eq!(small.get(&2), Some(2));
    }
}
