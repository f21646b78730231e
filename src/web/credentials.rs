//! Credentials from the `Authorization` header: an API token as a Bearer token, or as the
//! password of HTTP Basic (the user name is ignored, so a netrc line works with stock Nix).

use hibernation::http::credentials_token;
use poem::Request;
use poem::http::header;

use super::{AppError, AppState};
use crate::services::identity::auth::{AuthError, Caller, authenticate, hash_token};

/// The token the request carries, if any; an error if the header is there but unusable.
pub fn optional_token(req: &Request) -> Result<Option<String>, AppError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let token = value.to_str().ok().and_then(credentials_token).filter(|t| !t.is_empty()).ok_or_else(|| {
        AppError::Unauthorized(
            "unsupported Authorization header: send the API token as Bearer or as the Basic password".into(),
        )
    })?;
    Ok(Some(token))
}

/// The caller if the request carries credentials; an error if they are present but invalid.
pub async fn optional_caller(state: &AppState, req: &Request) -> Result<Option<Caller>, AppError> {
    match optional_token(req)? {
        Some(token) => Ok(Some(caller_of(state, &token).await?)),
        None => Ok(None),
    }
}

/// Who a token authenticates. Remembered until a change to access is read (within a second of
/// a revocation anywhere; see `replication`), so most requests need no database query.
pub async fn caller_of(state: &AppState, token: &str) -> Result<Caller, AuthError> {
    caller_with_hash(state, token, &hash_token(token.trim())).await
}

/// [`caller_of`] for a caller that hashed the token already.
pub async fn caller_with_hash(state: &AppState, token: &str, token_hash: &str) -> Result<Caller, AuthError> {
    if let Some(caller) = state.hot.caller(token_hash) {
        return Ok(caller);
    }
    let looked_up = state.hot.access_seen_at();
    let caller = authenticate(&state.db, token).await?;
    state.hot.remember_caller(token_hash, &caller, looked_up);
    Ok(caller)
}

pub fn required_token(req: &Request) -> Result<String, AppError> {
    optional_token(req)?
        .ok_or_else(|| AppError::Unauthorized("this needs an API token (Authorization: Bearer <token>)".into()))
}

pub async fn required_caller(state: &AppState, req: &Request) -> Result<Caller, AppError> {
    Ok(caller_of(state, &required_token(req)?).await?)
}
