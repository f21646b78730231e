//! Users (administrators only): list, create, delete; the last administrator stays.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Form, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::{
    CsrfOnly, FormError, Layout, message, redirect, render, signed_in_admin, signed_in_admin_form, unavailable,
};
use crate::db::models::User;
use crate::db::{groups, is_refused_rollback, is_unique_violation, users};
use crate::services::mail::{self, SmtpSettings};
use crate::services::passwords;
use crate::services::user_links::{self, LinkError};
use crate::web::AppState;

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<User>,
    name: String,
    email: String,
    error: FormError,
    notice: Option<String>,
    invite_days: i64,
}

const REFUSAL: &str = "Only administrators manage users.";

async fn page(state: &AppState, req: &Request, user: &User, name: String, email: String, error: FormError) -> Response {
    page_with_notice(state, req, user, name, email, error, None).await
}

async fn page_with_notice(
    state: &AppState,
    req: &Request,
    user: &User,
    name: String,
    email: String,
    error: FormError,
    notice: Option<String>,
) -> Response {
    match state.db.read(users::list).await {
        Ok(all) => {
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let invite_days = crate::services::user_links::INVITE_LIFETIME.num_days();
            let layout = Layout::new(req, Some(user));
            let page = UsersPage { layout, users: all, name, email, error, notice, invite_days };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>) -> Response {
    match signed_in_admin(&state, req, REFUSAL).await {
        Ok(user) => page(&state, req, &user, String::new(), String::new(), FormError::default()).await,
        Err(response) => response,
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

#[handler]
pub async fn create(req: &Request, state: Data<&Arc<AppState>>, Form(form): Form<CreateForm>) -> Response {
    let user = match signed_in_admin_form(&state, req, &form.csrf, REFUSAL).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let (name, email) = (form.name.trim().to_string(), form.email.trim().to_ascii_lowercase());
    let error = if let Some(error) = crate::services::display_name_error(&name) {
        FormError::new("name", error)
    } else if !email.contains('@') {
        FormError::new("email", "Enter a valid email address.")
    } else if form.password.chars().count() < passwords::MIN_LENGTH {
        FormError::new("password", format!("Use at least {} characters.", passwords::MIN_LENGTH))
    } else {
        FormError::default()
    };
    if error.is_some() {
        return page(&state, req, &user, form.name, form.email, error).await;
    }
    let (hash, admin) = (passwords::hash_async(&form.password).await, form.admin.is_some());
    let (n, e) = (name.clone(), email.clone());
    let created = state
        .db
        .write(move |c| users::create_with_password(c, users::NewIdentity { login: &e, name: &n }, &e, &hash, admin));
    match created.await {
        Ok(_) => redirect("/users"),
        Err(e) if is_unique_violation(&e) => {
            page(&state, req, &user, name, email, FormError::new("name", "A user with this name or email exists."))
                .await
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
/// The create form without a password: the invited person chooses it.
pub async fn invite(req: &Request, state: Data<&Arc<AppState>>, Form(form): Form<CreateForm>) -> Response {
    let user = match signed_in_admin_form(&state, req, &form.csrf, REFUSAL).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let smtp = match smtp_settings(&state, req, &user).await {
        Ok(smtp) => smtp,
        Err(response) => return response,
    };
    let invited = user_links::invite(
        &state.db,
        smtp.as_ref(),
        &state.config.site_url,
        &user.name,
        &form.name,
        &form.email,
        form.admin.is_some(),
    )
    .await;
    invitation_page(&state, req, &user, invited, "Invitation sent to").await
}

/// The mail settings in force, or the page saying the database failed.
async fn smtp_settings(state: &AppState, req: &Request, user: &User) -> Result<Option<SmtpSettings>, Response> {
    match mail::current(&state.db, state.config.smtp.as_ref()).await {
        Ok(current) => Ok(current.map(|(settings, _)| settings)),
        Err(e) => Err(unavailable(state, req, user, e)),
    }
}

/// The users page after an invitation: a notice, or the error at the invite form.
async fn invitation_page(
    state: &AppState,
    req: &Request,
    user: &User,
    result: Result<User, LinkError>,
    done: &str,
) -> Response {
    let (name, email) = (String::new(), String::new());
    match result {
        Ok(invited) => {
            let note = format!("{done} {}.", invited.email.unwrap_or_default());
            page_with_notice(state, req, user, name, email, FormError::default(), Some(note)).await
        }
        Err(LinkError::Db(e)) => unavailable(state, req, user, e),
        Err(e) => page(state, req, user, name, email, FormError::new("invite", e.to_string())).await,
    }
}

#[handler]
pub async fn reinvite(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let user = match signed_in_admin_form(&state, req, &form.csrf, REFUSAL).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    let smtp = match smtp_settings(&state, req, &user).await {
        Ok(smtp) => smtp,
        Err(response) => return response,
    };
    let sent = user_links::reinvite(&state.db, smtp.as_ref(), &state.config.site_url, &user.name, id).await;
    invitation_page(&state, req, &user, sent, "Invitation sent again to").await
}

#[handler]
pub async fn delete(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let user = match signed_in_admin_form(&state, req, &form.csrf, REFUSAL).await {
        Ok(user) => user,
        Err(response) => return response,
    };
    match state.db.write(move |c| groups::keeping_an_administrator(c, |c| users::delete(c, id))).await {
        Ok(()) => {
            state.hot.forget_rights();
            redirect("/users")
        }
        Err(e) if is_refused_rollback(&e) => message(
            &state,
            req,
            Some(&user),
            StatusCode::CONFLICT,
            "Not deleted",
            "This is the last administrator. Make someone else an administrator first.",
        ),
        Err(e) => unavailable(&state, req, &user, e),
    }
}
