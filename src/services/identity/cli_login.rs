//! `hibernation login` through the browser: the CLI opens a request, a signed-in user
//! approves it in the dashboard, and the CLI collects a new API token with a poll secret only
//! it knows. Requests live in the database (any server process can answer), expire after
//! [`LIFETIME`], and are deleted when the token is handed out, so each works once.

use chrono::{Duration, NaiveDateTime};
use hibernation::api::{CliLoginStarted, CliLoginState};
use rand::Rng;

use super::auth::{hash_token, issue_token};
use crate::db::ids::{CacheId, UserId};
use crate::db::users::TokenScope;
use crate::db::{Db, DbError, cli_logins, now, users};

pub const LIFETIME: Duration = Duration::minutes(10);
/// Open requests per client address (IPv6: per /64), the cap a client meets first.
const MAX_OPEN_PER_PEER: i64 = 10;
/// Open requests in all: only a bound on the table. High enough that filling it takes ten
/// thousand addresses, so a few clients cannot lock everyone else out of `hibernation login`.
const MAX_OPEN: i64 = 100_000;
/// Codes are 40 random bits in Crockford's base32: digits and upper-case letters without
/// I, L, O and U, so nothing can be misread, and typing O for 0 or I/L for 1 still works.
const CODE_ENCODING: base32::Encoding = base32::CROCKFORD;

