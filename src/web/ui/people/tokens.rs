//! API tokens: create (the secret is shown once), list with scope, expiry and last use,
//! rename and change the expiry, regenerate (a new secret, shown once), revoke, and delete
//! the ones that no longer work.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::db::ids::TokenId;
use crate::db::models::{ApiToken, User};
use crate::db::now;
use crate::services::identity::tokens::{self, TokenChoice, TokenError, TokenList};
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, SignedIn, carries_csrf};
use crate::web::ui::{CsrfOnly, Layout, done, render, unavailable};

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: Layout,
    tokens: Vec<ApiToken>,
    /// A secret to show once: of a new token, or a regenerated one.
    created: Option<Secret>,
    name: String,
    error: Option<String>,
    /// An edit that was refused: the token and what to change.
    edit_error: Option<(TokenId, String)>,
    /// Caches the user can scope a token to.
    caches: Vec<String>,
    /// Cache names of each cache-scoped token, by token id.
    scopes: std::collections::HashMap<TokenId, Vec<String>>,
}

/// A secret shown once, and whose it is.
struct Secret {
    value: String,
    /// "Your new token", or "New secret for ci".
    heading: String,
}

impl TokensPage {
    fn edit_error_for(&self, token: &ApiToken) -> Option<&str> {
        self.edit_error.as_ref().filter(|(id, _)| *id == token.id).map(|(_, e)| e.as_str())
    }

    /// Tokens that no longer work (revoked or expired), which one action deletes.
    fn ended_count(&self) -> usize {
        self.tokens.iter().filter(|t| self.status(t) != "active").count()
    }

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

/// What the page shows beside the list: a secret once, a refused form with its message.
#[derive(Default)]
struct Shown {
    created: Option<Secret>,
    name: String,
    error: Option<String>,
    edit_error: Option<(TokenId, String)>,
}

async fn page(state: &AppState, req: &Request, user: &User, shown: Shown) -> Response {
    let Shown { created, name, error, edit_error } = shown;
    match tokens::list(&state.db, user).await {
        Ok(TokenList { tokens, caches, scopes }) => {
            let refused = error.is_some() || edit_error.is_some();
            let status = if refused { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let layout = Layout::new(req, Some(user));
            let page = TokensPage { layout, tokens, created, name, error, edit_error, caches, scopes };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>, SignedIn(user): SignedIn) -> Response {
    page(&state, req, &user, Shown::default()).await
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
        Ok(value) => {
            let created = Some(Secret { value, heading: "Your new token".into() });
            page(&state, req, &user, Shown { created, ..Shown::default() }).await
        }
        Err(TokenError::Db(e)) => unavailable(&state, req, &user, e),
        Err(refused) => {
            page(&state, req, &user, Shown { name: form.name, error: Some(refused.to_string()), ..Shown::default() })
                .await
        }
    }
}

#[handler]
pub async fn revoke(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(token_id): Path<i64>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    match tokens::revoke(&state.db, &state.hot, user.id, TokenId(token_id)).await {
        Ok(_) => done(&state, "/tokens", "Token revoked: anything using it stops working now."),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    days: String,
}

#[handler]
pub async fn edit(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(token_id): Path<i64>,
    CheckedForm { user, form }: CheckedForm<EditForm>,
) -> Response {
    match tokens::edit(&state.db, user.id, TokenId(token_id), &form.name, &form.days).await {
        Ok(true) => done(&state, "/tokens", "Token changed."),
        Ok(false) => gone(&state, req, &user).await,
        Err(TokenError::Db(e)) => unavailable(&state, req, &user, e),
        Err(refused) => {
            let edit_error = Some((TokenId(token_id), refused.to_string()));
            page(&state, req, &user, Shown { edit_error, ..Shown::default() }).await
        }
    }
}

/// The answer to an action on a token that no longer works (revoked or expired meanwhile).
async fn gone(state: &AppState, req: &Request, user: &User) -> Response {
    let error = Some("That token no longer works: revoked or expired.".to_string());
    page(state, req, user, Shown { error, ..Shown::default() }).await
}

#[handler]
pub async fn regenerate(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(token_id): Path<i64>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    match tokens::regenerate(&state.db, &state.hot, user.id, TokenId(token_id)).await {
        Ok(Some((name, value))) => {
            let heading = format!("New secret for {name}: the old one stopped working");
            page(&state, req, &user, Shown { created: Some(Secret { value, heading }), ..Shown::default() }).await
        }
        Ok(None) => gone(&state, req, &user).await,
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn delete_ended(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    match tokens::delete_ended(&state.db, user.id).await {
        Ok(n) => done(
            &state,
            "/tokens",
            &format!("Deleted {}.", hibernation::human::count(n as i64, "ended token", "ended tokens")),
        ),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(CreateForm, EditForm);
