//! What a token may do in a cache, decided from memory when it was decided a moment ago and
//! nothing changed since (see `hot_cache` and `replication`).

use super::credentials::{caller_with_hash, required_token};
use super::{AppError, AppState};
use crate::db::caches;
use crate::db::models::Cache;
use crate::services::identity::access::{Sight, access_to, sight};
use crate::services::identity::auth::hash_token;
use crate::services::upload::push::{PushableCache, push_decision};
use crate::services::upload::push_error::PushError;

/// The cache named `name`, if it exists.
pub async fn find_cache(state: &AppState, name: &str) -> Result<Option<Cache>, AppError> {
    if let Some(cache) = state.hot.cache(name) {
        return Ok(Some(cache));
    }
    let (lookup, looked_up) = (name.to_string(), state.hot.access_seen_at());
    let found = state.db.read(move |c| caches::find_by_name(c, &lookup)).await?;
    if let Some(cache) = &found {
        state.hot.remember_cache_row(cache, looked_up);
    }
    Ok(found)
}

/// What the holder of `token` sees of `found` (the cache of some name, or none): the rule of
/// `identity::access`, on the caller and access remembered a moment ago when nothing changed.
pub async fn token_sight(state: &AppState, token: &str, found: Option<Cache>) -> Result<Sight, AppError> {
    let token_hash = hash_token(token.trim());
    // The caller first: it is what notices an expired token (from memory too).
    let caller = caller_with_hash(state, token, &token_hash).await?;
    let Some(cache) = found else { return Ok(Sight::Invisible) };
    let access = match state.hot.access(&token_hash, cache.id) {
        Some(access) => access,
        None => {
            let (for_check, looked_up) = (cache.clone(), state.hot.access_seen_at());
            let access = state.db.read(move |c| access_to(c, Some(&caller), &for_check)).await?;
            state.hot.remember_access(&token_hash, cache.id, access, looked_up);
            access
        }
    };
    Ok(sight(Some(cache), access))
}

/// Whether the request's token may push to the cache (401 without a token): the outer error
/// is about the request, the inner one is the refusal.
async fn push_decision_for(
    state: &AppState,
    req: &poem::Request,
    name: &str,
) -> Result<Result<PushableCache, PushError>, AppError> {
    let token = required_token(req)?;
    let found = find_cache(state, name).await?;
    Ok(push_decision(token_sight(state, &token, found).await?, name))
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
