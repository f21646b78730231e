//! Response headers every answer carries: no MIME sniffing anywhere, and no caching of
//! dashboard pages and API answers (they show tokens, codes and private data).

use poem::http::{HeaderValue, header};
use poem::{Endpoint, IntoResponse, Request, Response};

/// Routes whose answers may be cached: the Nix protocol (narinfos, NARs) and static assets.
fn cacheable(path: &str) -> bool {
    path.starts_with("/api/nix/") || path.starts_with("/static/")
}

pub struct SecurityHeaders<E> {
    pub inner: E,
}

impl<E: Endpoint> Endpoint for SecurityHeaders<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let no_store = !cacheable(req.uri().path());
        let mut response = match self.inner.call(req).await {
            Ok(output) => output.into_response(),
            Err(e) => e.into_response(),
        };
        let headers = response.headers_mut();
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if no_store && !headers.contains_key(header::CACHE_CONTROL) {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Ok(response)
    }
}
