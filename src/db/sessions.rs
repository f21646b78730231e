//! Browser sessions and failed sign-in attempts.

use super::ids::UserId;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::User;
use super::schema::{sessions, sign_in_failures, users};
use super::{AnyConnection, DbResult, now};

pub fn create(conn: &mut AnyConnection, user_id: UserId, token_hash: &str, expires_at: NaiveDateTime) -> DbResult<()> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(token_hash),
            sessions::user_id.eq(user_id),
            sessions::expires_at.eq(expires_at),
            sessions::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The user of an unexpired session.
pub fn user_of(conn: &mut AnyConnection, token_hash: &str) -> DbResult<Option<User>> {
    let user: Option<User> = sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .filter(sessions::expires_at.gt(now()))
        .select(User::as_select())
        .first(conn)
        .optional()?;
    user.map(|u| super::users::with_group_rights(conn, u)).transpose()
}

/// Signs a user out everywhere (after a password reset).
pub fn delete_for_user(conn: &mut AnyConnection, user_id: UserId) -> DbResult<()> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?;
    Ok(())
}

/// Signs a user out of every session but the one with `keep_hash` (after a password change).
pub fn delete_others(conn: &mut AnyConnection, user_id: UserId, keep_hash: &str) -> DbResult<()> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id)).filter(sessions::token_hash.ne(keep_hash)))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut AnyConnection, token_hash: &str) -> DbResult<()> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash))).execute(conn)?;
    Ok(())
}

/// Counts the failed sign-ins of an address and of an account since `since`, and when both
/// are under their limits records this attempt as a failure (removed again if it succeeds).
/// On PostgreSQL a transaction lock makes check-and-record atomic across server processes
/// (SQLite runs one writer at a time). Returns the attempt's id, or `None` when limited.
pub fn begin_attempt(
    conn: &mut AnyConnection,
    peer: &str,
    account: &str,
    since: NaiveDateTime,
    limits: (i64, i64),
) -> DbResult<Option<i64>> {
    if let AnyConnection::Postgresql(pg) = conn {
        // One lock for all sign-in bookkeeping: attempts are rare and this is short.
        diesel::sql_query("SELECT pg_advisory_xact_lock(7305553001)").execute(pg)?;
    }
    let by_peer: i64 = sign_in_failures::table
        .filter(sign_in_failures::peer.eq(peer))
        .filter(sign_in_failures::at.gt(since))
        .count()
        .get_result(conn)?;
    let by_account: i64 = sign_in_failures::table
        .filter(sign_in_failures::account.eq(account))
        .filter(sign_in_failures::at.gt(since))
        .count()
        .get_result(conn)?;
    if by_peer >= limits.0 || by_account >= limits.1 {
        return Ok(None);
    }
    diesel::insert_into(sign_in_failures::table)
        .values((
            sign_in_failures::peer.eq(peer),
            sign_in_failures::account.eq(account),
            sign_in_failures::at.eq(now()),
        ))
        .execute(conn)?;
    let id = sign_in_failures::table
        .filter(sign_in_failures::peer.eq(peer))
        .filter(sign_in_failures::account.eq(account))
        .order(sign_in_failures::id.desc())
        .select(sign_in_failures::id)
        .first(conn)?;
    Ok(Some(id))
}

/// A successful sign-in forgets this address's failures on this account only (failures on
/// other accounts keep counting).
pub fn forget_failures(conn: &mut AnyConnection, peer: &str, account: &str) -> DbResult<()> {
    diesel::delete(
        sign_in_failures::table.filter(sign_in_failures::peer.eq(peer)).filter(sign_in_failures::account.eq(account)),
    )
    .execute(conn)?;
    Ok(())
}

/// Records an event for the rate limits that share this table (password reset requests).
pub fn record_failure(conn: &mut AnyConnection, peer: &str) -> DbResult<()> {
    diesel::insert_into(sign_in_failures::table)
        .values((sign_in_failures::peer.eq(peer), sign_in_failures::at.eq(now())))
        .execute(conn)?;
    Ok(())
}

pub fn failures_since(conn: &mut AnyConnection, peer: &str, since: NaiveDateTime) -> DbResult<i64> {
    Ok(sign_in_failures::table
        .filter(sign_in_failures::peer.eq(peer))
        .filter(sign_in_failures::at.gt(since))
        .count()
        .get_result(conn)?)
}
