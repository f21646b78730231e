//! The Nix binary-cache protocol at `/api/nix/{cache}/...`: `nix-cache-info`, narinfos and NARs.

use std::sync::Arc;

use hibernation::http::{ByteRange, byte_range};
use hibernation::nix::store_path::is_hash_part;
use poem::http::{Method, StatusCode, header};
use poem::web::{Data, Path};
use poem::{Body, Request, Response, handler};

use super::credentials::optional_token;
use super::error::storage_unavailable;
use super::{AppError, AppState};
use crate::db::models::Cache;
use crate::services::identity::access::Sight;
use crate::services::serving::answers::{self, Blob};
use crate::services::serving::narinfo::parse_nar_file_name;
use crate::services::serving::rights::{find_cache, token_sight};

/// Read size when streaming NARs to clients: large enough to keep syscalls rare (3.2 to
/// 3.5 GB/s over 16 connections here), small enough that 16 downloads at once held about
/// 10 MiB less than with 256 KiB (each download holds a chunk being read and one being sent).
/// A range no longer than this is read whole instead.
const STREAM_CHUNK: usize = 128 * 1024;

/// The cache if the caller may read it. A cache the caller cannot see (missing, or private
/// and not theirs) is 401 (never 403 or 404, which Nix reads as "not cached" and builds),
/// the same answer for both.
async fn readable_cache(state: &AppState, req: &Request, name: &str) -> Result<Cache, AppError> {
    let found = find_cache(&state.db, &state.hot, name).await?;
    // Anyone reads a public cache: a stale token in a netrc file does not stop it.
    if let Some(cache) = found.as_ref().filter(|c| c.is_public) {
        return Ok(cache.clone());
    }
    let Some(token) = optional_token(req)? else { return Err(private_cache(name)) };
    // Remembered briefly (see `rights`), so a private narinfo costs no database query.
    match token_sight(&state.db, &state.hot, &token, found).await? {
        Sight::Visible(cache, _) => Ok(cache),
        Sight::Invisible => {
            Err(AppError::Unauthorized(format!("cache {name:?} does not exist, or your token may not read it")))
        }
    }
}

fn private_cache(name: &str) -> AppError {
    AppError::Unauthorized(format!("cache {name:?} is private: put an API token in your netrc file as the password"))
}

#[handler]
pub async fn cache_info(
    req: &Request,
    Path(name): Path<String>,
    state: Data<&Arc<AppState>>,
) -> Result<Response, AppError> {
    let cache = readable_cache(&state, req, &name).await?;
    let body = format!("StoreDir: {}\nWantMassQuery: 1\nPriority: {}\n", hibernation::nix::STORE_DIR, cache.priority);
    Ok(Response::builder().content_type("text/x-nix-cache-info").body(body))
}

