//! Persistence: diesel over SQLite or PostgreSQL, picked at run time from `DB_URL`.
//!
//! Queries live in one module per table group; they take `&mut AnyConnection` and never know
//! about HTTP. [`Db`] runs them on the blocking pool so async handlers never block.

pub mod browse;
pub mod caches;
pub mod cli_logins;
mod connection;
pub mod email_changes;
mod exclusive;
pub mod groups;
pub mod ids;
pub mod lifecycle;
pub mod mail;
pub mod models;
pub mod oidc;
pub mod paths;
pub mod permissions;
pub mod replication;
pub mod schema;
pub mod sessions;
pub mod setup;
pub mod traffic;
pub mod trust;
pub mod uploads;
pub mod upstreams;
pub mod users;

use std::sync::{Arc, Mutex};

#[cfg(test)]
pub use connection::migrated_in_memory;
pub use connection::{AnyConnection, DbUrl};
pub use exclusive::{Exclusive, ExclusiveLock};

use diesel::r2d2::{Pool, PooledConnection};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("database connection error: {0}")]
    Pool(String),
    #[error("database task failed: {0}")]
    Task(String),
}

impl DbError {
    /// The database cannot be reached (down, restarting, every connection busy, a connection
    /// cut mid-query): worth retrying, unlike a query the database refused.
    pub fn is_unavailable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            Self::Pool(_) => true,
            Self::Query(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => true,
            Self::Query(Error::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                let message = info.message();
                // PostgreSQL ending sessions (restart, failover) and lost connections.
                ["terminating connection", "server closed the connection", "connection to server", "could not connect"]
                    .iter()
                    .any(|m| message.contains(m))
            }
            Self::Query(_) | Self::Task(_) => false,
        }
    }

    /// The database aborted the transaction to resolve a conflict with a concurrent one (a
    /// deadlock, or a serialization failure): running it again is the remedy.
    pub fn is_transient_conflict(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            Self::Query(Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => true,
            // PostgreSQL's 40P01, which diesel does not classify (messages in English, as the
            // connection's lc_messages is left at the server's default).
            Self::Query(Error::DatabaseError(DatabaseErrorKind::Unknown, info)) => {
                info.message().contains("deadlock detected")
            }
            _ => false,
        }
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// The answer of a transaction that may refuse: `Ok(Ok(..))` done, `Ok(Err(refusal))`
/// refused. A refused transaction still commits: use [`refuse`] where it wrote nothing yet
/// (the refusal leaves the database as it was), [`refuse_keeping_writes`] where what it wrote
/// must stay (a counted try, an expired row deleted). A change that must not happen at all
/// rolls back instead (see [`is_refused_rollback`]).
pub type Refusable<T, E> = DbResult<Result<T, E>>;

/// Refuses before this transaction wrote anything.
pub fn refuse<T, E>(refusal: E) -> Refusable<T, E> {
    Ok(Err(refusal))
}

/// Refuses, and commits what this transaction wrote on purpose before deciding.
pub fn refuse_keeping_writes<T, E>(refusal: E) -> Refusable<T, E> {
    Ok(Err(refusal))
}

/// How many times [`Db::write_retrying`] runs a transaction the database keeps aborting.
pub const WRITE_ATTEMPTS: usize = 3;

/// A pool of connections plus, on SQLite, a lock that serialises writers (SQLite allows one
/// writer; taking the lock up front avoids SQLITE_BUSY on read-to-write upgrades).
#[derive(Clone)]
pub struct Db {
    pool: Pool<connection::Manager>,
    sqlite_write_lock: Option<Arc<Mutex<()>>>,
    /// The SQLite database file, beside which exclusive locks live; None on PostgreSQL.
    sqlite_file: Option<String>,
    url: DbUrl,
}

impl Db {
    /// Connects, checks the database answers, and applies pending migrations.
    pub fn open(url: &str, log_queries: bool) -> anyhow::Result<Self> {
        let url = DbUrl::parse(url)?;
        let is_sqlite = matches!(url, DbUrl::Sqlite(_));
        let sqlite_file = match &url {
            DbUrl::Sqlite(uri) => Some(connection::sqlite_file(uri)),
            DbUrl::Postgres(_) => None,
        };
        // Fail fast with the real error instead of r2d2's generic timeout.
        let mut first = connection::connect(&url, log_queries)?;
        connection::run_migrations(&mut first)?;
        drop(first);
        let manager = connection::Manager { url: url.clone(), log_queries };
        let pool = Pool::builder()
            .max_size(if is_sqlite { 8 } else { 16 })
            // A PostgreSQL connection can break (a server restart) and is tested with a query
            // when taken from the pool; an SQLite file connection cannot, and the test query
            // would double the cost of every lookup on the narinfo path.
            .test_on_check_out(!is_sqlite)
            .connection_timeout(std::time::Duration::from_secs(10))
            .build(manager)?;
        Ok(Self { pool, sqlite_write_lock: is_sqlite.then(|| Arc::new(Mutex::new(()))), sqlite_file, url })
    }

    /// The PostgreSQL URL, for a connection of its own (listening for notifications).
    pub fn postgres_url(&self) -> Option<String> {
        match &self.url {
            DbUrl::Postgres(url) => Some(url.clone()),
            DbUrl::Sqlite(_) => None,
        }
    }

    fn conn(&self) -> DbResult<PooledConnection<connection::Manager>> {
        self.pool.get().map_err(|e| DbError::Pool(format!("{e:#}")))
    }

    /// Runs read-only work on the blocking pool.
    pub async fn read<T, F>(&self, work: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> DbResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || work(&mut *db.conn()?)).await.map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Runs work that writes, inside one transaction, on the blocking pool.
    pub async fn write<T, F>(&self, work: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> DbResult<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.write_blocking(work)).await.map_err(|e| DbError::Task(e.to_string()))?
    }

    /// [`Db::write`] for work that can run again: when the database aborts the transaction
    /// to end a deadlock or a serialization conflict (or with an error `also_retry` names),
    /// it runs again, up to [`WRITE_ATTEMPTS`] times in all.
    pub async fn write_retrying<T, F>(&self, also_retry: fn(&DbError) -> bool, work: F) -> DbResult<T>
    where
        T: Send + 'static,
        F: Fn(&mut AnyConnection) -> DbResult<T> + Clone + Send + 'static,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.write(work.clone()).await {
                Err(e) if attempts < WRITE_ATTEMPTS && (e.is_transient_conflict() || also_retry(&e)) => continue,
                other => return other,
            }
        }
    }

    /// Takes the lock if no process (here or on another replica) holds it; it is held
    /// until [`ExclusiveLock::release`] (or a drop), or the process ends.
    pub async fn try_exclusive(&self, what: Exclusive) -> DbResult<Option<ExclusiveLock>> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || match &db.sqlite_file {
            Some(file) => exclusive::try_file(file, what),
            None => exclusive::try_postgres(db.conn()?, what),
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// The synchronous form of [`Db::write`], for the admin commands.
    pub fn write_blocking<T>(&self, work: impl FnOnce(&mut AnyConnection) -> DbResult<T>) -> DbResult<T> {
        let _guard = self.sqlite_write_lock.as_ref().map(|l| l.lock().unwrap_or_else(|e| e.into_inner()));
        let mut conn = self.conn()?;
        use diesel::Connection;
        conn.transaction(|c| {
            take_sqlite_write_lock(c)?;
            work(c)
        })
    }
}

