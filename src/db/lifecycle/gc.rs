//! Garbage collection: NARs no path uses any more, due after the grace period; objects no
//! row owns; expired rows.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::*;
use crate::db::schema::{nars, reclaims, store_paths};
use crate::db::{AnyConnection, DbResult};

/// A NAR garbage collection may delete.
#[derive(Debug, Clone)]
pub struct DueNar {
    pub id: i64,
    pub storage_key: String,
    pub file_size: i64,
}

/// Marks NARs that no path uses but were never marked (rows older than this feature, or
/// left by hand) as unreferenced from `now`, so that they get their grace period too.
pub fn mark_unused_nars(conn: &mut AnyConnection, now: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::update(nars::table)
        .filter(nars::unreferenced_since.is_null())
        .filter(diesel::dsl::not(diesel::dsl::exists(store_paths::table.filter(store_paths::nar_id.eq(nars::id)))))
        .set(nars::unreferenced_since.eq(now))
        .execute(conn)?)
}

/// Up to `limit` NARs unreferenced since before `cutoff`, after id `after`.
pub fn due_nars(conn: &mut AnyConnection, cutoff: NaiveDateTime, after: i64, limit: i64) -> DbResult<Vec<DueNar>> {
    let rows: Vec<(i64, String, i64)> = nars::table
        .filter(nars::unreferenced_since.lt(cutoff))
        .filter(nars::id.gt(after))
        .order(nars::id)
        .select((nars::id, nars::storage_key, nars::file_size))
        .limit(limit)
        .load(conn)?;
    Ok(rows.into_iter().map(|(id, storage_key, file_size)| DueNar { id, storage_key, file_size }).collect())
}

/// Deletes the NAR rows that are still due (no push took them meanwhile), each checked as it
/// is deleted; returns those it deleted. Their objects are the caller's to delete after the
/// commit. One transaction for the batch: a commit per NAR made collecting a million of them
/// take as many synchronous writes.
pub fn delete_due_nars(conn: &mut AnyConnection, due: Vec<DueNar>, cutoff: NaiveDateTime) -> DbResult<Vec<DueNar>> {
    let mut deleted = Vec::with_capacity(due.len());
    for nar in due {
        let removed = diesel::delete(nars::table.find(nar.id))
            .filter(nars::unreferenced_since.lt(cutoff))
            .filter(diesel::dsl::not(diesel::dsl::exists(store_paths::table.filter(store_paths::nar_id.eq(nars::id)))))
            .execute(conn)?;
        if removed > 0 {
            deleted.push(nar);
        }
    }
    Ok(deleted)
}

/// Which of these object keys a row owns: a NAR, a pending upload or a build log.
pub fn owned_keys(conn: &mut AnyConnection, keys: &[String]) -> DbResult<HashSet<String>> {
    use crate::db::schema::{build_logs, pending_nars};
    let mut owned = HashSet::new();
    for chunk in keys.chunks(BATCH) {
        owned.extend(
            nars::table.filter(nars::storage_key.eq_any(chunk)).select(nars::storage_key).load::<String>(conn)?,
        );
        owned.extend(
            pending_nars::table
                .filter(pending_nars::storage_key.eq_any(chunk))
                .select(pending_nars::storage_key)
                .load::<String>(conn)?,
        );
        owned.extend(
            build_logs::table
                .filter(build_logs::storage_key.eq_any(chunk))
                .select(build_logs::storage_key)
                .load::<String>(conn)?,
        );
    }
    Ok(owned)
}

/// Rows past their use: expired sessions, login requests and links, old sign-in failures,
/// traffic older than `traffic_before`, expired pins and old reclaim records. Returns how
/// many rows went.
pub fn prune_expired(conn: &mut AnyConnection, now: NaiveDateTime, traffic_before: NaiveDateTime) -> DbResult<usize> {
    use crate::db::schema::{sessions, sign_in_failures, traffic_hourly, user_links};
    let mut pruned = diesel::delete(sessions::table.filter(sessions::expires_at.lt(now))).execute(conn)?;
    pruned += diesel::delete(user_links::table.filter(user_links::expires_at.lt(now))).execute(conn)?;
    pruned += diesel::delete(sign_in_failures::table.filter(sign_in_failures::at.lt(now - chrono::Duration::days(1))))
        .execute(conn)?;
    pruned += diesel::delete(traffic_hourly::table.filter(traffic_hourly::hour.lt(traffic_before))).execute(conn)?;
    pruned += crate::db::cli_logins::delete_expired(conn)?;
    pruned += crate::db::oidc::delete_expired_flows(conn)?;
    pruned += crate::db::trust::delete_expired_used(conn)?;
    pruned += delete_expired_pins(conn, now)?;
    pruned += diesel::delete(reclaims::table.filter(reclaims::at.lt(traffic_before))).execute(conn)?;
    Ok(pruned)
}

/// Deletes a NAR row no path uses, due or not (fsck found it broken); the object is the
/// caller's to delete. False when a path still uses it.
pub fn delete_unused_nar(conn: &mut AnyConnection, id: i64) -> DbResult<bool> {
    Ok(diesel::delete(nars::table.find(id))
        .filter(diesel::dsl::not(diesel::dsl::exists(store_paths::table.filter(store_paths::nar_id.eq(nars::id)))))
        .execute(conn)?
        > 0)
}

/// Lets SQLite refresh the statistics its query planner uses (PostgreSQL's autovacuum does
/// its own); cheap when nothing changed much.
pub fn refresh_statistics(conn: &mut AnyConnection) -> DbResult<()> {
    use diesel::connection::SimpleConnection;
    if let AnyConnection::Sqlite(sqlite) = conn {
        sqlite.batch_execute("PRAGMA optimize")?;
    }
    Ok(())
}
