//! Credentials from the `Authorization` header: an API token as a Bearer token, or as the
//! password of HTTP Basic (the user name is ignored, so a netrc line works with stock Nix).

use hibernation::http::credentials_token;
use poem::Request;
use poem::http::header;

use super::{AppError, AppState};
use crate::services::identity::auth::{AuthError, Caller};

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

/// Who a token authenticates (remembered: see `serving::rights`).
pub async fn caller_of(state: &AppState, token: &str) -> Result<Caller, AuthError> {
    crate::services::serving::rights::caller(&state.db, &state.hot, token).await
}

pub fn required_token(req: &Request) -> Result<String, AppError> {
    optional_token(req)?
        .ok_or_else(|| AppError::Unauthorized("this needs an API token (Authorization: Bearer <token>)".into()))
}

pub async fn required_caller(state: &AppState, req: &Request) -> Result<Caller, AppError> {
    Ok(caller_of(state, &required_token(req)?).await?)
}
