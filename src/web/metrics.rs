//! The Prometheus side of the server: per-request metrics by route template, and the
//! exposition. With METRICS_PORT it is served on its own listener (to keep it off the
//! public port); otherwise at `/metrics` on the main port, for an administrator's API token
//! (cache names are not for everyone to see).

use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;

use poem::web::Data;
use poem::{Endpoint, EndpointExt, IntoResponse, PathPattern, Request, Response, Route, get, handler};

use super::credentials::optional_caller;
use super::{AppError, AppState};
use crate::services::metrics;

/// Records every request: method, route template (or `unmatched`), status and duration.
pub struct RequestMetrics<E> {
    pub inner: E,
}

impl<E: Endpoint> Endpoint for RequestMetrics<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let (method, started) = (req.method().clone(), Instant::now());
        let in_flight = metrics::InFlight::start();
        let result = self.inner.call(req).await;
        drop(in_flight);
        let (pattern, response) = match result {
            Ok(output) => {
                let response = output.into_response();
                (response.data::<PathPattern>().map(|p| p.0.to_string()), Ok(response))
            }
            Err(error) => (error.data::<PathPattern>().map(|p| p.0.to_string()), Err(error)),
        };
        let status = match &response {
            Ok(r) => r.status(),
            Err(e) => e.status(),
        };
        let route = pattern.unwrap_or_else(|| "unmatched".to_string());
        metrics::http_request(method.as_str(), route, status.as_u16(), started.elapsed());
        response
    }
}

/// Counts a refused upload under its cache, when `cache` names one.
pub async fn count_rejection(state: &AppState, cache: &str, reason: &'static str) {
    metrics::count_rejection(&state.db, cache, reason).await;
}

/// Reads what every cache holds and renders the exposition.
async fn exposition(state: &AppState, handle: &PrometheusHandle) -> Result<String, AppError> {
    metrics::read_stored_gauges(&state.db).await?;
    handle.run_upkeep();
    Ok(handle.render())
}

fn text(body: String) -> Response {
    Response::builder().content_type("text/plain; version=0.0.4; charset=utf-8").body(body)
}

/// `/metrics` on the main port: an administrator's unscoped token is required.
#[handler]
pub async fn scrape(req: &Request, state: Data<&Arc<AppState>>) -> Result<Response, AppError> {
    let Some(handle) = state.metrics.as_ref() else {
        return Err(AppError::NotFound("metrics are off (set METRICS_ENABLED=true)".into()));
    };
    match optional_caller(&state, req).await? {
        // Metrics name every cache: a token narrowed to some caches, or to reading, is not enough.
        Some(caller) if caller.is_admin() && caller.scope.is_unlimited() => Ok(text(exposition(&state, handle).await?)),
        Some(_) => Err(AppError::Forbidden("metrics need an administrator's API token without a scope".into())),
        None => Err(AppError::Unauthorized("metrics need an administrator's API token (Bearer)".into())),
    }
}

#[handler]
async fn open_scrape(state: Data<&Arc<AppState>>) -> Result<Response, AppError> {
    let handle = state.metrics.as_ref().expect("the metrics listener runs only with metrics on");
    Ok(text(exposition(&state, handle).await?))
}

/// The separate METRICS_PORT listener: the exposition at `/` and `/metrics`, no credentials.
pub async fn serve_separately(port: u16, state: Arc<AppState>) -> std::io::Result<()> {
    let app = Route::new().at("/", get(open_scrape)).at("/metrics", get(open_scrape)).data(state);
    poem::Server::new(poem::listener::TcpListener::bind(("0.0.0.0", port))).run(app).await
}
