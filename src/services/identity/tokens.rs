//! API tokens made in the dashboard (the tokens page and the CLI login approval): the
//! scope a user may give one, creating it (the secret is returned once), listing, revoking.

use std::collections::HashMap;

use chrono::{Duration, NaiveDateTime};
use serde::Deserialize;

use super::access::{Sight, look_up, readable_cache_ids};
use super::auth::{Caller, generate_token, hash_token, issue_token};
use crate::db::ids::{CacheId, TokenId, UserId};
use crate::db::models::{ApiToken, User};
use crate::db::users::TokenScope;
use crate::db::{AnyConnection, Db, DbError, DbResult, browse, is_unique_violation, now, users};
use crate::services::serving::hot_cache::HotCache;

/// The expiry and scope fields of a new token, as a form sends them.
#[derive(Deserialize)]
pub struct TokenChoice {
    /// Days until expiry; 0 (or nothing) means never. Text, because a flattened form field
    /// reaches serde as a string.
    #[serde(default)]
    pub days: String,
    /// One cache the token is limited to; empty for all of the user's caches.
    #[serde(default)]
    pub cache: String,
    /// "push" or "read".
    #[serde(default)]
    pub permission: String,
}

/// A checked [`TokenChoice`].
pub struct ChosenScope {
    pub cache: Option<CacheId>,
    pub read_only: bool,
    pub expires_at: Option<NaiveDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The choice or the name is not acceptable; the text says what to change.
    #[error("{0}")]
    Invalid(&'static str),
    #[error("You already have a token with this name.")]
    NameTaken,
    #[error("user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("cache {0:?} does not exist")]
    NoSuchCache(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The expiry a form's "days" field asks for: None for never (0 or nothing), else that many
/// days from now, up to ten years; the error is a message for the form.
fn expiry_in_days(days: &str) -> Result<Option<NaiveDateTime>, &'static str> {
    let days = match days.trim() {
        "" => 0,
        text => text.parse::<i64>().unwrap_or(-1),
    };
    if !(0..=3650).contains(&days) {
        return Err("Choose an expiry.");
    }
    Ok((days > 0).then(|| now() + Duration::days(days)))
}

/// A token name as forms give it: trimmed, 1 to 100 characters.
/// A token write that broke the unique (owner, name) index: the owner has a token of that
/// name already.
fn token_write_error(e: DbError) -> TokenError {
    if is_unique_violation(&e) { TokenError::NameTaken } else { e.into() }
}

fn token_name(name: &str) -> Result<String, TokenError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TokenError::Invalid("Enter a name of 1 to 100 characters."));
    }
    Ok(name.to_string())
}

impl TokenChoice {
    /// Checks the choice for `caller`; the error is a message for the form.
    fn resolve_with(&self, conn: &mut AnyConnection, caller: &Caller) -> DbResult<Result<ChosenScope, &'static str>> {
        let expires_at = match expiry_in_days(&self.days) {
            Ok(expires_at) => expires_at,
            Err(refusal) => return crate::db::refuse(refusal),
        };
        let cache_name = self.cache.trim();
        let cache = if cache_name.is_empty() {
            None
        } else {
            // Only a cache the user can see may scope a token.
            match look_up(conn, Some(caller), cache_name)? {
                Sight::Visible(cache, _) => Some(CacheId(cache.id)),
                Sight::Invisible => return crate::db::refuse("Choose one of your caches."),
            }
        };
        Ok(Ok(ChosenScope { cache, read_only: self.permission == "read", expires_at }))
    }

    /// Checks the choice for `user`.
    pub async fn resolve(self, db: &Db, user: &User) -> Result<ChosenScope, TokenError> {
        let caller = Caller::session(user);
        match db.read(move |c| self.resolve_with(c, &caller)).await? {
            Ok(chosen) => Ok(chosen),
            Err(refusal) => Err(TokenError::Invalid(refusal)),
        }
    }
}

/// The names of the caches `user` can scope a token to.
fn scopable_caches_with(conn: &mut AnyConnection, user: &User) -> DbResult<Vec<String>> {
    let ids = readable_cache_ids(conn, &Caller::session(user))?;
    Ok(browse::caches_by_ids(conn, ids.as_deref())?.into_iter().map(|c| c.name).collect())
}

pub async fn scopable_caches(db: &Db, user: &User) -> Result<Vec<String>, DbError> {
    let owner = user.clone();
    db.read(move |c| scopable_caches_with(c, &owner)).await
}

/// A user's tokens, newest first, with what the tokens page needs beside them.
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
    /// Caches the user can scope a new token to.
    pub caches: Vec<String>,
    /// Cache names of each cache-scoped token, by token id.
    pub scopes: HashMap<TokenId, Vec<String>>,
}

pub async fn list(db: &Db, user: &User) -> Result<TokenList, DbError> {
    let (id, owner) = (user.id, user.clone());
    db.read(move |c| {
        Ok(TokenList {
            tokens: users::tokens_of(c, id)?,
            caches: scopable_caches_with(c, &owner)?,
            scopes: users::token_scopes_of(c, id)?,
        })
    })
    .await
}