/// On SQLite, makes a write transaction hold the write lock from its first statement (as
/// `BEGIN IMMEDIATE` would). A transaction that reads first and writes later cannot wait
/// for the lock: when another process (an admin command beside the server) committed in
/// between, SQLite fails it at once with "database is locked". A write that matches nothing
/// takes the lock, waiting up to `busy_timeout` like any other.
fn take_sqlite_write_lock(conn: &mut AnyConnection) -> DbResult<()> {
    use diesel::connection::SimpleConnection;
    if let AnyConnection::Sqlite(sqlite) = conn {
        sqlite.batch_execute("UPDATE caches SET id = id WHERE 0")?;
    }
    Ok(())
}

/// The current time as stored in every timestamp column (naive UTC).
pub fn now() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Did a change roll back because it would have left no administrator?
pub fn is_refused_rollback(e: &DbError) -> bool {
    matches!(e, DbError::Query(diesel::result::Error::RollbackTransaction))
}

/// Was this error a unique-constraint violation (a concurrent insert won)?
pub fn is_unique_violation(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
    )
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::DbError;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DbError {
        DbError::Query(Error::DatabaseError(kind, Box::new(message.to_string())))
    }

    #[test]
    fn deadlocks_and_serialization_failures_are_worth_running_again() {
        assert!(database_error(DatabaseErrorKind::Unknown, "deadlock detected").is_transient_conflict());
        assert!(database_error(DatabaseErrorKind::SerializationFailure, "could not serialize").is_transient_conflict());
        assert!(!database_error(DatabaseErrorKind::UniqueViolation, "duplicate key").is_transient_conflict());
        assert!(!database_error(DatabaseErrorKind::Unknown, "syntax error").is_transient_conflict());
        assert!(!database_error(DatabaseErrorKind::Unknown, "deadlock detected").is_unavailable());
    }
}
