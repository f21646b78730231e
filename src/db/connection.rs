//! Connecting to SQLite or PostgreSQL from one `DB_URL`, and the per-backend migrations.
//!
//! diesel's derived `MultiConnection::establish` tries every backend and swallows the errors
//! (a typo silently creates an SQLite file), so the scheme is parsed here instead.

use anyhow::{Context, anyhow, bail};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A `file:` URI for SQLite (diesel opens SQLite with URI support).
    Sqlite(String),
    Postgres(String),
}

impl DbUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            bail!("DB_URL must start with sqlite: or postgres://, got {url:?}");
        };
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            bail!("DB_URL {url:?} names no SQLite file");
        }
        if path != ":memory:" {
            let parent = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(dir) = parent
                && !dir.is_dir()
            {
                bail!("DB_URL {url:?}: the directory {} does not exist", dir.display());
            }
        }
        Ok(Self::Sqlite(format!("file:{rest}")))
    }
}

impl DbUrl {
    /// Which database this is, for people (the first-run page): the SQLite file, or the
    /// PostgreSQL host and database without credentials.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(uri) => format!("SQLite, in the file {}", sqlite_file(uri)),
            Self::Postgres(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
                // Credentials end at the last '@' before the path.
                let location = rest.split(['/', '?']).next().unwrap_or_default();
                let host = location.rsplit_once('@').map_or(location, |(_, host)| host);
                let database = rest.split_once('/').map(|(_, db)| db.split('?').next().unwrap_or_default());
                match database.filter(|d| !d.is_empty()) {
                    Some(database) => format!("PostgreSQL, database {database} on {host}"),
                    None => format!("PostgreSQL on {host}"),
                }
            }
        }
    }
}

/// Why this process cannot create `file`, when its directory is not writable by it: which
/// user the server runs as, who owns the directory, and the fix (a bind mount of a host
/// directory into the container, most often).
fn not_writable(file: &str) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let dir = std::path::Path::new(file).parent().filter(|d| !d.as_os_str().is_empty())?;
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: access(2) reads a NUL-terminated path and nothing else.
    if unsafe { libc::access(c_dir.as_ptr(), libc::W_OK) } == 0 {
        return None;
    }
    let owner = std::fs::metadata(dir).ok()?.uid();
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    let dir = dir.display();
    Some(format!(
        "the server runs as uid {uid} and cannot write in {dir} (owned by uid {owner}): \
         give the directory to that user (`chown {uid} {dir}`) or run the server as its owner"
    ))
}

/// The file path in an SQLite `file:` URI (without its query).
pub fn sqlite_file(uri: &str) -> String {
    let path = uri.strip_prefix("file:").unwrap_or(uri);
    path.split('?').next().unwrap_or(path).to_string()
}

pub fn connect(url: &DbUrl, log_queries: bool) -> anyhow::Result<AnyConnection> {
    let mut conn = match url {
        DbUrl::Postgres(u) => AnyConnection::Postgresql(
            PgConnection::establish(u).map_err(|e| anyhow!("cannot connect to PostgreSQL: {e}"))?,
        ),
        DbUrl::Sqlite(u) => {
            // busy_timeout first: switching to WAL needs a lock other pool connections may hold.
            let mut c = SqliteConnection::establish(u).map_err(|e| match not_writable(&sqlite_file(u)) {
                Some(why) => anyhow!("cannot open SQLite database {u}: {e}; {why}"),
                None => anyhow!("cannot open SQLite database {u}: {e}"),
            })?;
            c.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
                .with_context(|| format!("cannot configure SQLite database {u}"))?;
            AnyConnection::Sqlite(c)
        }
    };
    if log_queries {
        use diesel::connection::{Instrumentation, InstrumentationEvent};
        struct LogQueries;
        impl Instrumentation for LogQueries {
            fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
                if let InstrumentationEvent::StartQuery { query, .. } = event {
                    tracing::info!(target: "hibernation::sql", "{}", without_binds(&query.to_string()));
                }
            }
        }
        conn.set_instrumentation(LogQueries);
    }
    Ok(conn)
}

/// The statement of a logged query without its bind values, which carry secrets (password
/// hashes, SMTP passwords, token hashes) that must never reach the log.
fn without_binds(query: &str) -> &str {
    query.split_once(" -- binds: ").map_or(query, |(sql, _)| sql)
}

