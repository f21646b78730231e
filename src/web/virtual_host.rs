//! VIRTUAL_HOST_ROUTING: a request for `{cache}.{site host}` is the cache protocol of that
//! cache at `/`, so `http://main.cache.example.com` works as a substituter. The host comes
//! from the request URI (HTTP/2 `:authority`) or the Host header, compared without case and
//! without the port.

use poem::http::Uri;
use poem::http::uri::PathAndQuery;
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::services::is_valid_cache_name;

/// The cache named by `host` under `site_host`, e.g. `main` for `Main.cache.example.com:8000`.
pub fn cache_of_host(host: &str, site_host: &str) -> Option<String> {
    let host = host.trim().to_ascii_lowercase();
    // Drop a port; IPv6 literals never name a cache.
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host.as_str(),
    };
    let cache = name.trim_end_matches('.').strip_suffix(site_host)?.strip_suffix('.')?;
    is_valid_cache_name(cache).then(|| cache.to_string())
}

fn request_host(req: &Request) -> Option<String> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.as_str().to_string());
    }
    req.headers().get(poem::http::header::HOST)?.to_str().ok().map(str::to_string)
}

/// `/nix-cache-info?x` on `main.<site>` becomes `/api/nix/main/nix-cache-info?x`; `/` is
/// the cache's `nix-cache-info`.
fn rewritten(uri: &Uri, cache: &str) -> Option<Uri> {
    let path = match uri.path() {
        "" | "/" => "/nix-cache-info",
        other => other,
    };
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let path_and_query: PathAndQuery = format!("/api/nix/{cache}{path}{query}").parse().ok()?;
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).ok()
}

/// Wraps the application: requests for a cache's host go to that cache's protocol routes.
pub struct VirtualHosts<E> {
    pub inner: E,
    pub site_host: String,
}

impl<E: Endpoint> Endpoint for VirtualHosts<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        if let Some(cache) = request_host(&req).and_then(|h| cache_of_host(&h, &self.site_host))
            && let Some(uri) = rewritten(req.uri(), &cache)
        {
            *req.uri_mut() = uri;
        }
        self.inner.call(req).await.map(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cache_in_the_host() {
        let site = "cache.example.com";
        assert_eq!(cache_of_host("main.cache.example.com", site).as_deref(), Some("main"));
        assert_eq!(cache_of_host("MAIN.Cache.Example.com:8443", site).as_deref(), Some("main"));
        assert_eq!(cache_of_host("team-a.cache.example.com.", site).as_deref(), Some("team-a"));
        for other in [
            "cache.example.com",
            "a.b.cache.example.com",
            "evilcache.example.com",
            "main.cache.example.com.evil.org",
            "[::1]:8000",
            "_x.cache.example.com",
        ] {
            assert_eq!(cache_of_host(other, site), None, "{other}");
        }
        assert_eq!(cache_of_host("main.localhost:8000", "localhost").as_deref(), Some("main"));
    }

    #[test]
    fn rewrites_paths_under_the_cache() {
        let uri: Uri = "/abc.narinfo?x=1".parse().unwrap();
        assert_eq!(rewritten(&uri, "main").unwrap().to_string(), "/api/nix/main/abc.narinfo?x=1");
        let root: Uri = "/".parse().unwrap();
        assert_eq!(rewritten(&root, "main").unwrap().to_string(), "/api/nix/main/nix-cache-info");
        let absolute: Uri = "http://main.localhost:8000/nar/x.nar".parse().unwrap();
        assert_eq!(
            rewritten(&absolute, "main").unwrap().to_string(),
            "http://main.localhost:8000/api/nix/main/nar/x.nar"
        );
    }
}
