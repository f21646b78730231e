//! Browser sessions and failed sign-in attempts.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::User;
use super::schema::{sessions, sign_in_failures, users};
use super::{AnyConnection, DbResult, now};

pub fn create(conn: &mut AnyConnection, user_id: i64, token_hash: &str, expires_at: NaiveDateTime) -> DbResult<()> {
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
pub fn delete_for_user(conn: &mut AnyConnection, user_id: i64) -> DbResult<()> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut AnyConnection, token_hash: &str) -> DbResult<()> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash))).execute(conn)?;
    Ok(())
}

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

pub fn clear_failures(conn: &mut AnyConnection, peer: &str) -> DbResult<()> {
    diesel::delete(sign_in_failures::table.filter(sign_in_failures::peer.eq(peer))).execute(conn)?;
    Ok(())
}
