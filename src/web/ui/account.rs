//! The account page: change your name and password.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::extract::{CheckedForm, SignedIn, carries_csrf};
use super::{Failure, FormError, Layout, SESSION_COOKIE, cookie, done, render, unavailable};
use crate::db::models::User;
use crate::services::accounts::{self, AccountChange, AccountError};
use crate::services::auth::hash_token;
use crate::web::AppState;

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    name: String,
    email: String,
    login: String,
    error: FormError,
}

fn page(state: &AppState, req: &Request, user: &User, name: String, error: FormError) -> Response {
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let email = user.email.clone().unwrap_or_default();
    let login = user.login.clone();
    let page = AccountPage { layout: Layout::new(req, Some(user)), name, email, login, error };
    render(state, status, &page.layout, &page)
}

#[handler]
pub async fn show(req: &Request, state: Data<&Arc<AppState>>, SignedIn(user): SignedIn) -> Response {
    page(&state, req, &user, user.name.clone(), FormError::default())
}

#[derive(Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

#[handler]
pub async fn update(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<AccountForm>,
) -> Response {
    let change = AccountChange {
        name: &form.name,
        current_password: &form.current_password,
        new_password: &form.new_password,
        this_session: cookie(req, SESSION_COOKIE).map(|token| hash_token(&token)).unwrap_or_default(),
    };
    match accounts::update(&state.db, &user, change).await {
        Ok(true) => {
            done(&state, "/account", "Saved. Your new password is in force; your other sessions were signed out.")
        }
        Ok(false) => done(&state, "/account", "Saved."),
        Err(AccountError::Field(name, text)) => page(&state, req, &user, form.name, FormError::new(name, text)),
        Err(AccountError::Db(e)) => unavailable(&state, req, &user, e),
        Err(e @ AccountError::LastAdministrator) => {
            Failure::Conflict { heading: "Not changed", text: e.to_string() }.page(&state, req, Some(&user))
        }
    }
}

carries_csrf!(AccountForm);
