//! API tokens: create (the secret is shown once), list with last use, revoke.

use std::sync::Arc;

use askama::Template;
use chrono::{Duration, NaiveDateTime};
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::extract::{CheckedForm, SignedIn, carries_csrf};
use super::{CsrfOnly, Layout, done, render, unavailable};
use crate::db::models::{ApiToken, User};
use crate::db::users::TokenScope;
use crate::db::{AnyConnection, DbResult, caches, is_unique_violation, now, users};
use crate::services::access::readable_cache_ids;
use crate::services::access::{Access, access_to};
use crate::services::auth::{Caller, issue_token};
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
    /// Cache names of each cache-scoped token, by token id.
    scopes: std::collections::HashMap<i64, Vec<String>>,
}

impl TokensPage {
    /// Which caches a token reaches.
    fn scope(&self, token: &ApiToken) -> String {
        if !token.cache_scoped {
            return "all your caches".to_string();
        }
        match self.scopes.get(&token.id) {
            Some(names) if !names.is_empty() => names.join(", "),
            _ => "none (its caches were deleted)".to_string(),
        }
    }

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
    let (id, owner) = (user.id, user.clone());
    let loaded = state
        .db
        .read(move |c| Ok((users::tokens_of(c, id)?, scopable_caches(c, &owner)?, users::token_scopes_of(c, id)?)))
        .await;
    match loaded {
        Ok((tokens, caches, scopes)) => {
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let page =
                TokensPage { layout: Layout::new(req, Some(user)), tokens, created, name, error, caches, scopes };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>, SignedIn(user): SignedIn) -> Response {
    page(&state, req, &user, None, String::new(), None).await
}

/// The expiry and scope fields of a new token (the tokens page and the CLI login page).
#[derive(Deserialize)]
pub struct TokenChoice {
    /// Days until expiry; 0 (or nothing) means never. Text, because a flattened form field
    /// reaches serde as a string.
    #[serde(default)]
    pub days: String,
    /// One cache the token is limited to; empty for all of the user's caches.
    #[serde(default)]
    pub cache: String,
    /// "push" or "read".
    #[serde(default)]
    pub permission: String,
}

/// A checked [`TokenChoice`].
pub struct ChosenScope {
    pub cache_id: Option<i64>,
    pub read_only: bool,
    pub expires_at: Option<NaiveDateTime>,
}

impl TokenChoice {
    /// Checks the choice for `caller`; the error is a message for the form.
    pub fn resolve(&self, conn: &mut AnyConnection, caller: &Caller) -> DbResult<Result<ChosenScope, &'static str>> {
        let days = match self.days.trim() {
            "" => 0,
            text => text.parse::<i64>().unwrap_or(-1),
        };
        if !(0..=3650).contains(&days) {
            return Ok(Err("Choose an expiry."));
        }
        let cache_name = self.cache.trim();
        let cache_id = if cache_name.is_empty() {
            None
        } else {
            // Only a cache the user can see may scope a token.
            match caches::find_by_name(conn, cache_name)? {
                Some(cache) if access_to(conn, Some(caller), &cache)? != Access::None => Some(cache.id),
                _ => return Ok(Err("Choose one of your caches.")),
            }
        };
        Ok(Ok(ChosenScope {
            cache_id,
            read_only: self.permission == "read",
            expires_at: (days > 0).then(|| now() + Duration::days(days)),
        }))
    }
}

/// The names of the caches `user` can scope a token to.
pub fn scopable_caches(conn: &mut AnyConnection, user: &User) -> DbResult<Vec<String>> {
    let ids = readable_cache_ids(conn, &Caller::session(user))?;
    Ok(crate::db::browse::caches_by_ids(conn, ids.as_deref())?.into_iter().map(|c| c.name).collect())
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(flatten)]
    choice: TokenChoice,
}

#[handler]
pub async fn create(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<CreateForm>,
) -> Response {
    let name = form.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return page(&state, req, &user, None, form.name, Some("Enter a name of 1 to 100 characters.".into())).await;
    }
    let (id, lookup, choice) = (user.id, name.clone(), form.choice);
    let caller = Caller::session(&user);
    let created = state
        .db
        .write(move |c| {
            let chosen = match choice.resolve(c, &caller)? {
                Ok(chosen) => chosen,
                Err(refusal) => return Ok(Err(refusal)),
            };
            let scope = TokenScope { cache_ids: chosen.cache_id.map(|id| vec![id]), read_only: chosen.read_only };
            issue_token(c, id, &lookup, chosen.expires_at, &scope).map(Ok)
        })
        .await;
    let created = match created {
        Ok(Err(refusal)) => return page(&state, req, &user, None, name, Some(refusal.into())).await,
        Ok(Ok(secret)) => Ok(secret),
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
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    let id = user.id;
    match state.db.write(move |c| users::revoke_token_by_id(c, id, token_id)).await {
        Ok(_) => {
            state.hot.forget_rights();
            done(&state, "/tokens", "Token revoked: anything using it stops working now.")
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(CreateForm);
