//! Pins over the API (`hibernation pin`): anyone who reads the cache lists them; setting,
//! moving and removing a pin needs the right to push.

use std::sync::Arc;

use hibernation::api::{PinInfo, PinRequest};
use poem::web::{Data, Json, Path};
use poem::{Body, Request, handler};

use super::credentials::optional_caller;
use super::limits::{SMALL_BODY_LIMIT, read_capped};
use super::rights::pushable_cache;
use super::{AppError, AppState};
use crate::services::identity::access;
use crate::services::lifecycle::pins;
use crate::services::upload::push_error::PushError;

#[handler]
pub async fn list(
    req: &Request,
    Path(cache): Path<String>,
    state: Data<&Arc<AppState>>,
) -> Result<Json<Vec<PinInfo>>, AppError> {
    let caller = optional_caller(&state, req).await?;
    let Some((found, _)) = access::see(&state.db, caller, &cache).await?.visible() else {
        return Err(PushError::CacheNotFound(cache).into());
    };
    Ok(Json(pins::list(&state.db, &found).await?.iter().map(pins::info).collect()))
}

#[handler]
pub async fn put(
    req: &Request,
    Path((cache, name)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
    body: Body,
) -> Result<Json<PinInfo>, AppError> {
    let cache = pushable_cache(&state, req, &cache).await?;
    let bytes = read_capped(body, SMALL_BODY_LIMIT, "pin").await?;
    let request: PinRequest =
        serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest(format!("invalid pin request: {e}")))?;
    Ok(Json(pins::pin(&state.db, &cache, &name, &request.store_path, request.expires_in_seconds).await?))
}

#[handler]
pub async fn remove(
    req: &Request,
    Path((cache, name)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
) -> Result<Json<serde_json::Value>, AppError> {
    let cache = pushable_cache(&state, req, &cache).await?;
    pins::unpin(&state.db, &cache, &name).await?;
    Ok(Json(serde_json::json!({ "removed": name })))
}
