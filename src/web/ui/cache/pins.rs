//! Pins from the cache page's storage card: set, moved and removed by those who may push.

use std::sync::Arc;

use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::pages::{PathQuery, cache_page, not_found, readable};
use super::storage::PinAttempt;
use crate::db::models::{Cache, User};
use crate::services::identity::access::Access;
use crate::services::lifecycle::pins;
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, carries_csrf};
use crate::web::ui::{CsrfOnly, Failure, done, unavailable};

#[derive(Deserialize)]
pub struct PinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pin: String,
    #[serde(default)]
    store_path: String,
}

carries_csrf!(PinForm);

/// The cache, if `user` may push to it; the response to send otherwise.
async fn pushable(state: &Arc<AppState>, req: &Request, user: &User, name: &str) -> Result<Cache, Response> {
    match readable(state, user, name).await {
        Ok(Some((cache, access, _))) if access >= Access::Push => Ok(cache),
        Ok(Some(_)) => {
            let text = "Pins need the right to push to this cache.".into();
            Err(Failure::Forbidden(text).page(state, req, Some(user)))
        }
        Ok(None) => Err(not_found(state, req, user, name)),
        Err(e) => Err(unavailable(state, req, user, e)),
    }
}

#[handler]
pub async fn pin(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    CheckedForm { user, form }: CheckedForm<PinForm>,
) -> Response {
    let cache = match pushable(&state, req, &user, &name).await {
        Ok(cache) => cache,
        Err(response) => return response,
    };
    let pin_name = form.pin.trim();
    match pins::pin(&state.db, &cache, pin_name, form.store_path.trim(), None).await {
        Ok(_) => done(&state, &format!("/caches/{name}#storage"), &format!("Pinned {pin_name}.")),
        Err(pins::PinError::Db(e)) => unavailable(&state, req, &user, e),
        Err(e) => {
            let attempt =
                PinAttempt { pin: form.pin, store_path: form.store_path, error: format!("{e}. Nothing was changed.") };
            cache_page(&state, req, &user, &name, PathQuery::default(), Some(attempt)).await
        }
    }
}

#[handler]
pub async fn unpin(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((name, pin_name)): Path<(String, String)>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    let cache = match pushable(&state, req, &user, &name).await {
        Ok(cache) => cache,
        Err(response) => return response,
    };
    match pins::unpin(&state.db, &cache, &pin_name).await {
        Ok(()) | Err(pins::PinError::NoSuchPin { .. }) => {
            done(&state, &format!("/caches/{name}#storage"), &format!("Pin {pin_name} removed."))
        }
        Err(pins::PinError::Db(e)) => unavailable(&state, req, &user, e),
        Err(e) => Failure::Invalid { heading: "Not removed", text: e.to_string() }.page(&state, req, Some(&user)),
    }
}
