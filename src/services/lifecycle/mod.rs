//! What leaves the store and when: eviction under a quota, pins that keep paths, garbage
//! collection of what nothing uses, fsck, and the janitor that runs them on schedule.

pub mod eviction;
pub mod fsck;
pub mod gc;
pub mod janitor;
pub mod pins;

/// When the storage lifecycle acts (eviction, retention, garbage collection).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// GC_GRACE: a NAR no path uses, or a stored object no row owns, is deleted only after
    /// this long (a push about to reuse it, or one between storing and recording it, is never
    /// broken). 1 hour by default; keep it above a minute (other replicas may name a NAR from memory for
    /// that long).
    pub gc_grace: chrono::Duration,
    /// GC_INTERVAL: how often garbage collection and retention run in the background. 1 hour
    /// by default.
    pub gc_interval: std::time::Duration,
    /// EVICTION_MIN_AGE: paths pushed more recently are never evicted (a push in progress
    /// needs the paths it sent first). 10 minutes by default.
    pub eviction_min_age: chrono::Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            gc_grace: chrono::Duration::hours(1),
            gc_interval: std::time::Duration::from_secs(3600),
            eviction_min_age: chrono::Duration::minutes(10),
        }
    }
}
