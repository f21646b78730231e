//! The cache page's storage card: the quota policy and retention in force, the pins (set,
//! moved and removed here by those who may push), and what eviction, retention and garbage
//! collection last reclaimed.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::web::{Data, Form, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::caches::{PathQuery, cache_page, not_found, readable};
use super::{done, message, signed_in_form, unavailable};
use crate::db::models::{Cache, Reclaim, User};
use crate::db::{DbError, lifecycle};
use crate::services::access::Access;
use crate::services::pins;
use crate::web::AppState;
use hibernation::api::PinInfo;
use hibernation::format::{count, human_bytes};

/// What the card shows.
pub struct StorageCard {
    pub policy: &'static str,
    /// "quota 50 GiB" or "no quota".
    pub quota: String,
    pub retention_days: Option<i64>,
    pub pins: Vec<PinInfo>,
    /// The latest eviction and retention run of this cache, and the latest garbage collection.
    pub reclaims: Vec<String>,
    /// A pin that was refused, shown again in the form with its error.
    pub attempt: Option<PinAttempt>,
}

/// What was typed into the pin form, and why it was refused.
pub struct PinAttempt {
    pub pin: String,
    pub store_path: String,
    pub error: String,
}

impl StorageCard {
    pub async fn load(state: &AppState, cache: &Cache) -> Result<Self, DbError> {
        let pins = match pins::list(&state.db, cache).await {
            Ok(pins) => pins.iter().map(pins::info).collect(),
            Err(pins::PinError::Db(e)) => return Err(e),
            Err(_) => Vec::new(),
        };
        let cache_id = cache.id;
        let reclaims = state
            .db
            .read(move |c| {
                let mut found = lifecycle::latest_reclaims(c, Some(cache_id))?;
                found.retain(|r| r.kind != "fsck");
                found.extend(lifecycle::latest_reclaims(c, None)?.into_iter().filter(|r| r.kind == "gc"));
                Ok(found)
            })
            .await?;
        Ok(Self {
            policy: cache.policy().describe(),
            quota: match cache.quota_bytes {
                Some(q) => format!("quota {}", hibernation::format::gib(q.max(0) as u64)),
                None => "no quota".into(),
            },
            retention_days: cache.retention_seconds.map(|s| s / 86_400),
            pins,
            reclaims: reclaims.iter().map(Self::describe).collect(),
            attempt: None,
        })
    }

    pub fn typed_pin(&self) -> &str {
        self.attempt.as_ref().map_or("", |a| a.pin.as_str())
    }

    pub fn typed_path(&self) -> &str {
        self.attempt.as_ref().map_or("", |a| a.store_path.as_str())
    }

    /// "Last eviction: 3 paths (1.2 MiB) at 2026-11-30 10:00 UTC".
    fn describe(reclaim: &Reclaim) -> String {
        let at = reclaim.at.format("%Y-%m-%d %H:%M UTC");
        let bytes = human_bytes(reclaim.bytes.max(0) as u64);
        match reclaim.kind.as_str() {
            "eviction" => format!("Last eviction: {} ({bytes}) at {at}", count(reclaim.paths, "path", "paths")),
            "retention" => {
                format!("Last retention run: {} ({bytes}) at {at}", count(reclaim.paths, "unused path", "unused paths"))
            }
            "gc" => {
                let objects = count(reclaim.objects, "object", "objects");
                format!("Last garbage collection (all caches): {objects} ({bytes}) at {at}")
            }
            other => format!("{other}: {} at {at}", count(reclaim.paths, "path", "paths")),
        }
    }
}

#[derive(Deserialize)]
pub struct PinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pin: String,
    #[serde(default)]
    store_path: String,
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The user and the cache, if they may push to it; the response to send otherwise.
async fn pushable(state: &Arc<AppState>, req: &Request, name: &str, csrf: &str) -> Result<(User, Cache), Response> {
    let user = signed_in_form(state, req, csrf).await?;
    match readable(state, &user, name).await {
        Ok(Some((cache, access, _))) if access >= Access::Push => Ok((user, cache)),
        Ok(Some(_)) => {
            let text = "Pins need the right to push to this cache.";
            Err(message(state, req, Some(&user), StatusCode::FORBIDDEN, "Not allowed", text))
        }
        Ok(None) => Err(not_found(state, req, &user, name)),
        Err(e) => Err(unavailable(state, req, &user, e)),
    }
}

#[handler]
pub async fn pin(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    Form(form): Form<PinForm>,
) -> Response {
    let (user, cache) = match pushable(&state, req, &name, &form.csrf).await {
        Ok(found) => found,
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
    Form(form): Form<CsrfForm>,
) -> Response {
    let (user, cache) = match pushable(&state, req, &name, &form.csrf).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    match pins::unpin(&state.db, &cache, &pin_name).await {
        Ok(()) | Err(pins::PinError::NoSuchPin { .. }) => {
            done(&state, &format!("/caches/{name}#storage"), &format!("Pin {pin_name} removed."))
        }
        Err(pins::PinError::Db(e)) => unavailable(&state, req, &user, e),
        Err(e) => message(&state, req, Some(&user), StatusCode::UNPROCESSABLE_ENTITY, "Not removed", &e.to_string()),
    }
}
