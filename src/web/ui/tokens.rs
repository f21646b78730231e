//! API tokens: create (the secret is shown once), list with last use, revoke.

use std::sync::Arc;

use askama::Template;
use chrono::Duration;
use poem::http::StatusCode;
use poem::web::{Data, Form, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::{CsrfOnly, Layout, redirect, render, signed_in, signed_in_form, unavailable};
use crate::db::models::{ApiToken, User};
use crate::db::users::TokenScope;
use crate::db::{caches, is_unique_violation, now, users};
use crate::services::access::readable_cache_ids;
use crate::services::access::{Access, access_to};
use crate::services::auth::Caller;
use crate::services::auth::issue_token;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<ApiToken>,
    created: Option<String>,
    name: String,
    error: Option<String>,
    /// Caches the user can scope a token to.
    caches: Vec<String>,
}

impl TokensPage {
    fn status(&self, token: &ApiToken) -> &'static str {
        if token.revoked_at.is_some() {
            "revoked"
        } else if token.expires_at.is_some_and(|e| e <= now()) {
            "expired"
        } else {
            "active"
        }
    }
}

async fn page(
    state: &AppState,
    req: &Request,
    user: &User,
    created: Option<String>,
    name: String,
    error: Option<String>,
) -> Response {
    let (id, caller) = (user.id, Caller::session(user));
    let loaded = state
        .db
        .read(move |c| {
            let ids = readable_cache_ids(c, &caller)?;
            let caches = crate::db::browse::caches_by_ids(c, ids.as_deref())?.into_iter().map(|c| c.name).collect();
            Ok((users::tokens_of(c, id)?, caches))
        })
        .await;
    match loaded {
        Ok((tokens, caches)) => {
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let page = TokensPage { layout: Layout::new(req, Some(user)), tokens, created, name, error, caches };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>) -> Response {
    match signed_in(&state, req).await {
        Ok(user) => page(&state, req, &user, None, String::new(), None).await,
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// Days until expiry; 0 means never.
    #[serde(default)]
    days: i64,
    /// One cache the token is limited to; empty for all of the user's caches.
    #[serde(default)]
    cache: String,
    /// "push" or "read".
    #[serde(default)]
    permission: String,
}

#[handler]
pub async fn create(req: &Request, state: Data<&Arc<AppState>>, Form(form): Form<CreateForm>) -> Response {
    let user = match signed_in_form(&state, req, &form.csrf).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let name = form.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return page(&state, req, &user, None, form.name, Some("Enter a name of 1 to 100 characters.".into())).await;
    }
    if !(0..=3650).contains(&form.days) {
        return page(&state, req, &user, None, form.name, Some("Choose an expiry.".into())).await;
    }
    let expires_at = (form.days > 0).then(|| now() + Duration::days(form.days));
    let read_only = form.permission == "read";
    let (id, lookup, cache_name) = (user.id, name.clone(), form.cache.trim().to_string());
    let caller = crate::services::auth::Caller::session(&user);
    let created = state
        .db
        .write(move |c| {
            let cache_ids = if cache_name.is_empty() {
                None
            } else {
                // Only a cache the user can see may scope a token.
                match caches::find_by_name(c, &cache_name)? {
                    Some(cache) if access_to(c, Some(&caller), &cache)? != Access::None => Some(vec![cache.id]),
                    _ => return Ok(None),
                }
            };
            issue_token(c, id, &lookup, expires_at, &TokenScope { cache_ids, read_only }).map(Some)
        })
        .await;
    let created = match created {
        Ok(None) => return page(&state, req, &user, None, name, Some("Choose one of your caches.".into())).await,
        Ok(Some(secret)) => Ok(secret),
        Err(e) => Err(e),
    };
    match created {
        Ok(secret) => page(&state, req, &user, Some(secret), String::new(), None).await,
        Err(e) if is_unique_violation(&e) => {
            page(&state, req, &user, None, name, Some("You already have a token with this name.".into())).await
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn revoke(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(token_id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let user = match signed_in_form(&state, req, &form.csrf).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let id = user.id;
    match state.db.write(move |c| users::revoke_token_by_id(c, id, token_id)).await {
        Ok(_) => redirect("/tokens"),
        Err(e) => unavailable(&state, req, &user, e),
    }
}
