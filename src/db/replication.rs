//! What replicas follow to agree with each other: change counters bumped in the transactions
//! that change what they remember, the order in which paths were committed, and the serving
//! processes with the last commit each has read (see `services::serving::replication`).
//!
//! On PostgreSQL every bump also sends a notification on [`CHANNEL`], delivered when the
//! transaction commits, so replicas read at once instead of at their next poll.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::Timestamp;

use super::schema::{change_counters, replicas};
use super::{AnyConnection, DbResult};

/// The PostgreSQL notification channel replicas listen on.
pub const CHANNEL: &str = "hibernation_changes";
/// The payload of a notification that a replica recorded what it has read.
pub const SEEN: &str = "seen";
/// How often the listening connection looks for notifications (diesel offers no blocking wait).
const LISTEN_POLL: Duration = Duration::from_millis(2);

/// What a change counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// The last commit sequence number given to stored paths.
    Paths,
    /// Changes to who may do what (tokens, grants, users, groups, cache settings).
    Access,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::Paths => "paths",
            Counter::Access => "access",
        }
    }
}

/// The counters as read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub paths: i64,
    pub access: i64,
}

/// Takes the next value of `counter` and returns it. On PostgreSQL the counter's row stays
/// locked until the transaction ends, so transactions that bump the same counter commit in
/// the order of their values: a reader that sees value n sees every value below it too. Call
/// it as the last thing a transaction does before it commits (the lock is held until then).
pub fn bump(conn: &mut AnyConnection, counter: Counter) -> DbResult<i64> {
    diesel::update(change_counters::table.find(counter.name()))
        .set(change_counters::value.eq(change_counters::value + 1))
        .execute(conn)?;
    let value = change_counters::table.find(counter.name()).select(change_counters::value).first(conn)?;
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query(format!("NOTIFY {CHANNEL}, '{}'", counter.name())).execute(pg)?;
    }
    Ok(value)
}

/// Records a change to who may do what (in the transaction that makes it): every replica
/// forgets what it remembered of access within a second (see `services::serving::replication`).
pub fn access_changed(conn: &mut AnyConnection) -> DbResult<()> {
    bump(conn, Counter::Access).map(|_| ())
}

pub fn read_counters(conn: &mut AnyConnection) -> DbResult<Counters> {
    let rows: Vec<(String, i64)> =
        change_counters::table.select((change_counters::name, change_counters::value)).load(conn)?;
    let value = |counter: Counter| rows.iter().find(|(n, _)| n == counter.name()).map_or(0, |(_, v)| *v);
    Ok(Counters { paths: value(Counter::Paths), access: value(Counter::Access) })
}

#[derive(QueryableByName)]
struct DatabaseNow {
    #[diesel(sql_type = Timestamp)]
    now: NaiveDateTime,
}

/// The database's clock (UTC): replicas judge each other's leases by one clock.
pub fn database_now(conn: &mut AnyConnection) -> DbResult<NaiveDateTime> {
    let sql = match conn {
        AnyConnection::Postgresql(_) => "SELECT (clock_timestamp() AT TIME ZONE 'utc')::timestamp AS now",
        AnyConnection::Sqlite(_) => "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') AS now",
    };
    Ok(diesel::sql_query(sql).get_result::<DatabaseNow>(conn)?.now)
}

/// Records that replica `id` has read every commit up to `seen_seq`, and renews its lease
/// from now (the database's clock). On PostgreSQL it tells waiting pushes at commit.
pub fn renew(conn: &mut AnyConnection, id: &str, seen_seq: i64) -> DbResult<()> {
    let now = database_now(conn)?;
    let updated = diesel::update(replicas::table.find(id))
        .set((replicas::seen_seq.eq(seen_seq), replicas::renewed_at.eq(now)))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(replicas::table)
            .values((replicas::id.eq(id), replicas::seen_seq.eq(seen_seq), replicas::renewed_at.eq(now)))
            .execute(conn)?;
    }
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query(format!("NOTIFY {CHANNEL}, '{SEEN}'")).execute(pg)?;
    }
    Ok(())
}

/// A serving process as the others see it.
#[derive(Debug, Clone, Queryable)]
pub struct Replica {
    pub id: String,
    pub seen_seq: i64,
    pub renewed_at: NaiveDateTime,
}

/// Every registered replica, and the database's clock when they were read.
pub fn replicas(conn: &mut AnyConnection) -> DbResult<(Vec<Replica>, NaiveDateTime)> {
    let rows = replicas::table.select((replicas::id, replicas::seen_seq, replicas::renewed_at)).load(conn)?;
    Ok((rows, database_now(conn)?))
}

/// Removes a replica (it stops serving), or those not renewed since `before` (long gone).
pub fn remove_replica(conn: &mut AnyConnection, id: &str) -> DbResult<()> {
    diesel::delete(replicas::table.find(id)).execute(conn)?;
    Ok(())
}

pub fn remove_replicas_renewed_before(conn: &mut AnyConnection, before: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::delete(replicas::table.filter(replicas::renewed_at.lt(before))).execute(conn)?)
}

/// Listens on [`CHANNEL`] for the life of the process, calling `heard` with each payload (and
/// with "listening" on each (re)connection: something may have been missed meanwhile).
/// Reconnects a second after an error.
pub fn listen(url: &str, heard: impl Fn(&str)) {
    loop {
        if let Err(e) = listen_once(url, &heard) {
            tracing::warn!("not listening for other processes' changes (polling meanwhile): {e}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn listen_once(url: &str, heard: &impl Fn(&str)) -> Result<(), diesel::result::Error> {
    let mut conn =
        diesel::PgConnection::establish(url).map_err(|e| diesel::result::Error::QueryBuilderError(e.into()))?;
    diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn)?;
    heard("listening");
    loop {
        for notification in conn.notifications_iter() {
            heard(&notification?.payload);
        }
        std::thread::sleep(LISTEN_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::connection::migrated_in_memory as migrated;

    #[test]
    fn counters_count_each_kind_of_change() {
        let mut conn = migrated();
        assert_eq!(read_counters(&mut conn).unwrap(), Counters::default());
        assert_eq!(bump(&mut conn, Counter::Paths).unwrap(), 1);
        assert_eq!(bump(&mut conn, Counter::Paths).unwrap(), 2);
        assert_eq!(bump(&mut conn, Counter::Access).unwrap(), 1);
        assert_eq!(read_counters(&mut conn).unwrap(), Counters { paths: 2, access: 1 });
    }

    #[test]
    fn replicas_renew_their_lease_by_the_database_clock() {
        let mut conn = migrated();
        let before = database_now(&mut conn).unwrap();
        renew(&mut conn, "a", 3).unwrap();
        renew(&mut conn, "b", 1).unwrap();
        renew(&mut conn, "a", 5).unwrap();
        let (mut rows, now) = replicas(&mut conn).unwrap();
        rows.sort_by(|x, y| x.id.cmp(&y.id));
        assert_eq!(rows.iter().map(|r| (r.id.as_str(), r.seen_seq)).collect::<Vec<_>>(), [("a", 5), ("b", 1)]);
        assert!(rows.iter().all(|r| r.renewed_at >= before && r.renewed_at <= now), "{rows:?} {before} {now}");
        remove_replica(&mut conn, "b").unwrap();
        assert_eq!(remove_replicas_renewed_before(&mut conn, now + chrono::Duration::seconds(1)).unwrap(), 1);
        assert!(replicas(&mut conn).unwrap().0.is_empty());
    }
}
