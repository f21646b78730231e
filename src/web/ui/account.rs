//! The account page: change your name and password.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::extract::{CheckedForm, SignedIn, carries_csrf};
use super::{FormError, Layout, SESSION_COOKIE, cookie, done, render, unavailable};
use crate::db::models::User;
use crate::db::{is_unique_violation, users};
use crate::services::auth::hash_token;
use crate::services::passwords;
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
    let name = form.name.trim().to_string();
    if let Some(error) = crate::services::display_name_error(&name) {
        return page(&state, req, &user, form.name, FormError::new("name", error));
    }
    let new_hash = if form.new_password.is_empty() {
        None
    } else {
        let current_ok = passwords::verify_async(&form.current_password, user.password_hash.as_deref()).await;
        if !current_ok {
            return page(
                &state,
                req,
                &user,
                name,
                FormError::new("current_password", "This is not your current password."),
            );
        }
        if form.new_password.chars().count() < passwords::MIN_LENGTH {
            let text = format!("Use at least {} characters.", passwords::MIN_LENGTH);
            return page(&state, req, &user, name, FormError::new("new_password", text));
        }
        Some(passwords::hash_async(&form.new_password).await)
    };
    let (id, new_name) = (user.id, name.clone());
    let changes_password = new_hash.is_some();
    let this_session = cookie(req, SESSION_COOKIE).map(|token| hash_token(&token)).unwrap_or_default();
    let saved = state
        .db
        .write(move |c| {
            users::update_account(c, id, &new_name, new_hash.as_deref())?;
            if changes_password {
                // A reset link mailed earlier must not undo the password just chosen, and
                // whoever is signed in elsewhere (perhaps with the old password) is signed out.
                crate::db::mail::retire_links(c, id, crate::db::mail::LinkPurpose::Reset)?;
                crate::db::sessions::delete_others(c, id, &this_session)?;
            }
            Ok(())
        })
        .await;
    match saved {
        Ok(()) if changes_password => {
            done(&state, "/account", "Saved. Your new password is in force; your other sessions were signed out.")
        }
        Ok(()) => done(&state, "/account", "Saved."),
        Err(e) if is_unique_violation(&e) => {
            page(&state, req, &user, name, FormError::new("name", "Another user has this name."))
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(AccountForm);
