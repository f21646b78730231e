//! A cache's settings (visibility, priority, keys) and its danger zone (clear, delete).

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Form, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::caches::{not_found, readable, validate_settings};
use super::{FormError, Layout, csrf_refusal, message, redirect, render, signed_in, unavailable};
use crate::db::browse;
use crate::db::models::{Cache, User};
use crate::services::access::Access;
use crate::services::push::delete_stored;
use crate::web::AppState;
use hibernation::format::gib;

#[derive(Template)]
#[template(path = "cache_settings.html")]
struct SettingsPage {
    layout: Layout,
    cache: Cache,
    is_public: bool,
    priority: String,
    quota: String,
    keys: String,
    can_delete: bool,
    error: FormError,
}

/// The signed-in user and the cache, when the user may change it.
async fn editable(state: &Arc<AppState>, req: &Request, name: &str) -> Result<(User, Cache, Vec<String>), Response> {
    let user = signed_in(state, req).await?;
    match readable(state, &user, name).await {
        Ok(Some((cache, Access::Push, keys))) => Ok((user, cache, keys)),
        Ok(Some(_)) => Err(message(
            state,
            req,
            Some(&user),
            StatusCode::FORBIDDEN,
            "Not allowed",
            "You may not change this cache.",
        )),
        Ok(None) => Err(not_found(state, req, &user, name)),
        Err(e) => Err(unavailable(state, req, &user, e)),
    }
}

#[handler]
pub async fn show(req: &Request, state: Data<&Arc<AppState>>, Path(name): Path<String>) -> Response {
    let (user, cache, keys) = match editable(&state, req, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let page = SettingsPage {
        layout: Layout::new(req, Some(&user)),
        is_public: cache.is_public,
        priority: cache.priority.to_string(),
        quota: cache.quota_bytes.map(|q| gib(q.max(0) as u64).trim_end_matches(" GiB").to_string()).unwrap_or_default(),
        keys: keys.join("\n"),
        can_delete: user.is_admin,
        cache,
        error: FormError::default(),
    };
    render(&state, StatusCode::OK, &page.layout, &page)
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    public: Option<String>,
    #[serde(default)]
    priority: String,
    #[serde(default)]
    quota: String,
    #[serde(default)]
    keys: String,
}

#[handler]
pub async fn update(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Response {
    let (user, cache, _) = match editable(&state, req, &name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if let Some(refused) = csrf_refusal(&state, req, Some(&user), &form.csrf) {
        return refused;
    }
    let settings = match validate_settings(form.public.is_some(), &form.priority, &form.quota, &form.keys) {
        Ok(valid) => valid,
        Err(error) => {
            let page = SettingsPage {
                layout: Layout::new(req, Some(&user)),
                is_public: form.public.is_some(),
                priority: form.priority,
                quota: form.quota,
                keys: form.keys,
                can_delete: user.is_admin,
                cache,
                error,
            };
            return render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page.layout, &page);
        }
    };
    let id = cache.id;
    match state.db.write(move |c| browse::update_cache(c, id, &settings)).await {
        Ok(()) => {
            state.hot.forget_cache(cache.id, &cache.name);
            redirect(&format!("/caches/{}", cache.name))
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
    /// The cache name typed again, so a stray click cannot destroy anything.
    #[serde(default)]
    confirm: String,
}

async fn destroy(state: &Arc<AppState>, req: &Request, name: &str, form: ConfirmForm, whole_cache: bool) -> Response {
    let (user, cache, _) = match editable(state, req, name).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if let Some(refused) = csrf_refusal(state, req, Some(&user), &form.csrf) {
        return refused;
    }
    if whole_cache && !user.is_admin {
        return message(
            state,
            req,
            Some(&user),
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Only administrators delete caches.",
        );
    }
    if form.confirm.trim() != cache.name {
        let text = format!("Type the cache name ({}) to confirm. Nothing was changed.", cache.name);
        return message(state, req, Some(&user), StatusCode::UNPROCESSABLE_ENTITY, "Not confirmed", &text);
    }
    let id = cache.id;
    let result = state
        .db
        .write(move |c| if whole_cache { browse::delete_cache(c, id) } else { browse::clear_cache(c, id) })
        .await;
    match result {
        Ok(keys) => {
            state.hot.forget_cache(cache.id, &cache.name);
            for key in keys {
                delete_stored(&state.storage, &key).await;
            }
            let back = if whole_cache { "/caches".to_string() } else { format!("/caches/{}", cache.name) };
            redirect(&back)
        }
        Err(e) => unavailable(state, req, &user, e),
    }
}

#[handler]
pub async fn clear(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    destroy(&state, req, &name, form, false).await
}

#[handler]
pub async fn delete_cache(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(name): Path<String>,
    Form(form): Form<ConfirmForm>,
) -> Response {
    destroy(&state, req, &name, form, true).await
}