/// Creates a token named `name` (1 to 100 characters) for `user`; returns its secret, which
/// is never shown again.
pub async fn create(db: &Db, user: &User, name: &str, choice: TokenChoice) -> Result<String, TokenError> {
    let name = token_name(name)?;
    let (owner, caller) = (user.id, Caller::session(user));
    let created = db
        .write(move |c| {
            let chosen = match choice.resolve_with(c, &caller)? {
                Ok(chosen) => chosen,
                Err(refusal) => return crate::db::refuse(TokenError::Invalid(refusal)),
            };
            let scope = TokenScope { cache_ids: chosen.cache.map(|CacheId(id)| vec![id]), read_only: chosen.read_only };
            issue_token(c, owner, &name, chosen.expires_at, &scope).map(Ok)
        })
        .await;
    created.unwrap_or_else(|e| Err(token_write_error(e)))
}

/// A token issued on the host (`admin create-token`) for the user whose login is `login`:
/// limited to `caches` (names; every cache of the user when empty), and to reading when
/// `read_only`. Returns its secret.
pub async fn issue_on_host(
    db: &Db,
    login: &str,
    name: &str,
    expires_at: Option<NaiveDateTime>,
    caches: &[String],
    read_only: bool,
) -> Result<String, TokenError> {
    let name = token_name(name)?;
    let (login, caches) = (login.to_string(), caches.to_vec());
    let issued = db
        .write(move |c| {
            let Some(user) = users::find_by_login(c, &login)? else {
                return crate::db::refuse(TokenError::NoSuchUser(login));
            };
            let mut cache_ids = Vec::new();
            for cache in caches {
                match crate::db::caches::find_by_name(c, &cache)? {
                    Some(found) => cache_ids.push(found.id),
                    None => return crate::db::refuse(TokenError::NoSuchCache(cache)),
                }
            }
            let scope = TokenScope { cache_ids: (!cache_ids.is_empty()).then_some(cache_ids), read_only };
            issue_token(c, user.id, &name, expires_at, &scope).map(Ok)
        })
        .await;
    issued.unwrap_or_else(|e| Err(token_write_error(e)))
}

/// Revokes the token named `name` of the user whose login is `login` (the admin CLI); it
/// stops working at once, on every replica as soon as it reads the change. False when the
/// user has no such token.
pub async fn revoke_on_host(db: &Db, login: &str, name: &str) -> Result<bool, TokenError> {
    let (login, name) = (login.to_string(), name.to_string());
    db.write(move |c| {
        let Some(user) = users::find_by_login(c, &login)? else {
            return crate::db::refuse(TokenError::NoSuchUser(login));
        };
        let revoked = users::revoke_token(c, user.id, &name)?;
        crate::db::replication::access_changed(c)?;
        Ok(Ok(revoked > 0))
    })
    .await?
}

/// Revokes one of `owner`'s tokens; it stops working at once, on every replica within the
/// rights cache's lifetime. False when there was no such active token.
pub async fn revoke(db: &Db, hot: &HotCache, owner: UserId, token: TokenId) -> Result<bool, DbError> {
    let revoked = db
        .write(move |c| {
            let revoked = users::revoke_token_by_id(c, owner, token)?;
            crate::db::replication::access_changed(c)?;
            Ok(revoked)
        })
        .await?;
    hot.forget_rights();
    Ok(revoked > 0)
}

/// Renames one of `owner`'s working tokens and sets its expiry (`days` as a new token's form
/// gives it). Its scope never changes. False when there is no such working token.
pub async fn edit(db: &Db, owner: UserId, token: TokenId, name: &str, days: &str) -> Result<bool, TokenError> {
    let name = token_name(name)?;
    let expires_at = expiry_in_days(days).map_err(TokenError::Invalid)?;
    db.write(move |c| users::edit_token(c, owner, token, &name, expires_at)).await.map_err(token_write_error)
}

/// A new secret for one of `owner`'s working tokens, with the same name, scope and expiry:
/// the old secret stops working at once here, and on other replicas within the rights
/// cache's lifetime, as a revocation does. The name and the new secret (shown once), or None
/// when there is no such working token.
pub async fn regenerate(
    db: &Db,
    hot: &HotCache,
    owner: UserId,
    token: TokenId,
) -> Result<Option<(String, String)>, DbError> {
    let secret = generate_token();
    let hash = hash_token(&secret);
    let renamed = db
        .write(move |c| {
            let renamed = users::replace_token_secret(c, owner, token, &hash)?;
            crate::db::replication::access_changed(c)?;
            Ok(renamed)
        })
        .await?;
    hot.forget_rights();
    Ok(renamed.map(|name| (name, secret)))
}

/// Deletes `owner`'s tokens that no longer work (expired or revoked); how many went.
pub async fn delete_ended(db: &Db, owner: UserId) -> Result<usize, DbError> {
    db.write(move |c| users::delete_ended_tokens(c, owner)).await
}
