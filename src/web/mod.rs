//! HTTP: the Nix binary-cache protocol, the push API and the pages. Handlers stay thin and
//! call into `services`.

mod assets;
mod cache_protocol;
pub mod client_address;
pub mod connections;
mod credentials;
mod error;
mod headers;
mod limits;
mod login_api;
pub mod metrics;
mod nix_upload;
mod pins_api;
mod push_api;
mod rights;
mod site;
mod ui;
mod virtual_host;

use std::sync::Arc;

use poem::{EndpointExt, Route, get, put};

use crate::db::Db;
use crate::storage::Storage;

pub use error::AppError;
pub use limits::Limits;
pub use site::Site;

pub struct AppState {
    pub db: Db,
    pub storage: Storage,
    pub site: Site,
    /// When eviction may take a path (EVICTION_MIN_AGE) and the background lifecycle runs.
    pub lifecycle: crate::services::lifecycle::Timing,
    pub access_log: Arc<crate::services::serving::access_log::AccessLog>,
    pub hot: Arc<crate::services::serving::hot_cache::HotCache>,
    /// Which paths may be stored where: narinfo misses without a query.
    /// What this process follows of the others, and its presence filter.
    pub replication: Arc<crate::services::serving::replication::Replication>,
    pub upstreams: crate::services::upload::upstream::UpstreamChecker,
    /// Set when METRICS_ENABLED is on.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Single sign-on, from OIDC_* variables or the settings page.
    pub sso: crate::services::identity::oidc::SsoHandle,
    /// The keys of issuers that trusted publishing rules name.
    pub issuer_keys: crate::services::identity::trusted_publishing::IssuerKeys,
    /// What bounds a NAR upload: MAX_NAR_SIZE, and the DECOMPRESSION_MEMORY uploads share.
    pub receive_limits: crate::services::upload::receive::ReceiveLimits,
}

impl AppState {
    pub fn serving(&self) -> crate::services::serving::answers::Serving<'_> {
        crate::services::serving::answers::Serving {
            db: &self.db,
            storage: &self.storage,
            hot: &self.hot,
            replication: &self.replication,
            access_log: &self.access_log,
        }
    }

    pub fn upload_destination(&self) -> crate::services::upload::Destination<'_> {
        crate::services::upload::Destination {
            db: &self.db,
            storage: &self.storage,
            replication: &self.replication,
            eviction_min_age: self.lifecycle.eviction_min_age,
        }
    }
}

pub fn routes(state: Arc<AppState>) -> poem::endpoint::BoxEndpoint<'static, poem::Response> {
    let nix = Route::new()
        .at("/:cache/nix-cache-info", get(cache_protocol::cache_info).put(nix_upload::put_cache_info))
        .at("/:cache/nar/:file", get(cache_protocol::nar).head(cache_protocol::nar).put(nix_upload::put_nar))
        .at("/:cache/log/:drv", get(cache_protocol::build_log).put(nix_upload::put_log))
        .at("/:cache/:file", get(cache_protocol::narinfo).head(cache_protocol::narinfo).put(nix_upload::put_file));
    let api = Route::new()
        .at("/whoami", get(push_api::whoami))
        .at("/cli-login", poem::post(login_api::start))
        .at("/cli-login/poll", poem::post(login_api::poll))
        .at("/oidc/token", poem::post(login_api::oidc_token))
        .at("/caches", get(push_api::list_caches))
        .at("/caches/:cache", get(push_api::show_cache))
        .at("/caches/:cache/push-plan", poem::post(push_api::push_plan))
        .at("/caches/:cache/paths/:hash", put(push_api::upload_path))
        .at("/caches/:cache/pins", get(pins_api::list))
        .at("/caches/:cache/pins/:name", put(pins_api::put).delete(pins_api::remove));
    let site_host = state.site.virtual_host_routing.then(|| state.site.host());
    let (body_limits, client_timeout) = (state.site.limits, state.site.client_timeout);
    let with_metrics = state.metrics.is_some();
    let app = ui::routes()
        .at("/health", get(health))
        .at("/metrics", get(metrics::scrape))
        .at("/static/:file", get(assets::asset))
        .nest("/api/nix", nix)
        .nest(hibernation::api::API_PREFIX, api)
        .catch_error(|_: poem::error::NotFoundError| async move { ui::not_found_page() })
        .data(state);
    // Request metrics cost a few allocations per request: only when they are wanted.
    let app = if with_metrics { metrics::RequestMetrics { inner: app }.boxed() } else { app.map_to_response().boxed() };
    // Inside the virtual-host rewrite, so that limits see the cache's protocol routes.
    let app = limits::BodyLimit { inner: app, limits: body_limits, client_timeout }.boxed();
    let app = headers::SecurityHeaders { inner: app }.boxed();
    match site_host {
        Some(site_host) => virtual_host::VirtualHosts { inner: app, site_host }.boxed(),
        None => app,
    }
}

/// For load balancers and the container's health check: the process answers.
#[poem::handler]
fn health() -> &'static str {
    "OK"
}
