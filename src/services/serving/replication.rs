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
    /// The seen_seq recorded in this process's row.
    recorded: Option<i64>,
    lease: Lease,
    forgot_gone_at: Option<Instant>,
}

/// This process's lease as the others judge it, and how long it lets this process trust what
/// a read found (its presence filter's "no" and its remembered misses).
#[derive(Default)]
struct Lease {
    /// Until when other replicas wait for this one, counted from the start of the read the
    /// last renewal followed (they count from the renewal itself, which is later); None
    /// before the first renewal.
    until: Option<Instant>,
    /// When the last renewal was written.
    renewed_at: Option<Instant>,
}

impl Lease {
    /// Records a renewal written at `renewed` after a read that started at `started`, and
    /// returns until when what that read found may be trusted. Only when the lease was
    /// continuous (this renewal came before the last one lapsed, so no push skipped this
    /// process): otherwise a push may have skipped it and committed after the read began.
    fn renewed(&mut self, started: Instant, renewed: Instant) -> Option<Instant> {
        let continuous = self.until.is_some_and(|until| renewed < until);
        self.until = Some(started + LEASE);
        self.renewed_at = Some(renewed);
        continuous.then_some(started + LEASE)
    }

    /// Until when a read that started at `started`, and wrote no renewal, may be trusted: to
    /// the end of the lease, when it began after the last renewal (a push that skipped this
    /// process did so before that renewal, so the read found its commit).
    fn covers(&self, started: Instant) -> Option<Instant> {
        match (self.until, self.renewed_at) {
            (Some(until), Some(renewed)) if renewed < started && started < until => Some(until),
            _ => None,
        }
    }
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
        let renew =
            followed.recorded != Some(seen) || followed.lease.renewed_at.is_none_or(|at| at.elapsed() >= RENEW_EVERY);
        let trusted_until = if renew {
            let id = self.id.clone();
            self.db.write(move |c| rows::renew(c, &id, seen)).await?;
            followed.recorded = Some(seen);
            followed.lease.renewed(started, Instant::now())
        } else {
            followed.lease.covers(started)
        };
        if let Some(until) = trusted_until {
            self.presence.trust_until(until);
            self.hot.trust_misses_until(until);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_lets_reads_be_trusted_only_while_no_push_can_have_skipped_this_process() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut lease = Lease::default();
        assert_eq!(lease.covers(at(0)), None, "no lease yet");
        assert_eq!(lease.renewed(at(0), at(10)), None, "the first renewal: pushes before it skipped this process");
        assert_eq!(lease.covers(at(5)), None, "a read that began before the renewal");
        assert_eq!(lease.covers(at(100)), Some(at(0) + LEASE), "a read after it, up to the lease's end");
        assert_eq!(lease.renewed(at(500), at(510)), Some(at(500) + LEASE), "renewed in time: continuous");
        assert_eq!(lease.covers(at(500) + LEASE), None, "not past the lease");
        let late = at(500) + LEASE + Duration::from_millis(1);
        assert_eq!(lease.renewed(late, late), None, "renewed after it lapsed: pushes may have skipped it");
        assert_eq!(lease.covers(late + Duration::from_millis(100)), Some(late + LEASE));
    }

    fn replica(db: &Db) -> Arc<Replication> {
        Replication::new(db.clone(), Arc::new(PresenceFilter::default()), Arc::new(HotCache::default()))
    }

    /// Two processes on one database: a push through one waits for the other while it holds
    /// a lease, and returns once it has read the commit, or at once when its lease lapsed.
    #[tokio::test]
    async fn a_push_waits_until_every_replica_holding_a_lease_has_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&format!("sqlite:{}/db.sqlite?mode=rwc", dir.path().display()), false).unwrap();
        let (pushing, other) = (replica(&db), replica(&db));
        let mut followed = Followed::default();
        other.follow_once(&mut followed, Instant::now()).await.unwrap();
        let commit = || db.write_blocking(|c| rows::bump(c, rows::Counter::Paths)).unwrap();

        let first = commit();
        let waiting = tokio::time::timeout(Duration::from_millis(300), pushing.wait_until_seen(first)).await;
        assert!(waiting.is_err(), "the other replica holds a lease and has not read the commit");
        let push = tokio::spawn({
            let pushing = pushing.clone();
            async move { pushing.wait_until_seen(first).await }
        });
        other.follow_once(&mut followed, Instant::now()).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), push).await.expect("answered once it was read").unwrap();

        // The other process stops renewing (it died, or cannot reach the database): past its
        // lease it is no longer waited for.
        let second = commit();
        db.write_blocking(|c| {
            use diesel::RunQueryDsl;
            diesel::sql_query("UPDATE replicas SET renewed_at = '2000-01-01 00:00:00'").execute(c)?;
            Ok(())
        })
        .unwrap();
        tokio::time::timeout(Duration::from_secs(5), pushing.wait_until_seen(second))
            .await
            .expect("a replica whose lease lapsed is not waited for");
    }
}
