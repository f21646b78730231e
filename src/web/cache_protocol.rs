//! The Nix binary-cache protocol at `/api/nix/{cache}/...`: `nix-cache-info`, narinfos and NARs.

use std::sync::Arc;

use hibernation::http::{ByteRange, byte_range};
use hibernation::nix::store_path::is_hash_part;
use poem::http::{Method, StatusCode, header};
use poem::web::{Data, Path};
use poem::{Body, Request, Response, handler};

use super::credentials::optional_token;
use super::error::storage_unavailable;
use super::rights::{find_cache, token_sight};
use super::{AppError, AppState};
use crate::db::models::{Cache, Nar};
use crate::db::{paths, uploads};
use crate::services::identity::access::Sight;
use crate::services::metrics;
use crate::services::serving::hot_cache::SMALL_NAR;
use crate::services::serving::narinfo as narinfo_format;
use crate::services::upload::nix_upload::parse_nar_file_name;
use crate::storage::keys::listing_key;

/// Read size when streaming NARs to clients: large enough to keep syscalls rare (3.2 to
/// 3.5 GB/s over 16 connections here), small enough that 16 downloads at once held about
/// 10 MiB less than with 256 KiB (each download holds a chunk being read and one being sent).
const STREAM_CHUNK: usize = 128 * 1024;

/// The cache if the caller may read it. A cache the caller cannot see (missing, or private
/// and not theirs) is 401 (never 403 or 404, which Nix reads as "not cached" and builds),
/// the same answer for both.
async fn readable_cache(state: &AppState, req: &Request, name: &str) -> Result<Cache, AppError> {
    let found = find_cache(state, name).await?;
    // Anyone reads a public cache: a stale token in a netrc file does not stop it.
    if let Some(cache) = found.as_ref().filter(|c| c.is_public) {
        return Ok(cache.clone());
    }
    let Some(token) = optional_token(req)? else { return Err(private_cache(name)) };
    // Remembered briefly (see `rights`), so a private narinfo costs no database query.
    match token_sight(state, &token, found).await? {
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
        (Some(h), _) => (h.to_string(), false),
        (None, Some(h)) => (h.to_string(), true),
        _ => return Err(not_found()),
    };
    if !is_hash_part(&hash) {
        return Err(not_found());
    }
    let cache = readable_cache(&state, req, &name).await?;
    let respond = |text: Arc<str>| {
        let response =
            Response::builder().content_type("text/x-nix-narinfo").header(header::CONTENT_LENGTH, text.len());
        if req.method() == Method::HEAD { response.body(Body::empty()) } else { response.body(text.to_string()) }
    };
    if !is_listing && let Some(text) = state.hot.narinfo(cache.id, &hash) {
        count_narinfo(&state, &cache, true);
        return Ok(respond(text));
    }
    // Misses are most of what Nix asks a second substituter: answered from the presence
    // filter, or remembered briefly (MISS_TTL) when the filter was not sure.
    if !is_listing && (!state.replication.presence().may_contain(cache.id, &hash) || state.hot.is_miss(cache.id, &hash))
    {
        count_narinfo(&state, &cache, false);
        return Err(not_found());
    }
    let (cache_id, lookup, looked_up) = (cache.id, hash.clone(), state.hot.misses_seen_at());
    let entry = state.db.read(move |c| paths::find_entry(c, cache_id, &lookup)).await?;
    if !is_listing {
        count_narinfo(&state, &cache, entry.is_some());
        if entry.is_none() {
            state.hot.remember_miss(cache.id, &hash, looked_up);
        }
    }
    let entry = entry.ok_or_else(not_found)?;
    // Found before the presence filter read it (stored through another process a moment ago,
    // or a false "maybe"): its NAR must not be answered as absent once its narinfo is served.
    state.replication.presence().add_nar(cache.id, &entry.nar.file_hash);
    state.replication.presence().add_nar(cache.id, &entry.nar.nar_hash);
    if is_listing {
        let listing = state.storage.read(&listing_key(&entry.nar.storage_key), None).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                // NARs with more entries than a listing may hold have none.
                not_found()
            } else {
                storage_unavailable(&e)
            }
        })?;
        return Ok(Response::builder().content_type("application/json").body(stream(listing)));
    }
    // A stored row that cannot be rendered (a line break from before values were checked) is
    // absent to Nix: a 5xx would make it retry and fail the build instead of building.
    let text: Arc<str> = match narinfo_format::render(&entry) {
        Ok(text) => Arc::from(text),
        Err(e) => {
            tracing::error!("{e}");
            return Err(not_found());
        }
    };
    state.hot.remember_narinfo(cache.id, &hash, text.clone());
    Ok(respond(text))
}