#[handler]
pub async fn narinfo(
    req: &Request,
    Path((name, file)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
) -> Result<Response, AppError> {
    let not_found = || AppError::NotFound(format!("{file} is not in cache {name:?}"));
    let (hash, is_listing) = match (file.strip_suffix(".narinfo"), file.strip_suffix(".ls")) {
        (Some(h), _) => (h, false),
        (None, Some(h)) => (h, true),
        _ => return Err(not_found()),
    };
    if !is_hash_part(hash) {
        return Err(not_found());
    }
    let cache = readable_cache(&state, req, &name).await?;
    if is_listing {
        let listing = answers::listing(state.serving(), &cache, hash).await?.ok_or_else(not_found)?;
        return Ok(Response::builder().content_type("application/json").body(stream(listing)));
    }
    let text = answers::narinfo(state.serving(), &cache, hash).await?.ok_or_else(not_found)?;
    let response = Response::builder().content_type("text/x-nix-narinfo").header(header::CONTENT_LENGTH, text.len());
    Ok(if req.method() == Method::HEAD { response.body(Body::empty()) } else { response.body(text.to_string()) })
}

#[handler]
pub async fn nar(
    req: &Request,
    Path((name, file)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
) -> Result<Response, AppError> {
    let not_found = || AppError::NotFound(format!("nar/{file} is not in cache {name:?}"));
    let (hash, _) = parse_nar_file_name(&file).ok_or_else(not_found)?;
    let nar_hash = hash.to_nix32();
    let cache = readable_cache(&state, req, &name).await?;
    // Remembered like rendered narinfos: NARs never change once visible. But a path deleted
    // and pushed again through another process may have a new object, the old one
    // collected: then the database says where it is now.
    match serve_nar(&state, req, &cache, &nar_hash, true).await? {
        ServedNar::Response(response) => Ok(response),
        ServedNar::NotInCache => Err(not_found()),
        ServedNar::Moved => match serve_nar(&state, req, &cache, &nar_hash, false).await? {
            ServedNar::Response(response) => Ok(response),
            ServedNar::NotInCache | ServedNar::Moved => Err(not_found()),
        },
    }
}

/// How a NAR request went.
enum ServedNar {
    Response(Response),
    /// The database says the cache has no such NAR (a HEAD before an upload, mostly).
    NotInCache,
    /// Its object is not where it was found: deleted, or pushed again through another process.
    Moved,
}

/// Answers a NAR request, from where this process last found it when `remembered`.
async fn serve_nar(
    state: &AppState,
    req: &Request,
    cache: &Cache,
    nar_hash: &str,
    remembered: bool,
) -> Result<ServedNar, AppError> {
    let Some((path_id, stored)) = answers::find_nar(state.serving(), cache, nar_hash, remembered).await? else {
        return Ok(ServedNar::NotInCache);
    };
    let len = stored.file_size as u64;
    let range = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, end) = match byte_range(range, len) {
        ByteRange::Full => (StatusCode::OK, 0, len),
        ByteRange::Partial(start, end) => (StatusCode::PARTIAL_CONTENT, start, end),
        ByteRange::Unsatisfiable => {
            return Ok(ServedNar::Response(
                Response::builder()
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                    .header(header::ACCEPT_RANGES, "bytes")
                    .body(Body::empty()),
            ));
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .content_type("application/x-nix-nar")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, end - start);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{}/{len}", end - 1));
    }
    if req.method() == Method::HEAD {
        return Ok(ServedNar::Response(builder.body(Body::empty())));
    }
    let partial = status == StatusCode::PARTIAL_CONTENT;
    let body =
        match answers::read_nar(state.serving(), cache, &stored, (start, end), partial, STREAM_CHUNK as u64).await {
            Ok(Blob::Whole(bytes)) => Body::from(bytes),
            Ok(Blob::Stream(reader)) => stream(reader),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ServedNar::Moved),
            Err(e) => {
                return Err(storage_unavailable(&format_args!(
                    "NAR {} is registered but cannot be read: {e}",
                    stored.nar_hash
                )));
            }
        };
    answers::count_nar_served(state.serving(), cache, path_id, end - start);
    Ok(ServedNar::Response(builder.body(body)))
}

/// A stored blob as a streamed body. ReaderStream's default 4 KiB chunks cap throughput;
/// large chunks keep syscalls rare.
fn stream(reader: crate::storage::BlobReader) -> Body {
    Body::from_bytes_stream(tokio_util::io::ReaderStream::with_capacity(reader, STREAM_CHUNK))
}

/// `log/<drv>`: a build log stored with `nix store copy-log`, read by `nix log`.
#[handler]
pub async fn build_log(
    req: &Request,
    Path((name, drv)): Path<(String, String)>,
    state: Data<&Arc<AppState>>,
) -> Result<Response, AppError> {
    let cache = readable_cache(&state, req, &name).await?;
    let (reader, encoding) = answers::build_log(state.serving(), &cache, &drv)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("cache {name:?} has no log for {drv}")))?;
    let mut response = Response::builder().content_type("text/plain; charset=utf-8");
    if let Some(encoding) = encoding {
        response = response.header(header::CONTENT_ENCODING, encoding);
    }
    Ok(response.body(stream(reader)))
}
