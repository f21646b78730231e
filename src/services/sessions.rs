//! Dashboard sign-in: first-run setup, password sign-in with rate limiting per peer
//! address, and database-backed sessions (so every server process knows every session).

use chrono::Duration;

use super::auth::{generate_token, hash_token};
use super::passwords;
use crate::db::models::User;
use crate::db::{Db, DbError, is_unique_violation, now, sessions, users};

pub const SESSION_LIFETIME: Duration = Duration::days(7);
const MAX_FAILURES: i64 = 5;
const FAILURE_WINDOW: Duration = Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("too many failed sign-ins from your address; wait 15 minutes and try again")]
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

pub async fn new_session(db: &Db, user_id: i64) -> Result<String, DbError> {
    let token = generate_token();
    let hash = hash_token(&token);
    db.write(move |c| sessions::create(c, user_id, &hash, now() + SESSION_LIFETIME)).await?;
    Ok(token)
}

/// Creates the first administrator and signs them in; refused once an administrator exists.
pub async fn setup_admin(db: &Db, name: &str, email: &str, password: &str) -> Result<String, SetupError> {
    let (name, email) = (name.trim().to_string(), email.trim().to_ascii_lowercase());
    if name.is_empty() || name.len() > 100 {
        return Err(field("name", "Enter a name of 1 to 100 characters."));
    }
    if !email.contains('@') || email.len() > 254 {
        return Err(field("email", "Enter a valid email address."));
    }
    if password.chars().count() < passwords::MIN_LENGTH {
        return Err(field("password", format!("Use at least {} characters.", passwords::MIN_LENGTH)));
    }
    let hash = passwords::hash(password);
    let created = db
        .write(move |c| {
            if users::any_admin(c)? {
                return Ok(None);
            }
            users::create_with_password(c, &name, &email, &hash, true).map(Some)
        })
        .await;
    let user = match created {
        Ok(Some(user)) => user,
        Ok(None) => return Err(SetupError::AlreadyDone),
        Err(e) if is_unique_violation(&e) => return Err(field("name", "A user with this name or email exists.")),
        Err(e) => return Err(e.into()),
    };
    Ok(new_session(db, user.id).await?)
}

pub async fn sign_in(db: &Db, peer: &str, email: &str, password: &str) -> Result<String, SignInError> {
    let (peer, email) = (peer.to_string(), email.trim().to_ascii_lowercase());
    let since = now() - FAILURE_WINDOW;
    let lookup_peer = peer.clone();
    let (failures, user) = db
        .read(move |c| Ok((sessions::failures_since(c, &lookup_peer, since)?, users::find_by_email(c, &email)?)))
        .await?;
    if failures >= MAX_FAILURES {
        return Err(SignInError::RateLimited);
    }
    let valid = user.as_ref().and_then(|u| u.password_hash.as_deref()).is_some_and(|h| passwords::verify(password, h));
    let Some(user) = user.filter(|_| valid) else {
        db.write(move |c| sessions::record_failure(c, &peer)).await?;
        return Err(SignInError::Invalid);
    };
    db.write(move |c| sessions::clear_failures(c, &peer)).await?;
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
