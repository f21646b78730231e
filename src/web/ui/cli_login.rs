//! The page where a signed-in user approves (or denies) a `hibernation login` request, and
//! chooses the scope of the token the CLI receives.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Form, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::tokens::{TokenChoice, scopable_caches};
use super::{CsrfOnly, Layout, message, redirect, render, signed_in, signed_in_form, unavailable};
use crate::db::models::User;
use crate::services::auth::Caller;
use crate::services::cli_login::{self, OpenRequest, is_code};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "cli_login.html")]
struct ApprovalPage {
    layout: Layout,
    request: OpenRequest,
    caches: Vec<String>,
    error: Option<String>,
}

fn unknown(state: &AppState, req: &Request, user: &User) -> Response {
    message(
        state,
        req,
        Some(user),
        StatusCode::NOT_FOUND,
        "Login request not found",
        "This login request was already answered or has expired. Run `hibernation login` again.",
    )
}

async fn approval_page(state: &AppState, req: &Request, user: &User, code: &str, error: Option<String>) -> Response {
    if !is_code(code) {
        return unknown(state, req, user);
    }
    let request = match cli_login::find_open(&state.db, code).await {
        Ok(Some(request)) if !request.approved => request,
        Ok(_) => return unknown(state, req, user),
        Err(e) => return unavailable(state, req, user, e),
    };
    let owner = user.clone();
    let caches = match state.db.read(move |c| scopable_caches(c, &owner)).await {
        Ok(caches) => caches,
        Err(e) => return unavailable(state, req, user, e),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = ApprovalPage { layout: Layout::new(req, Some(user)), request, caches, error };
    render(state, status, &page.layout, &page)
}

#[handler]
pub async fn show(req: &Request, state: Data<&Arc<AppState>>, Path(code): Path<String>) -> Response {
    match signed_in(&state, req).await {
        Ok(user) => approval_page(&state, req, &user, &code, None).await,
        // Come back here after signing in.
        Err(_) if is_code(&code) && !crate::services::sessions::needs_setup(&state.db).await.unwrap_or(true) => {
            redirect(&format!("/sign-in?next=/cli-login/{code}"))
        }
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    choice: TokenChoice,
}

#[handler]
pub async fn approve(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(code): Path<String>,
    Form(form): Form<ApproveForm>,
) -> Response {
    let user = match signed_in_form(&state, req, &form.csrf).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let (caller, choice) = (Caller::session(&user), form.choice);
    let chosen = match state.db.read(move |c| choice.resolve(c, &caller)).await {
        Ok(Ok(chosen)) => chosen,
        Ok(Err(refusal)) => return approval_page(&state, req, &user, &code, Some(refusal.into())).await,
        Err(e) => return unavailable(&state, req, &user, e),
    };
    let approved =
        cli_login::approve(&state.db, &code, user.id, chosen.cache_id, !chosen.read_only, chosen.expires_at).await;
    match approved {
        Ok(true) => message(
            &state,
            req,
            Some(&user),
            StatusCode::OK,
            "Login approved",
            "Go back to your terminal: the CLI receives its token in a moment. You can revoke it on the API tokens page.",
        ),
        Ok(false) => unknown(&state, req, &user),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn deny(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(code): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let user = match signed_in_form(&state, req, &form.csrf).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    match cli_login::deny(&state.db, &code).await {
        Ok(true) => message(
            &state,
            req,
            Some(&user),
            StatusCode::OK,
            "Login denied",
            "The request was refused; the CLI that asked gets no token.",
        ),
        Ok(false) => unknown(&state, req, &user),
        Err(e) => unavailable(&state, req, &user, e),
    }
}