#[derive(Debug, thiserror::Error)]
pub enum CliLoginError {
    #[error("too many login requests are waiting; try again in a few minutes")]
    TooMany,
    #[error("this login request is unknown: it was denied, already used, or expired")]
    Unknown,
    #[error("this login request expired; run `hibernation login` again")]
    Expired,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A code such as `K7PX-Q2MD`, easy to compare between the terminal and the page.
fn new_code() -> String {
    let bits: [u8; 5] = rand::rng().random();
    let chars = CODE_ENCODING.encode(&bits);
    format!("{}-{}", &chars[..4], &chars[4..])
}

pub fn is_code(text: &str) -> bool {
    text.len() == 9
        && text.bytes().enumerate().all(|(i, b)| if i == 4 { b == b'-' } else { CODE_ENCODING.alphabet().contains(&b) })
}

/// Opens a request. The approval page does not name the code: the user types it from their
/// terminal, so a link sent by someone else cannot get their approval.
pub async fn start(db: &Db, site_url: &str, peer: &str, client_name: &str) -> Result<CliLoginStarted, CliLoginError> {
    let client_name: String = client_name.trim().chars().filter(|c| !c.is_control()).take(100).collect();
    let client_name = if client_name.is_empty() { "hibernation CLI".to_string() } else { client_name };
    let (code, poll_secret) = (new_code(), format!("{}{}", crate::random::random_id(), crate::random::random_id()));
    let (stored_code, secret_hash, peer) = (code.clone(), hash_token(&poll_secret), peer.to_string());
    let expires_at = now() + LIFETIME;
    db.write(move |c| {
        if cli_logins::count_unexpired(c, None)? >= MAX_OPEN
            || cli_logins::count_unexpired(c, Some(&peer))? >= MAX_OPEN_PER_PEER
        {
            return crate::db::refuse(CliLoginError::TooMany);
        }
        cli_logins::create(c, &stored_code, &secret_hash, &client_name, &peer, expires_at)?;
        Ok(Ok(()))
    })
    .await??;
    Ok(CliLoginStarted {
        approve_url: format!("{}/cli-login", site_url.trim_end_matches('/')),
        code,
        poll_secret,
        expires_in_seconds: LIFETIME.num_seconds() as u64,
    })
}

/// Pending until approved; then issues the token once and forgets the request.
pub async fn poll(db: &Db, poll_secret: &str) -> Result<CliLoginState, CliLoginError> {
    let hash = hash_token(poll_secret.trim());
    // A pending request (what almost every poll finds) is answered by one read: polling
    // writes nothing until there is something to hand out or forget.
    let lookup = hash.clone();
    match db.read(move |c| cli_logins::find_by_poll_secret_hash(c, &lookup)).await? {
        None => return Err(CliLoginError::Unknown),
        Some(request) if request.approved_by.is_none() && request.expires_at > now() => {
            return Ok(CliLoginState::Pending);
        }
        Some(_) => {}
    }
    db.write(move |c| {
        let Some(request) = cli_logins::find_by_poll_secret_hash(c, &hash)? else {
            return crate::db::refuse(CliLoginError::Unknown);
        };
        if request.expires_at <= now() {
            cli_logins::delete(c, request.id)?;
            return crate::db::refuse_keeping_writes(CliLoginError::Expired);
        }
        let Some(user_id) = request.approved_by else { return Ok(Ok(CliLoginState::Pending)) };
        let Some(user) = users::find(c, UserId(user_id))? else { return crate::db::refuse(CliLoginError::Unknown) };
        // Deleting first makes a second poll with the same secret find nothing.
        if !cli_logins::delete(c, request.id)? {
            return crate::db::refuse(CliLoginError::Unknown);
        }
        let scope = TokenScope { cache_ids: request.scope_cache_id.map(|id| vec![id]), read_only: !request.can_push };
        // Named after the machine and the time, as people recognise it in their token list;
        // the code tells two logins of one machine within a minute apart.
        let mut name = format!("{}, {} UTC", request.client_name, now().format("%Y-%m-%d %H:%M"));
        if users::tokens_of(c, user.id)?.iter().any(|t| t.name == name) {
            name = format!("{name} ({})", request.code);
        }
        let token = issue_token(c, user.id, &name, request.token_expires_at, &scope)?;
        Ok(Ok(CliLoginState::Approved { token, user: user.name }))
    })
    .await?
}

/// The code as people type it: any case, the dash and spaces optional, O for 0 and I or L
/// for 1. Anything that is not a code comes back unchanged (and matches no request).
pub fn normalize_code(typed: &str) -> String {
    let chars: String = typed.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    match CODE_ENCODING.decode(&chars) {
        Ok(bits) if chars.len() == 8 => {
            let canonical = CODE_ENCODING.encode(&bits);
            format!("{}-{}", &canonical[..4], &canonical[4..])
        }
        _ => chars.to_ascii_uppercase(),
    }
}

/// The open request with this code (unexpired, not yet answered), so the approval page can
/// show what is being approved: which machine, from which address, when.
pub async fn pending(db: &Db, typed_code: &str) -> Result<Option<crate::db::models::CliLogin>, DbError> {
    let code = normalize_code(typed_code);
    if !is_code(&code) {
        return Ok(None);
    }
    let found = db.read(move |c| cli_logins::find_by_code(c, &code)).await?;
    Ok(found.filter(|request| request.approved_by.is_none() && request.expires_at > now()))
}

/// Approves the open request with this code; returns the requester's name, or `None` when
/// no open request has the code.
pub async fn approve(
    db: &Db,
    typed_code: &str,
    user: UserId,
    scope: Option<CacheId>,
    can_push: bool,
    token_expires_at: Option<NaiveDateTime>,
) -> Result<Option<String>, DbError> {
    let code = normalize_code(typed_code);
    if !is_code(&code) {
        return Ok(None);
    }
    db.write(move |c| {
        let Some(request) = cli_logins::find_by_code(c, &code)? else { return Ok(None) };
        let approved = cli_logins::approve(c, &code, user, scope, can_push, token_expires_at)?;
        Ok(approved.then_some(request.client_name))
    })
    .await
}

/// Refuses the open request with this code; false when there is none.
pub async fn deny(db: &Db, typed_code: &str) -> Result<bool, DbError> {
    let code = normalize_code(typed_code);
    db.write(move |c| match cli_logins::find_by_code(c, &code)? {
        Some(request) if request.approved_by.is_none() => cli_logins::delete(c, request.id),
        _ => Ok(false),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_readable_and_checked() {
        for _ in 0..100 {
            let code = new_code();
            assert!(is_code(&code), "{code}");
        }
        for bad in ["", "ABCD-EFG", "ABCD-EFGHI", "abcd-efgh", "ABCD_EFGH", "ABCD-EFGU", "ABCD-EFGI", "<scr-ipt>"] {
            assert!(!is_code(bad), "{bad}");
        }
        assert_eq!(normalize_code(" k7px q2md "), "K7PX-Q2MD");
        assert_eq!(normalize_code("k7px-q2md"), "K7PX-Q2MD");
        // Crockford: the letters people mistake for digits read as those digits.
        assert_eq!(normalize_code("O1IL-0000"), "0111-0000");
        assert_eq!(normalize_code("<script>"), "SCRIPT");
        assert!(!is_code(&normalize_code("UUUU-UUUU")), "U is not in the alphabet");
    }
}
