//! Changes of a user's email address waiting for their codes (one per user).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::ids::UserId;
use super::schema::{email_changes, users};
use super::{AnyConnection, DbResult, now};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = email_changes)]
pub struct PendingEmailChange {
    pub new_email: String,
    /// None when the account had no address to send a code to.
    pub old_code_hash: Option<String>,
    pub new_code_hash: String,
    pub expires_at: NaiveDateTime,
    pub failed_tries: i64,
}

/// The codes' hashes for a new change, replacing one asked for earlier.
pub struct NewCodes<'a> {
    pub new_email: &'a str,
    pub old_code_hash: Option<&'a str>,
    pub new_code_hash: &'a str,
    pub expires_at: NaiveDateTime,
}

pub fn start(conn: &mut AnyConnection, UserId(user_id): UserId, codes: NewCodes<'_>) -> DbResult<()> {
    diesel::delete(email_changes::table.find(user_id)).execute(conn)?;
    diesel::insert_into(email_changes::table)
        .values((
            email_changes::user_id.eq(user_id),
            email_changes::new_email.eq(codes.new_email),
            email_changes::old_code_hash.eq(codes.old_code_hash),
            email_changes::new_code_hash.eq(codes.new_code_hash),
            email_changes::created_at.eq(now()),
            email_changes::expires_at.eq(codes.expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn pending(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<Option<PendingEmailChange>> {
    Ok(email_changes::table.find(user_id).select(PendingEmailChange::as_select()).first(conn).optional()?)
}

/// Counts a wrong try; returns how many there were.
pub fn count_failed_try(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<i64> {
    diesel::update(email_changes::table.find(user_id))
        .set(email_changes::failed_tries.eq(email_changes::failed_tries + 1))
        .execute(conn)?;
    Ok(email_changes::table.find(user_id).select(email_changes::failed_tries).first(conn).optional()?.unwrap_or(0))
}

pub fn cancel(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<()> {
    diesel::delete(email_changes::table.find(user_id)).execute(conn)?;
    Ok(())
}

/// Sets the new address and forgets the change (its codes cannot be used again); reset
/// links mailed to the old address stop working.
pub fn finish(conn: &mut AnyConnection, UserId(user_id): UserId, new_email: &str) -> DbResult<()> {
    diesel::update(users::table.find(user_id)).set(users::email.eq(new_email)).execute(conn)?;
    super::mail::retire_links(conn, UserId(user_id), super::mail::LinkPurpose::Reset)?;
    cancel(conn, UserId(user_id))
}
