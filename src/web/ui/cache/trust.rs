//! Trusted publishing on a cache's settings page: the rules saying which CI ID tokens may
//! trade themselves for tokens on this cache, added and removed by those who manage it.

use std::sync::Arc;

use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::settings::{TrustDraft, current_values, editable, settings_page_with};
use crate::db::ids::CacheId;
use crate::services::identity::trusted_publishing;
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, carries_csrf};
use crate::web::ui::{CsrfOnly, FormError, done, unavailable};

#[derive(Deserialize)]
pub struct TrustForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    issuer: String,
    /// `claim=value`, one per line.
    #[serde(default)]
    conditions: String,
    /// "push" or "read".
    #[serde(default)]
    permission: String,
}

carries_csrf!(TrustForm);

#[handler]
pub async fn add(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    CheckedForm { user, form }: CheckedForm<TrustForm>,
) -> Response {
    let (cache, keys) = match editable(&state, req, &user, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let issuer = form.issuer.trim().trim_end_matches('/').to_string();
    let push = form.permission == "push";
    let checked = trusted_publishing::check_issuer(&issuer)
        .and_then(|()| trusted_publishing::parse_conditions(form.conditions.lines()));
    let conditions = match checked {
        Ok(conditions) => conditions,
        Err(e) => {
            let draft =
                TrustDraft { issuer: form.issuer, conditions: form.conditions, push, error: Some(e.to_string()) };
            return match current_values(&state, &cache, keys).await {
                Ok(values) => settings_page_with(&state, req, &user, cache, values, FormError::default(), draft).await,
                Err(e) => unavailable(&state, req, &user, e),
            };
        }
    };
    match trusted_publishing::trust(&state.db, CacheId(cache.id), &issuer, &conditions, push).await {
        Ok(()) => {
            state.hot.forget_rights();
            done(
                &state,
                &format!("/caches/{name}/settings#trust"),
                &format!("Tokens from {issuer} that match may now {}.", if push { "push" } else { "read" }),
            )
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn remove(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((name, rule)): Path<(String, i64)>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    let (cache, _) = match editable(&state, req, &user, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match trusted_publishing::untrust(&state.db, CacheId(cache.id), rule).await {
        Ok(_) => {
            state.hot.forget_rights();
            done(&state, &format!("/caches/{name}/settings#trust"), "Rule removed: tokens it matched get nothing new.")
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}
