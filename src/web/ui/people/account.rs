//! The account page: change your name and password, and your email address (confirmed by
//! codes mailed to the old and the new address).

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::avatar::AvatarTag;
use crate::db::models::User;
use crate::services::identity::accounts::{self, AccountChange, AccountError};
use crate::services::identity::auth::hash_token;
use crate::services::identity::email_change::{self, ChangeRequest, Codes, EmailChangeError};
use crate::web::AppState;
use crate::web::ui::extract::{CheckedForm, SignedIn, carries_csrf};
use crate::web::ui::{CsrfOnly, FormError, Layout, SESSION_COOKIE, cookie, done, render, unavailable};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    name: String,
    email: String,
    login: String,
    has_password: bool,
    /// The user's avatar tag, large, and whether it is an uploaded picture.
    avatar: String,
    has_avatar: bool,
    /// The address a change waits to be confirmed for.
    pending_email: Option<String>,
    /// What the change-of-address form had when it was refused.
    new_email: String,
    error: FormError,
}

/// What a refused form had typed, shown again.
#[derive(Default)]
struct Typed {
    name: Option<String>,
    new_email: String,
}

async fn page(state: &AppState, req: &Request, user: &User, typed: Typed, error: FormError) -> Response {
    let pending_email = match email_change::pending(&state.db, user).await {
        Ok(pending) => pending.map(|p| p.new_email),
        Err(e) => return unavailable(state, req, user, e),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = AccountPage {
        layout: Layout::new(req, Some(user)),
        name: typed.name.unwrap_or_else(|| user.name.clone()),
        email: user.email.clone().unwrap_or_default(),
        login: user.login.clone(),
        has_password: user.password_hash.is_some(),
        avatar: user.large_avatar(),
        has_avatar: user.has_avatar,
        pending_email,
        new_email: typed.new_email,
        error,
    };
    render(state, status, &page.layout, &page)
}

#[handler]
pub async fn show(req: &Request, state: Data<&Arc<AppState>>, SignedIn(user): SignedIn) -> Response {
    page(&state, req, &user, Typed::default(), FormError::default()).await
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
        Err(AccountError::Field(name, text)) => {
            let typed = Typed { name: Some(form.name), ..Typed::default() };
            page(&state, req, &user, typed, FormError::new(name, text)).await
        }
        Err(e) => super::user_page::account_failure(&state, req, &user, e),
    }
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    new_email: String,
    #[serde(default)]
    email_password: String,
}

/// Asks for a change of address: codes go to the old and the new one.
#[handler]
pub async fn change_email(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<EmailForm>,
) -> Response {
    let smtp = match super::users::smtp_settings(&state, req, &user).await {
        Ok(smtp) => smtp,
        Err(response) => return response,
    };
    let request = ChangeRequest { new_email: &form.new_email, current_password: &form.email_password };
    match email_change::start(&state.db, smtp.as_ref(), &user, request).await {
        Ok(()) => {
            let to = match &user.email {
                Some(old) => format!("{old} and {}", form.new_email.trim().to_ascii_lowercase()),
                None => form.new_email.trim().to_ascii_lowercase(),
            };
            done(&state, "/account", &format!("Codes sent to {to}. Enter them below to change your address."))
        }
        Err(e) => email_refusal(&state, req, &user, e, form.new_email).await,
    }
}

/// The account page with the refusal of a change of address at its field.
async fn email_refusal(state: &AppState, req: &Request, user: &User, e: EmailChangeError, typed: String) -> Response {
    let typed = Typed { new_email: typed, ..Typed::default() };
    match e {
        EmailChangeError::Db(e) => unavailable(state, req, user, e),
        EmailChangeError::Field(name, text) => page(state, req, user, typed, FormError::new(name, text)).await,
        other => page(state, req, user, typed, FormError::new("new_email", other.to_string())).await,
    }
}

#[derive(Deserialize)]
pub struct CodesForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    old_code: String,
    #[serde(default)]
    new_code: String,
}

#[handler]
pub async fn confirm_email(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, form }: CheckedForm<CodesForm>,
) -> Response {
    let codes = Codes { old_code: &form.old_code, new_code: &form.new_code };
    match email_change::confirm(&state.db, &user, codes).await {
        Ok(address) => {
            done(&state, "/account", &format!("Your address is now {address}; sign in with it from now on."))
        }
        Err(e) => email_refusal(&state, req, &user, e, String::new()).await,
    }
}

#[handler]
pub async fn cancel_email(
    req: &Request,
    state: Data<&Arc<AppState>>,
    CheckedForm { user, .. }: CheckedForm<CsrfOnly>,
) -> Response {
    match email_change::cancel(&state.db, &user).await {
        Ok(()) => done(&state, "/account", "The change of address was cancelled; its codes no longer work."),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(AccountForm, EmailForm, CodesForm);
