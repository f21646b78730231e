//! The JSON push API used by the `hibernation` CLI (see `hibernation::api`).

use std::sync::Arc;

use base64::Engine;
use hibernation::api::{
    CacheInfo, PATH_INFO_HEADER, PathUpload, PathUploaded, PlanAction, PushPlanRequest, PushPlanResponse, WhoAmI,
};
use hibernation::nix::store_path::is_hash_part;
use poem::web::{Data, Json, Path};
use poem::{Body, Request, handler};

use super::credentials::{optional_caller, required_caller};
use super::limits::{PUSH_PLAN_LIMIT, read_capped};
use super::rights::{pushable_cache, pushable_cache_counted};
use super::{AppError, AppState};
use crate::services::identity::auth::Caller;
use crate::services::metrics;
use crate::services::serving::cache_info;
use crate::services::upload::push::{self, NarSource, PushableCache};
use crate::services::upload::push_error::PushError;
use crate::services::upload::receive::{Declared, receive_upload};
use crate::services::{CACHE_NAME_RULE, is_valid_cache_name};
use hibernation::nix::Compression;

fn check_cache_name(name: &str) -> Result<(), AppError> {
    if is_valid_cache_name(name) {
        Ok(())
    } else {
        Err(AppError::BadRequest(format!("invalid cache name {name:?}: {CACHE_NAME_RULE}")))
    }
}

#[handler]
pub async fn whoami(req: &Request, state: Data<&Arc<AppState>>) -> Result<Json<WhoAmI>, AppError> {
    let caller = required_caller(&state, req).await?;
    Ok(Json(WhoAmI { user: caller.user_name, token: caller.token_name }))
}

#[handler]
pub async fn list_caches(req: &Request, state: Data<&Arc<AppState>>) -> Result<Json<Vec<CacheInfo>>, AppError> {
    let caller = optional_caller(&state, req).await?;
    Ok(Json(cache_info::list(&state.db, caller, state.site.url.clone()).await?))
}

#[handler]
pub async fn show_cache(
    req: &Request,
    Path(cache): Path<String>,
    state: Data<&Arc<AppState>>,
) -> Result<Json<CacheInfo>, AppError> {
    check_cache_name(&cache)?;
    let caller = optional_caller(&state, req).await?;
    cache_info::find(&state.db, caller, state.site.url.clone(), cache.clone())
        .await?
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("cache {cache:?} does not exist")))
}

#[handler]
pub async fn push_plan(
    req: &Request,
    Path(cache): Path<String>,
    state: Data<&Arc<AppState>>,
    body: Body,
) -> Result<Json<PushPlanResponse>, AppError> {
    check_cache_name(&cache)?;
    let caller = required_caller(&state, req).await?;
    // Rights first: nothing is read for a caller who may not push here.
    let cache = pushable_cache(&state, req, &cache).await?;
    let bytes = read_capped(body, PUSH_PLAN_LIMIT, "push plan").await?;
    let plan: PushPlanRequest =
        serde_json::from_slice(&bytes).map_err(|e| AppError::BadRequest(format!("invalid push plan request: {e}")))?;
    let plan = push::plan(&state.db, &state.upstreams, &caller, &cache, plan).await?;
    if plan.actions.iter().any(|a| matches!(a, PlanAction::Present)) {
        // Present through a push another process may not have answered yet: the client takes
        // these as pushed, so every replica must serve them first.
        state.replication.wait_until_current().await;
    }
    Ok(Json(plan))
}

fn path_upload_from_header(req: &Request) -> Result<PathUpload, AppError> {
    let raw = req
        .headers()
        .get(PATH_INFO_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AppError::BadRequest(format!("missing {PATH_INFO_HEADER} header")))?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim())
        .map_err(|_| AppError::BadRequest(format!("{PATH_INFO_HEADER} is not base64url")))?;
    serde_json::from_slice(&json).map_err(|e| AppError::BadRequest(format!("invalid {PATH_INFO_HEADER}: {e}")))
}

/// Uploads one path: metadata in a header, the zstd NAR as the body (empty to attach).
#[handler]
pub async fn upload_path(
    req: &Request,
    Path((cache, hash)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
    body: Body,
) -> Result<Json<PathUploaded>, AppError> {
    check_cache_name(&cache)?;
    let caller = required_caller(&state, req).await?;
    let pushable = pushable_cache_counted(&state, req, &cache).await?;
    let upload = path_upload_from_header(req)?;
    let declared_length =
        req.headers().get(poem::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // Known to the presence filter before the commit (or before finding that another process
    // stored it), so it is never answered as absent here.
    if is_hash_part(&hash) {
        state.replication.presence().add_path(pushable.id, &hash);
    }
    let cache_id = pushable.id;
    let result = receive_path(&state, caller, pushable, &hash, upload, declared_length, body).await;
    if result.is_ok() {
        // Visible at once through this process (and the others, which the commit waited for).
        state.hot.forget_misses(&[(cache_id, hash.clone())]);
    }
    match &result {
        Ok(done) if done.created => {
            tracing::info!(cache, path = done.store_path, bytes = done.uploaded_bytes, "path pushed");
            metrics::pushed(&cache, done.uploaded_bytes);
        }
        Ok(_) => {}
        Err(e) => super::metrics::count_rejection(&state, &cache, e.reason()).await,
    }
    Ok(Json(result?))
}

/// Verifies and stores one uploaded path: attached when the body is empty, else received.
async fn receive_path(
    state: &AppState,
    caller: Caller,
    cache: PushableCache,
    hash: &str,
    upload: PathUpload,
    declared_length: Option<u64>,
    body: Body,
) -> Result<PathUploaded, PushError> {
    let verified = push::verify_path(&state.db, Some(&state.upstreams), cache, hash, upload).await?;
    let store_path = verified.path.full_path();
    if verified.already_present {
        state.replication.wait_until_current().await;
        return Ok(PathUploaded { store_path, created: false, uploaded_bytes: 0 });
    }
    let (source, uploaded_bytes) = if declared_length == Some(0) {
        (NarSource::Attach(caller), 0)
    } else {
        let declared = Declared { nar_hash: verified.upload.nar_hash, nar_size: verified.upload.nar_size };
        let body = body.into_async_read();
        let received =
            receive_upload(&state.storage, &state.receive_limits, body, Compression::Zstd, Some(declared)).await?;
        let bytes = received.file_size;
        (NarSource::Uploaded(received), bytes)
    };
    let created = push::commit(state.upload_destination(), verified, source).await?;
    Ok(PathUploaded { store_path, created, uploaded_bytes })
}
