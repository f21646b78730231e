//! Bounded before trusted: every request body has a size limit, enforced from its
//! `Content-Length` before a handler runs and again while it streams, and encoded bodies are
//! decoded with a cap on what they decode to. Handlers check the caller's rights before they
//! read a body at all.

use futures_util::StreamExt;
use poem::http::{Method, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt};

use super::AppError;
use crate::config::Limits;
use crate::services::receive::SizeLimitExceeded;

/// Dashboard forms, sign-in, CLI login requests, narinfos and anything else not listed below.
pub const SMALL_BODY_LIMIT: u64 = 1 << 20;
/// A push plan lists every path of a closure (about 200 bytes each).
pub const PUSH_PLAN_LIMIT: u64 = 64 << 20;
/// A narinfo after its `Content-Encoding` is undone (real ones are a few hundred bytes).
pub const NARINFO_LIMIT: u64 = 1 << 20;

/// The body limit of a request, by route. NAR uploads are bounded by MAX_NAR_SIZE here and
/// while they are received; logs by MAX_LOG_SIZE.
fn limit_for(method: &Method, path: &str, limits: &Limits) -> (u64, &'static str) {
    if *method == Method::PUT {
        if path.starts_with("/api/nix/") && path.contains("/nar/") || path.starts_with("/api/v1/caches/") {
            return (crate::services::receive::max_file_size(limits.max_nar_size), "MAX_NAR_SIZE");
        }
        if path.starts_with("/api/nix/") && path.contains("/log/") {
            return (limits.max_log_size, "MAX_LOG_SIZE");
        }
    }
    if *method == Method::POST && path.starts_with("/api/v1/caches/") && path.ends_with("/push-plan") {
        return (PUSH_PLAN_LIMIT, "the push plan limit");
    }
    (SMALL_BODY_LIMIT, "the request body limit")
}

fn too_large(limit: u64, name: &str) -> AppError {
    AppError::TooLarge(format!("the request body is larger than {name} ({})", human(limit)))
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Wraps the application: refuses a declared `Content-Length` over the route's limit with
/// 413, and cuts off a body that streams past it.
pub struct BodyLimit<E> {
    pub inner: E,
    pub limits: Limits,
}

impl<E: Endpoint> Endpoint for BodyLimit<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let (limit, name) = limit_for(req.method(), req.uri().path(), &self.limits);
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Ok(poem::error::ResponseError::as_response(&too_large(limit, name)));
        }
        let body = req.take_body();
        if !body.is_empty() {
            let mut seen = 0u64;
            let stream = body.into_bytes_stream().map(move |chunk| {
                let chunk = chunk?;
                seen += chunk.len() as u64;
                if seen > limit {
                    return Err(std::io::Error::other(SizeLimitExceeded(too_large(limit, name).to_string())));
                }
                Ok(chunk)
            });
            req.set_body(Body::from_bytes_stream(stream));
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Maps a body read error: over the limit is 413, anything else an interrupted upload.
pub fn read_error(e: std::io::Error) -> AppError {
    match SizeLimitExceeded::in_error(&e) {
        Some(limit) => AppError::TooLarge(limit.to_string()),
        None => AppError::BadRequest(format!("cannot read the request body: {e}")),
    }
}

/// Reads a whole body of at most `limit` bytes (checked while it streams).
pub async fn read_capped(body: Body, limit: u64, what: &str) -> Result<Vec<u8>, AppError> {
    read_all(body.into_async_read(), limit, what).await
}

async fn read_all(reader: impl AsyncRead + Unpin, limit: u64, what: &str) -> Result<Vec<u8>, AppError> {
    let mut out = Vec::new();
    reader.take(limit + 1).read_to_end(&mut out).await.map_err(read_error)?;
    if out.len() as u64 > limit {
        return Err(AppError::TooLarge(format!("the {what} is larger than {}", human(limit))));
    }
    Ok(out)
}

/// The `Content-Encoding` of a request, lower-case; `None` for none or `identity`.
pub fn content_encoding(req: &Request) -> Option<String> {
    req.headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty() && v != "identity")
}

/// Reads a body with its `Content-Encoding` undone, as it streams: what it decodes to may
/// not exceed `limit` bytes, so a small compressed bomb costs no memory.
pub async fn read_decoded(req: &Request, body: Body, limit: u64, what: &str) -> Result<Vec<u8>, AppError> {
    use async_compression::tokio::bufread as decode;
    let input = tokio::io::BufReader::new(body.into_async_read());
    let Some(encoding) = content_encoding(req) else {
        return read_all(input, limit, what).await;
    };
    let decoder: Box<dyn AsyncRead + Send + Unpin> = match encoding.as_str() {
        "zstd" | "zst" => Box::new(multi(decode::ZstdDecoder::new(input))),
        "xz" => Box::new(multi(decode::XzDecoder::new(input))),
        "br" => Box::new(decode::BrotliDecoder::new(input)),
        "gzip" | "x-gzip" => Box::new(multi(decode::GzipDecoder::new(input))),
        "bzip2" => Box::new(multi(decode::BzDecoder::new(input))),
        other => return Err(AppError::BadRequest(format!("unsupported Content-Encoding {other:?}"))),
    };
    read_all(decoder, limit, what).await.map_err(|e| match e {
        AppError::BadRequest(msg) => AppError::BadRequest(format!("cannot decode Content-Encoding {encoding}: {msg}")),
        other => other,
    })
}

/// Decoders accept concatenated members, as the blocking decoders of NAR uploads do.
fn multi<D: MultipleMembers>(mut decoder: D) -> D {
    decoder.multiple_members(true);
    decoder
}

trait MultipleMembers {
    fn multiple_members(&mut self, enabled: bool);
}

macro_rules! multiple_members {
    ($($decoder:ident),*) => {$(
        impl<R: AsyncBufRead> MultipleMembers for async_compression::tokio::bufread::$decoder<R> {
            fn multiple_members(&mut self, enabled: bool) {
                async_compression::tokio::bufread::$decoder::multiple_members(self, enabled);
            }
        }
    )*};
}
multiple_members!(ZstdDecoder, XzDecoder, GzipDecoder, BzDecoder);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_get_their_limits() {
        let limits = Limits { max_nar_size: 1 << 30, max_log_size: 8 << 20 };
        assert_eq!(limit_for(&Method::POST, "/sign-in", &limits).0, SMALL_BODY_LIMIT);
        assert_eq!(limit_for(&Method::PUT, "/api/nix/main/abc.narinfo", &limits).0, SMALL_BODY_LIMIT);
        assert_eq!(limit_for(&Method::PUT, "/api/nix/main/log/abc-x.drv", &limits), (8 << 20, "MAX_LOG_SIZE"));
        assert!(limit_for(&Method::PUT, "/api/nix/main/nar/abc.nar.xz", &limits).0 > 1 << 30);
        assert!(limit_for(&Method::PUT, "/api/v1/caches/main/paths/abc", &limits).0 > 1 << 30);
        assert_eq!(limit_for(&Method::POST, "/api/v1/caches/main/push-plan", &limits).0, PUSH_PLAN_LIMIT);
        assert_eq!(limit_for(&Method::POST, "/api/v1/caches/main/paths/abc", &limits).0, SMALL_BODY_LIMIT);
        assert_eq!(human(16 << 30), "16 GiB");
        assert_eq!(human(1000), "1000 bytes");
    }
}
