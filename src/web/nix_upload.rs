//! Uploads from stock Nix at the cache's own URL (`nix copy --to http://.../api/nix/<cache>`):
//! PUT `nix-cache-info`, `nar/<file>`, `<hash>.narinfo`, `<hash>.ls` and `log/<drv>`.
//! Credentials come from the netrc (HTTP Basic); without push access every PUT is refused.

use std::sync::Arc;

use hibernation::nix::store_path::is_hash_part;
use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Body, Request, Response, handler};

use super::credentials::required_caller;
use super::{AppError, AppState};
use crate::services::push::cache_for_push;
use crate::services::receive::decompress_small;
use crate::services::{metrics, nix_upload};

/// Small bodies (narinfos, listings, logs) are read whole; anything larger is refused.
const SMALL_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// A small body as sent, still in its `Content-Encoding`.
async fn raw_small_body(body: Body) -> Result<Vec<u8>, AppError> {
    let bytes = body
        .into_bytes_limit(SMALL_BODY_LIMIT)
        .await
        .map_err(|e| AppError::BadRequest(format!("cannot read the request body: {e}")))?;
    Ok(bytes.to_vec())
}

/// A small body with its `Content-Encoding` undone.
async fn small_body(req: &Request, body: Body) -> Result<Vec<u8>, AppError> {
    decode_content(req, raw_small_body(body).await?)
}

/// Undoes `Content-Encoding` (Nix's `narinfo-compression=` and similar settings).
fn decode_content(req: &Request, bytes: Vec<u8>) -> Result<Vec<u8>, AppError> {
    match content_encoding(req) {
        None => Ok(bytes),
        Some(encoding) => decompress_small(&encoding, &bytes)
            .map_err(|e| AppError::BadRequest(format!("cannot decode Content-Encoding {encoding}: {e}"))),
    }
}

fn content_encoding(req: &Request) -> Option<String> {
    req.headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "identity")
}

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
    let caller = required_caller(&state, req).await?;
    cache_for_push(&state.db, &caller, &name).await?;
    let text = String::from_utf8_lossy(&small_body(req, body).await?).into_owned();
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
    if content_encoding(req).is_some() {
        return Err(AppError::BadRequest("NAR uploads must not use Content-Encoding".into()));
    }
    let result = nix_upload::accept_nar(&state.db, &state.storage, &caller, &name, &file, body.into_async_read()).await;
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
        let text = String::from_utf8(small_body(req, body).await?)
            .map_err(|_| AppError::BadRequest("the narinfo is not UTF-8 text".into()))?;
        let result = nix_upload::accept_narinfo(&state.db, &state.storage, &caller, &name, hash, &text).await;
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
        cache_for_push(&state.db, &caller, &name).await?;
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
    let caller = required_caller(&state, req).await?;
    // Logs are stored as sent and served with the same Content-Encoding.
    let encoding = content_encoding(req);
    let bytes = raw_small_body(body).await?;
    nix_upload::accept_log(&state.db, &state.storage, &caller, &name, &drv, encoding, bytes).await?;
    Ok(no_content())
}
