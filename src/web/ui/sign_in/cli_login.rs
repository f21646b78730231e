//! The page where a signed-in user approves (or denies) a `hibernation login` request by
//! typing the code the CLI shows, and chooses the scope of the token the CLI receives.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::db::models::{CliLogin, User};
use crate::services::identity::cli_login;
use crate::services::identity::tokens::{self, TokenChoice, TokenError};
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, SignedIn, carries_csrf};
use crate::web::ui::{Layout, message, render, unavailable};

#[derive(Template)]
#[template(path = "cli_login.html")]
struct ApprovalPage {
    layout: Layout,
    caches: Vec<String>,
    /// The request the typed code belongs to: the second step shows it before approving.
    request: Option<RequestView>,
    /// What was typed into the code field.
    code: String,
    error: Option<String>,
}

/// What the user is about to approve, so a request someone else started (a phishing link
/// with their code) can be told from one's own.
struct RequestView {
    code: String,
    client_name: String,
    address: String,
    /// "2026-11-30 12:00 UTC (3 minutes ago)".
    requested: String,
    expires_in_minutes: i64,
}

impl RequestView {
    fn of(request: CliLogin) -> Self {
        let age = (crate::db::now() - request.created_at).num_minutes().max(0);
        let ago = match age {
            0 => "just now".to_string(),
            n => format!("{} ago", hibernation::human::count(n, "minute", "minutes")),
        };
        Self {
            code: request.code,
            client_name: request.client_name,
            address: request.peer,
            requested: format!("{} UTC ({ago})", request.created_at.format("%Y-%m-%d %H:%M")),
            expires_in_minutes: (request.expires_at - crate::db::now()).num_minutes().max(0) + 1,
        }
    }
}

async fn approval_page(
    state: &AppState,
    req: &Request,
    user: &User,
    request: Option<CliLogin>,
    code: String,
    error: Option<String>,
) -> Response {
    let caches = match tokens::scopable_caches(&state.db, user).await {
        Ok(caches) => caches,
        Err(e) => return unavailable(state, req, user, e),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let request = request.map(RequestView::of);
    let page = ApprovalPage { layout: Layout::new(req, Some(user)), caches, request, code, error };
    render(state, status, &page.layout, &page)
}

const UNKNOWN_CODE: &str =
    "No open login request has this code. Check the code in your terminal, or run `hibernation login` again.";

#[handler]
pub async fn show(req: &Request, state: Data<&Arc<AppState>>, SignedIn(user): SignedIn) -> Response {
    approval_page(&state, req, &user, None, String::new(), None).await
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
}

/// The first step: the typed code, answered with what it would approve.
#[handler]
pub async fn check(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<CodeForm>,
) -> Response {
    match cli_login::pending(&state.db, &form.code).await {
        Ok(Some(request)) => approval_page(&state, req, &user, Some(request), form.code, None).await,
        Ok(None) => approval_page(&state, req, &user, None, form.code, Some(UNKNOWN_CODE.into())).await,
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[derive(Deserialize)]
pub struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    #[serde(flatten)]
    choice: TokenChoice,
}

#[handler]
pub async fn approve(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<AnswerForm>,
) -> Response {
    let chosen = match form.choice.resolve(&state.db, &user).await {
        Ok(chosen) => chosen,
        Err(TokenError::Db(e)) => return unavailable(&state, req, &user, e),
        Err(refused) => {
            let request = cli_login::pending(&state.db, &form.code).await.ok().flatten();
            return approval_page(&state, req, &user, request, form.code, Some(refused.to_string())).await;
        }
    };
    let approved =
        cli_login::approve(&state.db, &form.code, user.id, chosen.cache, !chosen.read_only, chosen.expires_at).await;
    match approved {
        Ok(Some(client_name)) => message(
            &state,
            req,
            Some(&user),
            StatusCode::OK,
            "Login approved",
            &format!(
                "{client_name} receives its token in a moment: go back to your terminal. You can revoke it on the API tokens page."
            ),
        ),
        Ok(None) => approval_page(&state, req, &user, None, form.code, Some(UNKNOWN_CODE.into())).await,
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn deny(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<AnswerForm>,
) -> Response {
    match cli_login::deny(&state.db, &form.code).await {
        Ok(true) => message(
            &state,
            req,
            Some(&user),
            StatusCode::OK,
            "Login denied",
            "The request was refused; the CLI that asked gets no token.",
        ),
        Ok(false) => approval_page(&state, req, &user, None, form.code, Some(UNKNOWN_CODE.into())).await,
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(CodeForm, AnswerForm);