/// A narinfo answered: for the overview's chart and for Prometheus.
fn count_narinfo(state: &AppState, cache: &Cache, hit: bool) {
    state.access_log.record_narinfo(cache.id, hit);
    metrics::narinfo(&cache.name, hit);
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
    let cache_id = cache.id;
    let (path_id, stored) = match state.hot.nar(cache_id, nar_hash).filter(|_| remembered) {
        Some(found) => found,
        // What `nix copy --to` asks before each upload: answered without a query.
        None if !state.replication.presence().may_hold_nar(cache_id, nar_hash) => return Ok(ServedNar::NotInCache),
        None => {
            let lookup = nar_hash.to_string();
            let Some(found) = state.db.read(move |c| paths::nar_in_cache(c, cache_id, &lookup)).await? else {
                return Ok(ServedNar::NotInCache);
            };
            state.hot.remember_nar(cache_id, nar_hash, found.clone());
            found
        }
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
    let body = match read_nar(state, &stored, status, start, end).await {
        Ok(body) => body,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Deleted through another server process since this one remembered it.
            state.hot.forget_nars(cache_id);
            return Ok(ServedNar::Moved);
        }
        Err(e) => {
            return Err(storage_unavailable(&format_args!(
                "NAR {} is registered but cannot be read: {e}",
                stored.nar_hash
            )));
        }
    };
    state.access_log.record_nar(cache_id, path_id, end - start);
    metrics::nar_served(&cache.name, end - start);
    Ok(ServedNar::Response(builder.body(body)))
}

/// The bytes `[start, end)` of a stored NAR. Most NARs of a closure are small: the smallest
/// are kept in memory, the others read whole in one trip to the blocking pool; large ones
/// stream.
async fn read_nar(state: &AppState, stored: &Nar, status: StatusCode, start: u64, end: u64) -> std::io::Result<Body> {
    let len = stored.file_size as u64;
    if len <= SMALL_NAR {
        let whole = match state.hot.small_nar(&stored.storage_key) {
            Some(whole) => whole,
            None => {
                let read = state.storage.read_small(&stored.storage_key, (0, len)).await?;
                if read.len() as u64 != len {
                    return Err(std::io::Error::other(format!(
                        "registered with {len} bytes but storage holds {}",
                        read.len()
                    )));
                }
                let whole = bytes::Bytes::from(read);
                state.hot.remember_small_nar(&stored.storage_key, whole.clone());
                whole
            }
        };
        Ok(Body::from(whole.slice(start as usize..end as usize)))
    } else if end - start <= STREAM_CHUNK as u64 {
        Ok(Body::from(state.storage.read_small(&stored.storage_key, (start, end)).await?))
    } else {
        let range = (status == StatusCode::PARTIAL_CONTENT).then_some((start, end));
        Ok(stream(state.storage.read(&stored.storage_key, range).await?))
    }
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
    let lookup = drv.clone();
    let log = state
        .db
        .read(move |c| uploads::find_log(c, cache.id, &lookup))
        .await?
        .ok_or_else(|| AppError::NotFound(format!("cache {name:?} has no log for {drv}")))?;
    let reader = state
        .storage
        .read(&log.storage_key, None)
        .await
        .map_err(|e| storage_unavailable(&format_args!("the log of {drv} cannot be read: {e}")))?;
    let mut response = Response::builder().content_type("text/plain; charset=utf-8");
    if let Some(encoding) = log.content_encoding {
        response = response.header(header::CONTENT_ENCODING, encoding);
    }
    Ok(response.body(stream(reader)))
}