pub fn run_migrations(conn: &mut AnyConnection) -> anyhow::Result<()> {
    let applied = match conn {
        AnyConnection::Postgresql(c) => c.run_pending_migrations(PG_MIGRATIONS).map(|v| v.len()),
        AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    }
    .map_err(|e| anyhow!("database migration failed: {e}"))?;
    if applied > 0 {
        tracing::info!("applied {applied} database migration(s)");
    }
    Ok(())
}

/// r2d2 manager that connects through [`connect`].
pub struct Manager {
    pub url: DbUrl,
    pub log_queries: bool,
}

impl diesel::r2d2::ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        connect(&self.url, self.log_queries)
            .map_err(|e| diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(format!("{e:#}"))))
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1").map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

/// A migrated in-memory SQLite database, for unit tests.
#[cfg(test)]
pub fn migrated_in_memory() -> AnyConnection {
    let mut conn = AnyConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
    run_migrations(&mut conn).unwrap();
    conn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_are_described_without_credentials() {
        let pg = DbUrl::parse("postgres://hib:s3cret@db.internal:5432/cache?sslmode=require").unwrap();
        assert_eq!(pg.describe(), "PostgreSQL, database cache on db.internal:5432");
        assert!(!pg.describe().contains("s3cret"));
        let odd = DbUrl::parse("postgresql://user:p@ss@db/").unwrap();
        assert_eq!(odd.describe(), "PostgreSQL on db");
        let sqlite = DbUrl::Sqlite("file:/var/lib/hibernation/db.sqlite?mode=rwc".into());
        assert_eq!(sqlite.describe(), "SQLite, in the file /var/lib/hibernation/db.sqlite");
    }

    #[test]
    fn logged_queries_leave_out_bind_values() {
        let logged = "UPDATE smtp_settings SET password = ? -- binds: [\"hunter2\"]";
        assert_eq!(without_binds(logged), "UPDATE smtp_settings SET password = ?");
        assert_eq!(without_binds("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn parses_supported_urls() {
        assert_eq!(DbUrl::parse("sqlite::memory:").unwrap(), DbUrl::Sqlite("file::memory:".into()));
        assert_eq!(DbUrl::parse("sqlite:/tmp/x.db?mode=rwc").unwrap(), DbUrl::Sqlite("file:/tmp/x.db?mode=rwc".into()));
        assert_eq!(DbUrl::parse("sqlite:///tmp/x.db").unwrap(), DbUrl::Sqlite("file:/tmp/x.db".into()));
        assert!(matches!(DbUrl::parse("postgres://u@h/db").unwrap(), DbUrl::Postgres(_)));
    }

    #[test]
    fn rejects_unknown_schemes_and_missing_directories() {
        let err = DbUrl::parse("nonsense").unwrap_err().to_string();
        assert!(err.contains("must start with sqlite: or postgres://"), "{err}");
        let err = DbUrl::parse("sqlite:/nonexistent/dir/x.db?mode=rwc").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/dir does not exist"), "{err}");
        assert!(DbUrl::parse("mysql://x").is_err());
    }

    #[test]
    fn groups_keep_what_they_gave_when_permissions_became_bits() {
        use diesel::connection::SimpleConnection;
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        let pending = conn.pending_migrations(SQLITE_MIGRATIONS).unwrap();
        let (before, after): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|m| m.name().to_string().as_str() < "2026-11-30-000005");
        assert!(!before.is_empty() && !after.is_empty());
        for migration in &before {
            conn.run_migration(migration).unwrap();
        }
        conn.batch_execute(
            "INSERT INTO user_groups (name, can_create_caches, can_administer, created_at) VALUES
             ('builders', 1, 0, '2026-11-30 00:00:00'), ('admins', 0, 1, '2026-11-30 00:00:00'),
             ('both', 1, 1, '2026-11-30 00:00:00'), ('none', 0, 0, '2026-11-30 00:00:00');",
        )
        .unwrap();
        for migration in &after {
            conn.run_migration(migration).unwrap();
        }
        use crate::db::schema::user_groups::dsl::*;
        use diesel::prelude::*;
        let bits: Vec<(String, i64)> = user_groups.select((name, permissions)).order(name).load(&mut conn).unwrap();
        let expected = [("admins", 511), ("both", 511), ("builders", 64), ("none", 0)];
        assert_eq!(bits, expected.map(|(n, b)| (n.to_string(), b)));
    }
}
