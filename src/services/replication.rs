//! One truth on every replica. Each serving process remembers things to answer without a
//! database query (the presence filter's "no", misses, who a token is and what it may do, cache
//! rows); this module keeps what it remembers from contradicting the database in a way a
//! client would keep:
//!
//! - **Pushes.** Every commit that stores paths takes the next commit sequence number
//!   (`db::replication`). Each process follows the sequence (at once on PostgreSQL, which
//!   notifies; every [`POLL`] otherwise), reads the new paths into its presence filter, and
//!   records in its `replicas` row the last commit it has read, renewing a lease of [`LEASE`].
//!   A push returns only when every replica holding a lease has read its commit
//!   ([`Replication::wait_until_seen`]). A replica whose lease lapsed (it could not read or
//!   write in time) is not waited for, and stops answering "absent" from memory as its lease
//!   ends: it asks the database until it has renewed and read again. So once a push returned
//!   success, every replica serves the path.
//! - **Access.** Every change to who may do what (a revoked token, a removed grant, a deleted
//!   user, a cache's settings) bumps the `access` counter in its transaction. Each process
//!   forgets every remembered token, access and cache row when it reads a new value, and trusts
//!   what it remembers only for [`ACCESS_TRUST`] after the start of its last successful read:
//!   a change is refused by every replica within a second.
//!
//! The leases are judged by the database's clock; a process's own trust by its monotonic clock
//! from before the read the lease was written after, so the two never disagree in the unsafe
//! direction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::hot_cache::HotCache;
use super::presence::PresenceFilter;
use crate::db::replication::{self as rows, Counters};
use crate::db::{Db, DbError};

/// How often a process reads the counters when nothing woke it.
pub const POLL: Duration = Duration::from_millis(100);
/// How long a replica's lease lasts after the read it was renewed from. Other replicas wait
/// for its acknowledgement of their pushes while it holds one (at most this long if it dies).
pub const LEASE: Duration = Duration::from_secs(2);
/// Added to [`LEASE`] by whoever judges another replica's lease (timestamp precision).
const LEASE_MARGIN: Duration = Duration::from_millis(250);
/// A lease is renewed at least this often when nothing new was read.
const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How long remembered tokens, accesses and cache rows are trusted after the start of the last
/// successful read of the counters: a change elsewhere is refused here within a second.
pub const ACCESS_TRUST: Duration = Duration::from_millis(800);
/// How often a waiting push looks at the replicas again when nothing woke it.
const WAIT_POLL: Duration = Duration::from_millis(10);
/// A push waits no longer than this for the others, whatever their leases say (a clock that
/// jumped); it logs the replicas that did not answer.
const WAIT_AT_MOST: Duration = Duration::from_secs(10);
/// Rows of replicas gone this long are removed.
const FORGET_GONE_AFTER: chrono::Duration = chrono::Duration::hours(1);

pub struct Replication {
    /// This process's row in `replicas`.
    id: String,
    db: Db,
    presence: Arc<PresenceFilter>,
    hot: Arc<HotCache>,
    /// Rung when another process changed something (PostgreSQL notifications).
    changed: Notify,
    /// Rung when a replica recorded what it has read.
    seen: Notify,
}

/// What the follower knows between reads.
#[derive(Default)]
struct Followed {
    counters: Option<Counters>,
    /// The last commit the presence filter holds.
    seen_seq: Option<i64>,
    /// The seen_seq recorded in this process's row, and when it was recorded.
    recorded: Option<(i64, Instant)>,
    /// Until when other replicas wait for this one (judged from the start of the read the
    /// lease was renewed after); None before the first renewal.
    lease_until: Option<Instant>,
    forgot_gone_at: Option<Instant>,
}

impl Replication {
    pub fn new(db: Db, presence: Arc<PresenceFilter>, hot: Arc<HotCache>) -> Arc<Self> {
        let id = format!("{}-{:016x}", std::process::id(), rand::random::<u64>());
        Arc::new(Self { id, db, presence, hot, changed: Notify::new(), seen: Notify::new() })
    }

    pub fn presence(&self) -> &PresenceFilter {
        &self.presence
    }

    /// Follows the other processes' changes for the life of the process.
    pub async fn run(self: Arc<Self>) {
        if let Some(url) = self.db.postgres_url() {
            let this = self.clone();
            std::thread::Builder::new()
                .name("change-listener".into())
                .spawn(move || rows::listen(&url, |kind| this.notified(kind)))
                .expect("a thread for the change listener");
        }
        let mut followed = Followed::default();
        loop {
            let started = Instant::now();
            if let Err(e) = self.follow_once(&mut followed, started).await {
                tracing::warn!("could not read what other processes changed: {e}");
            }
            let _ = tokio::time::timeout(POLL, self.changed.notified()).await;
        }
    }

