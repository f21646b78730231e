//! API tokens: high-entropy secrets, stored only as SHA-256 hashes.

use crate::db::ids::UserId;
use chrono::{Duration, NaiveDateTime};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::db::permissions::Permissions;
use crate::db::users::TokenScope;
use crate::db::{AnyConnection, Db, DbError, DbResult, now, users};

const TOKEN_PREFIX: &str = "hib_";
/// `last_used_at` is written at most this often per token, keeping writes off the hot path.
const LAST_USED_RESOLUTION: Duration = Duration::minutes(1);

/// Who is calling, after a token was checked.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: UserId,
    pub user_name: String,
    /// The user's global permissions (a token's scope narrows only cache rights).
    pub permissions: Permissions,
    pub token_name: String,
    /// The token's limits; a dashboard session has none.
    pub scope: TokenScope,
    /// When the token stops working; a dashboard session checks its own expiry.
    pub expires_at: Option<NaiveDateTime>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.permissions.is_all()
    }

    /// The signed-in dashboard user, with all of their own rights.
    pub fn session(user: &crate::db::models::User) -> Self {
        Self {
            user_id: user.id,
            user_name: user.name.clone(),
            permissions: user.permissions,
            token_name: String::new(),
            scope: TokenScope::default(),
            expires_at: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is not valid")]
    Unknown,
    #[error("the token was revoked")]
    Revoked,
    #[error("the token expired on {0} UTC")]
    Expired(NaiveDateTime),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A new random token (`hib_` + 40 alphanumerics, about 238 bits).
pub fn generate_token() -> String {
    let secret: String = rand::rng().sample_iter(&Alphanumeric).take(40).map(char::from).collect();
    format!("{TOKEN_PREFIX}{secret}")
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a token for `user`; returns the secret, which is never stored.
pub fn issue_token(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    expires_at: Option<NaiveDateTime>,
    scope: &TokenScope,
) -> DbResult<String> {
    let token = generate_token();
    users::create_token(conn, user_id, name, &hash_token(&token), expires_at, scope)?;
    Ok(token)
}

pub async fn authenticate(db: &Db, token: &str) -> Result<Caller, AuthError> {
    let hash = hash_token(token.trim());
    let found = db
        .read(move |c| {
            let Some((token, user)) = users::find_token(c, &hash)? else { return Ok(None) };
            let cache_ids = users::token_cache_ids(c, &token)?;
            Ok(Some((token, user, cache_ids)))
        })
        .await?;
    let (token, user, cache_ids) = found.ok_or(AuthError::Unknown)?;
    let now = now();
    if token.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if let Some(expiry) = token.expires_at
        && expiry <= now
    {
        return Err(AuthError::Expired(expiry));
    }
    let stale = token.last_used_at.is_none_or(|t| now - t > LAST_USED_RESOLUTION);
    if stale {
        let id = token.id;
        if let Err(e) = db.write(move |c| users::touch_token(c, id, now)).await {
            tracing::warn!("could not record token use: {e}");
        }
    }
    let scope = TokenScope { cache_ids, read_only: !token.can_push };
    Ok(Caller {
        user_id: user.id,
        user_name: user.name,
        permissions: user.permissions,
        token_name: token.name,
        scope,
        expires_at: token.expires_at,
    })
}
