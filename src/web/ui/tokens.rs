//! API tokens: create (the secret is shown once), list with last use, revoke.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::extract::{CheckedForm, SignedIn, carries_csrf};
use super::{CsrfOnly, Layout, done, render, unavailable};
use crate::db::ids::{TokenId, UserId};
use crate::db::models::{ApiToken, User};
use crate::db::now;
use crate::services::tokens::{self, TokenChoice, TokenError, TokenList};
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
    match tokens::list(&state.db, user).await {
        Ok(TokenList { tokens, caches, scopes }) => {
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
    match tokens::create(&state.db, &user, &form.name, form.choice).await {
        Ok(secret) => page(&state, req, &user, Some(secret), String::new(), None).await,
        Err(TokenError::Db(e)) => unavailable(&state, req, &user, e),
        Err(refused) => page(&state, req, &user, None, form.name, Some(refused.to_string())).await,
    }
}

#[handler]
pub async fn revoke(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(token_id): Path<i64>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    match tokens::revoke(&state.db, &state.hot, UserId(user.id), TokenId(token_id)).await {
        Ok(_) => done(&state, "/tokens", "Token revoked: anything using it stops working now."),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(CreateForm);
