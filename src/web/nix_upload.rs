//! Uploads from stock Nix at the cache's own URL (`nix copy --to http://.../api/nix/<cache>`):
//! PUT `nix-cache-info`, `nar/<file>`, `<hash>.narinfo`, `<hash>.ls` and `log/<drv>`.
//! Credentials come from the netrc (HTTP Basic); without push access every PUT is refused.

use std::sync::Arc;

use hibernation::nix::store_path::is_hash_part;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Body, Request, Response, handler};

use super::credentials::required_caller;
use super::limits::{NARINFO_LIMIT, content_encoding, read_decoded};
use super::rights::{pushable_cache, pushable_cache_counted};
use super::{AppError, AppState};
use crate::services::{metrics, upload::nix_upload};

fn no_content() -> Response {
    Response::builder().status(StatusCode::NO_CONTENT).finish()
}

/// Nix writes `nix-cache-info` when its GET found none; ours is generated, so only check it.
#[handler]
pub async fn put_cache_info(
    req: &Request,
    Path(name): Path<String>,
    state: Data<&Arc<AppState>>,
    body: Body,
) -> Result<Response, AppError> {
    pushable_cache(&state, req, &name).await?;
    let text = String::from_utf8_lossy(&read_decoded(req, body, NARINFO_LIMIT, "nix-cache-info").await?).into_owned();
    let store_dir = text.lines().find_map(|l| l.strip_prefix("StoreDir: "));
    if store_dir.is_some_and(|d| d.trim() != hibernation::nix::STORE_DIR) {
        return Err(AppError::BadRequest(format!("this cache serves {}", hibernation::nix::STORE_DIR)));
    }
    Ok(no_content())
}

#[handler]
pub async fn put_nar(
    req: &Request,
    Path((name, file)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
    body: Body,
) -> Result<Response, AppError> {
    let caller = required_caller(&state, req).await?;
    let cache = pushable_cache_counted(&state, req, &name).await?;
    if content_encoding(req).is_some() {
        return Err(AppError::BadRequest("NAR uploads must not use Content-Encoding".into()));
    }
    let body = body.into_async_read();
    let result =
        nix_upload::accept_nar(&state.db, &state.storage, &caller, &cache, &file, body, &state.receive_limits).await;
    match &result {
        Ok(bytes) => metrics::received(&name, *bytes),
        Err(e) => super::metrics::count_rejection(&state, &name, e.reason()).await,
    }
    result?;
    Ok(no_content())
}

/// `<hash>.narinfo` makes a path visible; `<hash>.ls` is accepted and ignored because the
/// server writes its own listing of every NAR it verifies.
#[handler]
pub async fn put_file(
    req: &Request,
    Path((name, file)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
    body: Body,
) -> Result<Response, AppError> {
    let caller = required_caller(&state, req).await?;
    if let Some(hash) = file.strip_suffix(".narinfo").filter(|h| is_hash_part(h)) {
        // Rights first: nothing is read or decoded for a caller who may not push here.
        let cache = pushable_cache_counted(&state, req, &name).await?;
        let text = String::from_utf8(read_decoded(req, body, NARINFO_LIMIT, "narinfo").await?)
            .map_err(|_| AppError::BadRequest("the narinfo is not UTF-8 text".into()))?;
        // Known to the presence filter before the commit (or before finding that another
        // process stored it), so it is never answered as absent here.
        state.replication.presence().add_path(cache.id, hash);
        let cache_id = cache.id;
        let result = nix_upload::accept_narinfo(state.upload_destination(), &caller, cache, hash, &text).await;
        if result.is_ok() {
            // Visible at once through this process (and the others, which the commit waited for).
            state.hot.forget_misses(&[(cache_id, hash.to_string())]);
        }
        match &result {
            Ok(true) => {
                tracing::info!(cache = name, path = hash, "path pushed by nix copy");
                // Its NAR bytes were counted when the NAR arrived.
                metrics::pushed(&name, 0);
            }
            Ok(false) => {}
            Err(e) => super::metrics::count_rejection(&state, &name, e.reason()).await,
        }
        result?;
        return Ok(no_content());
    }
    if file.strip_suffix(".ls").is_some_and(is_hash_part) {
        pushable_cache(&state, req, &name).await?;
        return Ok(no_content());
    }
    Err(AppError::NotFound(format!("{file} cannot be uploaded to a cache")))
}

#[handler]
pub async fn put_log(
    req: &Request,
    Path((name, drv)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
    body: Body,
) -> Result<Response, AppError> {
    let cache = pushable_cache(&state, req, &name).await?;
    // Logs are stored as sent (streamed to storage, at most MAX_LOG_SIZE) and served with
    // the same Content-Encoding.
    let encoding = content_encoding(req);
    nix_upload::accept_log(&state.db, &state.storage, &cache, &drv, encoding, body.into_async_read()).await?;
    Ok(no_content())
}
