//! The JSON side of `hibernation login` through the browser (see `services::identity::cli_login`).

use std::sync::Arc;

use hibernation::api::{
    CliLoginPoll, CliLoginStart, CliLoginStarted, CliLoginState, OidcTokenRequest, OidcTokenResponse,
};
use poem::web::{Data, Json};
use poem::{Body, Request, handler};

use super::{AppError, AppState};
use crate::services::identity::cli_login::{self, CliLoginError};
use crate::services::identity::trusted_publishing::{self, ExchangeError};

impl From<ExchangeError> for AppError {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Refused(why) => Self::Unauthorized(format!("the ID token is refused: {why}")),
            ExchangeError::Issuer(why) => Self::Unavailable(why),
            ExchangeError::Db(e) => e.into(),
        }
    }
}

impl From<CliLoginError> for AppError {
    fn from(e: CliLoginError) -> Self {
        let msg = e.to_string();
        match e {
            CliLoginError::TooMany => Self::TooManyRequests(msg),
            CliLoginError::Unknown => Self::NotFound(msg),
            CliLoginError::Expired => Self::Gone(msg),
            CliLoginError::Db(e) => e.into(),
        }
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, AppError> {
    let bytes = body.into_bytes_limit(16 * 1024).await.map_err(|e| AppError::BadRequest(format!("{e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest(format!("invalid request: {e}")))
}

/// Opens a login request; anyone may, the approval needs a signed-in user.
#[handler]
pub async fn start(req: &Request, state: Data<&Arc<AppState>>, body: Body) -> Result<Json<CliLoginStarted>, AppError> {
    let request: CliLoginStart = json_body(body).await?;
    let peer = super::client_address::client_address(&state.site.trusted_proxies, req);
    Ok(Json(cli_login::start(&state.db, &state.site.url, &peer, &request.client_name).await?))
}

#[handler]
pub async fn poll(state: Data<&Arc<AppState>>, body: Body) -> Result<Json<CliLoginState>, AppError> {
    let request: CliLoginPoll = json_body(body).await?;
    Ok(Json(cli_login::poll(&state.db, &request.poll_secret).await?))
}

/// Trusted publishing: an ID token from CI for a short-lived API token.
#[handler]
pub async fn oidc_token(state: Data<&Arc<AppState>>, body: Body) -> Result<Json<OidcTokenResponse>, AppError> {
    let request: OidcTokenRequest = json_body(body).await?;
    let audience = state.site.url.trim_end_matches('/');
    Ok(Json(trusted_publishing::exchange(&state.db, &state.issuer_keys, audience, &request.token).await?))
}
