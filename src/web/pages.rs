//! Server-rendered pages (Askama). The full dashboard comes later; this is the landing page.

use std::sync::Arc;

use askama::Template;
use poem::handler;
use poem::web::{Data, Html};

use super::{AppError, AppState};
use crate::db::{caches, paths};

pub struct CacheSummary {
    pub name: String,
    pub paths: i64,
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    site_url: String,
    caches: Vec<CacheSummary>,
}

/// Lists the public caches.
#[handler]
pub async fn index(state: Data<&Arc<AppState>>) -> Result<Html<String>, AppError> {
    let caches = state
        .db
        .read(|c| {
            let mut out = Vec::new();
            for cache in caches::list(c)?.into_iter().filter(|c| c.is_public) {
                out.push(CacheSummary { paths: paths::count_in_cache(c, cache.id)?, name: cache.name });
            }
            Ok(out)
        })
        .await?;
    let page = IndexPage { site_url: state.config.site_url.clone(), caches };
    Ok(Html(page.render().map_err(|e| AppError::Internal(e.to_string()))?))
}

#[handler]
pub fn health() -> &'static str {
    "OK"
}