    fn notified(&self, kind: &str) {
        if kind == rows::SEEN {
            self.seen.notify_waiters();
        } else {
            self.changed.notify_one();
        }
    }

    /// One read of the counters and what they say changed; `started` is taken before it.
    async fn follow_once(&self, followed: &mut Followed, started: Instant) -> Result<(), DbError> {
        let counters = self.db.read(rows::read_counters).await?;
        if followed.counters.is_some_and(|before| before.access != counters.access) {
            self.hot.forget_access();
        }
        // Trusted from here: a change committed before `started` was read above (and forgotten
        // after what this process looked up before it; see `HotCache::access_seen_at`).
        self.hot.trust_access_until(started + ACCESS_TRUST);
        followed.counters = Some(counters);

        let seen = self.presence.follow(&self.db, &self.hot, followed.seen_seq, counters.paths).await?;
        followed.seen_seq = Some(seen);
        let renew = match followed.recorded {
            Some((recorded, at)) => recorded != seen || at.elapsed() >= RENEW_EVERY,
            None => true,
        };
        if renew {
            let id = self.id.clone();
            self.db.write(move |c| rows::renew(c, &id, seen)).await?;
            let renewed = Instant::now();
            followed.recorded = Some((seen, renewed));
            // The lease is continuous when this renewal came before the last one lapsed: no
            // push can have skipped this process meanwhile, so everything up to `seen` is all
            // it could be asked for. Otherwise it is trusted from the next read (which starts
            // after this renewal, so any push that skipped it committed before that read).
            if followed.lease_until.is_some_and(|until| renewed < until) {
                self.presence.trust_until(started + LEASE);
                self.hot.trust_misses_until(started + LEASE);
            }
            followed.lease_until = Some(started + LEASE);
        } else if followed.lease_until.is_some_and(|until| Instant::now() < until) {
            // Nothing new, lease held: trust as far as the lease reaches.
            if let Some(until) = followed.lease_until {
                self.presence.trust_until(until);
                self.hot.trust_misses_until(until);
            }
        }
        if followed.forgot_gone_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            followed.forgot_gone_at = Some(Instant::now());
            let before = crate::db::now() - FORGET_GONE_AFTER;
            self.db.write(move |c| rows::remove_replicas_renewed_before(c, before)).await?;
        }
        Ok(())
    }

    /// Returns once every other replica holding a lease has read commit `seq` (or its lease
    /// lapsed). Called after a push committed, before it answers success.
    pub async fn wait_until_seen(&self, seq: i64) {
        let began = Instant::now();
        loop {
            let woken = self.seen.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.db.read(rows::replicas).await {
                Ok((replicas, now)) => {
                    let lease = chrono::Duration::from_std(LEASE + LEASE_MARGIN).expect("a short lease");
                    let behind: Vec<&rows::Replica> = replicas
                        .iter()
                        .filter(|r| r.id != self.id && r.seen_seq < seq && r.renewed_at + lease > now)
                        .collect();
                    if behind.is_empty() {
                        return;
                    }
                    if began.elapsed() >= WAIT_AT_MOST {
                        tracing::warn!("replicas {behind:?} did not read commit {seq} in time");
                        return;
                    }
                }
                Err(e) => {
                    // The push is committed; the others' leases bound what they can miss.
                    tracing::warn!("could not read the replicas after commit {seq}: {e}");
                    tokio::time::sleep(LEASE + LEASE_MARGIN).await;
                    return;
                }
            }
            let _ = tokio::time::timeout(WAIT_POLL, woken).await;
        }
    }

    /// [`Replication::wait_until_seen`] for every commit made so far: after finding a path
    /// present that a push through another process may still be waiting for.
    pub async fn wait_until_current(&self) {
        match self.db.read(rows::read_counters).await {
            Ok(counters) => self.wait_until_seen(counters.paths).await,
            Err(e) => tracing::warn!("could not read the commit counter: {e}"),
        }
    }

    /// Removes this process from the replicas others wait for (it stops serving).
    pub async fn leave(&self) {
        let id = self.id.clone();
        if let Err(e) = self.db.write(move |c| rows::remove_replica(c, &id)).await {
            tracing::warn!("could not remove this process from the replicas: {e}");
        }
    }
}
