//! Work one process at a time may do across every replica (garbage collection): on
//! PostgreSQL a session advisory lock, on SQLite an exclusive lock on a file beside the
//! database. Both end with the process that holds them, so a process that dies mid-run (a
//! crash, a kill) never blocks the next one.

use std::path::PathBuf;

use diesel::RunQueryDsl;
use diesel::r2d2::PooledConnection;
use diesel::sql_types::{BigInt, Bool};

use super::connection::Manager;
use super::{AnyConnection, DbError, DbResult};

/// Held until dropped (or released).
pub struct ExclusiveLock {
    inner: Held,
}

enum Held {
    Postgres { conn: Box<PooledConnection<Manager>>, key: i64 },
    File(#[allow(dead_code)] std::fs::File),
}

#[derive(diesel::QueryableByName)]
struct Taken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

/// What a lock is for.
#[derive(Debug, Clone, Copy)]
pub enum Exclusive {
    GarbageCollection,
}

impl Exclusive {
    /// The PostgreSQL advisory-lock key (sessions use 7305553001 for first-run setup).
    fn key(self) -> i64 {
        match self {
            Self::GarbageCollection => 7_305_553_002,
        }
    }

    /// The lock file beside an SQLite database: `<database>.<suffix>`.
    fn file_suffix(self) -> &'static str {
        match self {
            Self::GarbageCollection => "gc.lock",
        }
    }
}

/// Takes the PostgreSQL advisory lock on `conn` (kept for as long as the lock is).
pub fn try_postgres(mut conn: PooledConnection<Manager>, what: Exclusive) -> DbResult<Option<ExclusiveLock>> {
    let key = what.key();
    let taken: Taken = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS taken")
        .bind::<BigInt, _>(key)
        .get_result::<Taken>(&mut *conn as &mut AnyConnection)?;
    Ok(taken.taken.then(|| ExclusiveLock { inner: Held::Postgres { conn: Box::new(conn), key } }))
}

/// Takes an exclusive lock on the lock file beside the database.
pub fn try_file(database: &str, what: Exclusive) -> DbResult<Option<ExclusiveLock>> {
    use std::os::fd::AsRawFd;
    let path = PathBuf::from(format!("{database}.{}", what.file_suffix()));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| DbError::Pool(format!("cannot open the lock file {}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor this function owns; it touches no memory.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    Ok(locked.then_some(ExclusiveLock { inner: Held::File(file) }))
}

impl ExclusiveLock {
    /// Releases the lock off the async runtime (on PostgreSQL that is a query).
    pub async fn release(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        if let Held::Postgres { conn, key } = &mut self.inner {
            // Unlocked explicitly, as the connection goes back to the pool, not away.
            let unlocked =
                diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<BigInt, _>(*key).execute(&mut **conn);
            if let Err(e) = unlocked {
                tracing::warn!("could not release a lock (it ends with the connection): {e}");
            }
        }
    }
}
