//! Bounded before trusted: every request body has a size limit, enforced from its
//! `Content-Length` before a handler runs and again while it streams, and encoded bodies are
//! decoded with a cap on what they decode to. Handlers check the caller's rights before they
//! read a body at all.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use poem::http::{Method, header};
use poem::{Body, Endpoint, IntoResponse, Request, Response};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt};

use super::AppError;
use crate::services::upload::receive::{BodyStalled, SizeLimitExceeded};
use hibernation::human::exact_bytes;

/// Size limits on what clients send; more are fixed below.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// MAX_NAR_SIZE: the largest NAR accepted (uncompressed NarSize), 16 GiB by default.
    pub max_nar_size: u64,
    /// MAX_LOG_SIZE: the largest build log accepted, as sent (logs keep their encoding), 64 MiB
    /// by default.
    pub max_log_size: u64,
    /// DECOMPRESSION_MEMORY: what the uploads being checked at once may hold to decompress
    /// (their windows), 512 MiB by default; one upload may need up to 131 MiB.
    pub decompression_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_nar_size: 16 << 30, max_log_size: 64 << 20, decompression_memory: 512 << 20 }
    }
}

/// Dashboard forms, sign-in, CLI login requests, narinfos and anything else not listed below.
pub const SMALL_BODY_LIMIT: u64 = 1 << 20;
/// A push plan lists every path of a closure (about 200 bytes each).
pub const PUSH_PLAN_LIMIT: u64 = 64 << 20;
/// A narinfo after its `Content-Encoding` is undone (real ones are a few hundred bytes).
pub const NARINFO_LIMIT: u64 = 1 << 20;

/// The body limit of a request, by route. NAR uploads are bounded by MAX_NAR_SIZE here and
/// while they are received; logs by MAX_LOG_SIZE.
fn limit_for(method: &Method, path: &str, limits: &Limits) -> (u64, &'static str) {
    // Matched by segment, not by substring: a cache may be named `nar` or `log`.
    let segments: Vec<&str> = path.split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("PUT", ["", "api", "nix", _, "nar", _]) | ("PUT", ["", "api", "v1", "caches", _, "paths", _]) => {
            (crate::services::upload::receive::max_file_size(limits.max_nar_size), "MAX_NAR_SIZE")
        }
        ("PUT", ["", "api", "nix", _, "log", _]) => (limits.max_log_size, "MAX_LOG_SIZE"),
        ("POST", ["", "api", "v1", "caches", _, "push-plan"]) => (PUSH_PLAN_LIMIT, "the push plan limit"),
        _ => (SMALL_BODY_LIMIT, "the request body limit"),
    }
}

fn too_large(limit: u64, name: &str) -> AppError {
    AppError::TooLarge(format!("the request body is larger than {name} ({})", exact_bytes(limit)))
}

/// Wraps the application: refuses a declared `Content-Length` over the route's limit with
/// 413, and guards every body as it streams (size, stalls, minimum rate).
pub struct BodyLimit<E> {
    pub inner: E,
    pub limits: Limits,
    /// CLIENT_TIMEOUT: how long a body may send nothing.
    pub client_timeout: Duration,
}

