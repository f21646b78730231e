//! Dashboard sign-in: first-run setup, password sign-in with rate limiting per peer
//! address, and database-backed sessions (so every server process knows every session).

use crate::db::ids::UserId;
use chrono::Duration;

use super::auth::{generate_token, hash_token};
use super::passwords;
use crate::db::models::User;
use crate::db::{Db, DbError, is_unique_violation, now, sessions, users};

pub const SESSION_LIFETIME: Duration = Duration::days(7);
/// Failed sign-ins allowed per address, and per account from all addresses, in the window.
const MAX_FAILURES_PER_ADDRESS: i64 = 5;
const MAX_FAILURES_PER_ACCOUNT: i64 = 20;
const FAILURE_WINDOW: Duration = Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("too many failed sign-ins from your address or to this account; wait 15 minutes and try again")]
    RateLimited,
    #[error("wrong email address or password")]
    Invalid,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A problem with one form field, shown next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("setup is already done")]
    AlreadyDone,
    #[error("{}", .0.message)]
    Field(FieldError),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn field(field: &'static str, message: impl Into<String>) -> SetupError {
    SetupError::Field(FieldError { field, message: message.into() })
}

pub async fn new_session(db: &Db, user_id: UserId) -> Result<String, DbError> {
    let token = generate_token();
    let hash = hash_token(&token);
    db.write(move |c| sessions::create(c, user_id, &hash, now() + SESSION_LIFETIME)).await?;
    Ok(token)
}

/// A new setup code such as `3f9a-1c2b-77de-0a41` (64 random bits).
fn new_setup_code() -> String {
    let hex = crate::random::random_id();
    [&hex[0..4], &hex[4..8], &hex[8..12], &hex[12..16]].join("-")
}

/// Codes compare without case, spaces or dashes (people retype them).
fn normalized_code(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// On a fresh instance (no administrator), the setup code `/setup` asks for, created on first
/// use; `None` once an administrator exists. The server prints it in its log at start.
pub async fn setup_code(db: &Db) -> Result<Option<String>, DbError> {
    let attempt = || {
        let fresh = new_setup_code();
        db.write(move |c| if users::any_admin(c)? { Ok(None) } else { crate::db::setup::ensure(c, &fresh).map(Some) })
    };
    match attempt().await {
        // Another server process stored its code at the same moment: read that one.
        Err(e) if is_unique_violation(&e) => attempt().await,
        other => other,
    }
}

/// Creates the first administrator and signs them in; needs the setup code from the server
/// log, and is refused once an administrator exists.
pub async fn setup_admin(db: &Db, code: &str, name: &str, email: &str, password: &str) -> Result<String, SetupError> {
    let (name, email) = (name.trim().to_string(), email.trim().to_ascii_lowercase());
    let wrong_code = || field("setup_code", "This is not the setup code the server printed in its log.");
    // The cheap check first: a wrong code costs no argon2 work.
    match db.read(crate::db::setup::find).await? {
        Some(stored) if normalized_code(&stored) == normalized_code(code) => {}
        _ if !needs_setup(db).await? => return Err(SetupError::AlreadyDone),
        _ => return Err(wrong_code()),
    }
    if let Some(error) = crate::services::display_name_error(&name) {
        return Err(field("name", error));
    }
    if !email.contains('@') || email.len() > 254 {
        return Err(field("email", "Enter a valid email address."));
    }
    if password.chars().count() < passwords::MIN_LENGTH {
        return Err(field("password", format!("Use at least {} characters.", passwords::MIN_LENGTH)));
    }
    let hash = passwords::hash_async(password).await;
    let code = normalized_code(code);
    let created = db
        .write(move |c| {
            if users::any_admin(c)? {
                return crate::db::refuse(SetupError::AlreadyDone);
            }
            // Checked again inside the transaction: the code is used once.
            if crate::db::setup::find(c)?.is_none_or(|stored| normalized_code(&stored) != code) {
                return crate::db::refuse(wrong_code());
            }
            let who = users::NewIdentity { login: &email, name: &name };
            let user = users::create_with_password(c, who, &email, &hash, true)?;
            crate::db::setup::delete(c)?;
            Ok(Ok(user))
        })
        .await;
    let user = match created {
        Ok(Ok(user)) => user,
        Ok(Err(refused)) => return Err(refused),
        Err(e) if is_unique_violation(&e) => return Err(field("name", "A user with this name or email exists.")),
        Err(e) => return Err(e.into()),
    };
    Ok(new_session(db, user.id).await?)
}

pub async fn sign_in(db: &Db, peer: &str, email: &str, password: &str) -> Result<String, SignInError> {
    let (peer, email) = (peer.to_string(), email.trim().to_ascii_lowercase());
    let since = now() - FAILURE_WINDOW;
    let limits = (MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_ACCOUNT);
    let (attempt_peer, attempt_email) = (peer.clone(), email.clone());
    let attempt = db
        .write(move |c| {
            let Some(_) = sessions::begin_attempt(c, &attempt_peer, &attempt_email, since, limits)? else {
                return Ok(None);
            };
            Ok(Some(users::find_by_email(c, &attempt_email)?))
        })
        .await?;
    let Some(user) = attempt else { return Err(SignInError::RateLimited) };
    // The same argon2 work whether or not the account exists.
    let valid = passwords::verify_async(password, user.as_ref().and_then(|u| u.password_hash.as_deref())).await;
    let Some(user) = user.filter(|_| valid) else {
        return Err(SignInError::Invalid);
    };
    db.write(move |c| sessions::forget_failures(c, &peer, &email)).await?;
    Ok(new_session(db, user.id).await?)
}

pub async fn user_for_session(db: &Db, token: &str) -> Result<Option<User>, DbError> {
    let hash = hash_token(token);
    db.read(move |c| sessions::user_of(c, &hash)).await
}

pub async fn sign_out(db: &Db, token: &str) -> Result<(), DbError> {
    let hash = hash_token(token);
    db.write(move |c| sessions::delete(c, &hash)).await
}

pub async fn needs_setup(db: &Db) -> Result<bool, DbError> {
    Ok(!db.read(users::any_admin).await?)
}
