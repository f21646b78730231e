//! Pending `hibernation login` requests waiting for approval in the dashboard.

use super::ids::{CacheId, UserId};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::CliLogin;
use super::schema::cli_logins;
use super::{AnyConnection, DbResult, now};

pub fn create(
    conn: &mut AnyConnection,
    code: &str,
    poll_secret_hash: &str,
    client_name: &str,
    peer: &str,
    expires_at: NaiveDateTime,
) -> DbResult<()> {
    diesel::insert_into(cli_logins::table)
        .values((
            cli_logins::code.eq(code),
            cli_logins::poll_secret_hash.eq(poll_secret_hash),
            cli_logins::client_name.eq(client_name),
            cli_logins::peer.eq(peer),
            cli_logins::created_at.eq(now()),
            cli_logins::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Requests not yet expired, in all or from one address, to bound what anonymous callers
/// can open.
pub fn count_unexpired(conn: &mut AnyConnection, peer: Option<&str>) -> DbResult<i64> {
    let mut query = cli_logins::table.filter(cli_logins::expires_at.gt(now())).into_boxed();
    if let Some(peer) = peer {
        query = query.filter(cli_logins::peer.eq(peer.to_string()));
    }
    Ok(query.count().get_result(conn)?)
}

pub fn find_by_code(conn: &mut AnyConnection, code: &str) -> DbResult<Option<CliLogin>> {
    Ok(cli_logins::table.filter(cli_logins::code.eq(code)).select(CliLogin::as_select()).first(conn).optional()?)
}

pub fn find_by_poll_secret_hash(conn: &mut AnyConnection, hash: &str) -> DbResult<Option<CliLogin>> {
    Ok(cli_logins::table
        .filter(cli_logins::poll_secret_hash.eq(hash))
        .select(CliLogin::as_select())
        .first(conn)
        .optional()?)
}

/// Records the approval of an unexpired, unapproved request; false when there was none.
pub fn approve(
    conn: &mut AnyConnection,
    code: &str,
    UserId(user_id): UserId,
    scope_cache_id: Option<CacheId>,
    can_push: bool,
    token_expires_at: Option<NaiveDateTime>,
) -> DbResult<bool> {
    let changed = diesel::update(
        cli_logins::table
            .filter(cli_logins::code.eq(code))
            .filter(cli_logins::approved_by.is_null())
            .filter(cli_logins::expires_at.gt(now())),
    )
    .set((
        cli_logins::approved_by.eq(Some(user_id)),
        cli_logins::scope_cache_id.eq(scope_cache_id.map(|CacheId(id)| id)),
        cli_logins::can_push.eq(can_push),
        cli_logins::token_expires_at.eq(token_expires_at),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Deletes one request; true when it existed.
pub fn delete(conn: &mut AnyConnection, id: i64) -> DbResult<bool> {
    Ok(diesel::delete(cli_logins::table.find(id)).execute(conn)? == 1)
}

pub fn delete_expired(conn: &mut AnyConnection) -> DbResult<usize> {
    Ok(diesel::delete(cli_logins::table.filter(cli_logins::expires_at.le(now()))).execute(conn)?)
}