impl<E: Endpoint> Endpoint for BodyLimit<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let (limit, name) = limit_for(req.method(), req.uri().path(), &self.limits);
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            // The body stays unread, so the connection cannot carry another request: saying
            // so keeps a client from sending its next one on it (and failing it).
            let mut refused = poem::error::ResponseError::as_response(&too_large(limit, name));
            refused.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            return Ok(refused);
        }
        let body = req.take_body();
        if !body.is_empty() {
            let guarded = GuardedBody::new(body.into_bytes_stream(), limit, name, self.client_timeout);
            req.set_body(Body::from_bytes_stream(guarded));
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

/// Bytes per second a body must average once it has been sending for CLIENT_TIMEOUT: slow
/// enough for any real network, fast enough that trickling clients cannot hold a connection
/// (and the blocking thread an upload runs on) for hours.
pub const MIN_UPLOAD_RATE: u64 = 1024;

/// A request body that ends with an error when it grows past `limit`, or when the server
/// waits on it: nothing for `idle`, or less than [`MIN_UPLOAD_RATE`] on average once it has
/// waited `idle` in all. Only time spent waiting on the client counts, never time the server
/// spends elsewhere between reads.
struct GuardedBody<S> {
    inner: S,
    seen: u64,
    limit: u64,
    name: &'static str,
    idle: Duration,
    /// Time spent waiting for data, before the current wait.
    waited: Duration,
    /// When the current wait began (the last poll that found nothing, with none since).
    waiting_since: Option<Instant>,
    stall: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl<S> GuardedBody<S> {
    fn new(inner: S, limit: u64, name: &'static str, idle: Duration) -> Self {
        let stall = Box::pin(tokio::time::sleep(idle));
        Self { inner, seen: 0, limit, name, idle, waited: Duration::ZERO, waiting_since: None, stall, done: false }
    }

    fn fail(&mut self, error: std::io::Error) -> Poll<Option<std::io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(error)))
    }

    /// Ends the current wait, if any, adding it to the total.
    fn stop_waiting(&mut self) {
        if let Some(since) = self.waiting_since.take() {
            self.waited += since.elapsed();
        }
    }
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> Stream for GuardedBody<S> {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.stop_waiting();
                self.seen += chunk.len() as u64;
                if self.seen > self.limit {
                    let message = too_large(self.limit, self.name).to_string();
                    return self.fail(std::io::Error::other(SizeLimitExceeded(message)));
                }
                if self.waited > self.idle && self.seen < MIN_UPLOAD_RATE * self.waited.as_secs() {
                    let message =
                        format!("the request body arrived at less than {MIN_UPLOAD_RATE} bytes per second on average");
                    return self.fail(std::io::Error::other(BodyStalled(message)));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => self.fail(e),
            Poll::Pending => {
                if self.waiting_since.is_none() {
                    // A new wait: the stall clock starts now.
                    self.waiting_since = Some(Instant::now());
                    let deadline = tokio::time::Instant::now() + self.idle;
                    self.stall.as_mut().reset(deadline);
                }
                match self.stall.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        let message =
                            format!("the request body sent nothing for {} s (CLIENT_TIMEOUT)", self.idle.as_secs());
                        self.fail(std::io::Error::other(BodyStalled(message)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// Maps a body read error: over the limit is 413, stalled or too slow 408, anything else an
/// interrupted upload.
pub fn read_error(e: std::io::Error) -> AppError {
    if let Some(stalled) = BodyStalled::in_error(&e) {
        return AppError::RequestTimeout(stalled.to_string());
    }
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
        return Err(AppError::TooLarge(format!("the {what} is larger than {}", exact_bytes(limit))));
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
        let limits = Limits { max_nar_size: 1 << 30, max_log_size: 8 << 20, ..Limits::default() };
        assert_eq!(limit_for(&Method::POST, "/sign-in", &limits).0, SMALL_BODY_LIMIT);
        assert_eq!(limit_for(&Method::PUT, "/api/nix/main/abc.narinfo", &limits).0, SMALL_BODY_LIMIT);
        assert_eq!(limit_for(&Method::PUT, "/api/nix/main/log/abc-x.drv", &limits), (8 << 20, "MAX_LOG_SIZE"));
        assert!(limit_for(&Method::PUT, "/api/nix/main/nar/abc.nar.xz", &limits).0 > 1 << 30);
        assert!(limit_for(&Method::PUT, "/api/v1/caches/main/paths/abc", &limits).0 > 1 << 30);
        assert_eq!(limit_for(&Method::POST, "/api/v1/caches/main/push-plan", &limits).0, PUSH_PLAN_LIMIT);
        assert_eq!(limit_for(&Method::POST, "/api/v1/caches/main/paths/abc", &limits).0, SMALL_BODY_LIMIT);
        // Cache names that look like route words change nothing.
        assert_eq!(limit_for(&Method::PUT, "/api/nix/nar/log/abc-x.drv", &limits).1, "MAX_LOG_SIZE");
        assert_eq!(limit_for(&Method::PUT, "/api/nix/nar/abc.narinfo", &limits).0, SMALL_BODY_LIMIT);
        assert_eq!(limit_for(&Method::PUT, "/api/nix/log/nar/abc.nar", &limits).1, "MAX_NAR_SIZE");
        assert_eq!(exact_bytes(16 << 30), "16 GiB");
        assert_eq!(exact_bytes(1000), "1000 bytes");
    }
}
