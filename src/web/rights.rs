//! Whether the request's token may push to a cache (`serving::rights` remembers, `identity::
//! access` decides).

use super::credentials::required_token;
use super::{AppError, AppState};
use crate::services::serving::rights::{find_cache, token_sight};
use crate::services::upload::push::{PushableCache, push_decision};
use crate::services::upload::push_error::PushError;

/// Whether the request's token may push to the cache (401 without a token): the outer error
/// is about the request, the inner one is the refusal.
async fn push_decision_for(
    state: &AppState,
    req: &poem::Request,
    name: &str,
) -> Result<Result<PushableCache, PushError>, AppError> {
    let token = required_token(req)?;
    let found = find_cache(&state.db, &state.hot, name).await?;
    Ok(push_decision(token_sight(&state.db, &state.hot, &token, found).await?, name))
}

/// The cache if the request's token may push to it.
pub async fn pushable_cache(state: &AppState, req: &poem::Request, name: &str) -> Result<PushableCache, AppError> {
    Ok(push_decision_for(state, req, name).await??)
}

/// [`pushable_cache`] for uploads: a refusal is counted like any refused upload.
pub async fn pushable_cache_counted(
    state: &AppState,
    req: &poem::Request,
    name: &str,
) -> Result<PushableCache, AppError> {
    match push_decision_for(state, req, name).await? {
        Ok(cache) => Ok(cache),
        Err(refused) => {
            super::metrics::count_rejection(state, name, refused.reason()).await;
            Err(refused.into())
        }
    }
}
