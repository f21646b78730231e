//! Pages behind mailed links, open without a session: accepting an invitation, asking for
//! a password reset, and choosing a new password.

use std::sync::Arc;

use askama::Template;
use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::db::mail::LinkPurpose;
use crate::db::models::User;
use crate::services::{identity::passwords, identity::sessions, identity::user_links};
use crate::web::AppState;
use crate::web::ui::extract::{AnonymousForm, carries_csrf};
use crate::web::ui::{Failure, Layout, message, redirect, render, session_cookie};

#[derive(Template)]
#[template(path = "set_password.html")]
struct SetPasswordPage {
    layout: Layout,
    heading: &'static str,
    name: String,
    action: String,
    min_length: usize,
    error: Option<String>,
}

fn heading(purpose: LinkPurpose) -> &'static str {
    match purpose {
        LinkPurpose::Invite => "Welcome to Hibernation",
        LinkPurpose::Reset => "Choose a new password",
    }
}

fn action(purpose: LinkPurpose, secret: &str) -> String {
    match purpose {
        LinkPurpose::Invite => format!("/invite/{secret}"),
        LinkPurpose::Reset => format!("/reset/{secret}"),
    }
}

/// Password resets are off when single sign-on is the only way in.
fn sso_only(state: &AppState, req: &Request) -> Response {
    let text = "Passwords are not used here: sign in with single sign-on, where your password is reset too.".into();
    Failure::Forbidden(text).page(state, req, None)
}

fn invalid_link(state: &AppState, req: &Request) -> Response {
    Failure::LinkGone.page(state, req, None)
}

fn failure(state: &AppState, req: &Request, e: impl std::fmt::Display) -> Response {
    Failure::Unavailable(format!("mailed link: {e}")).page(state, req, None)
}

fn password_page(
    req: &Request,
    purpose: LinkPurpose,
    secret: &str,
    user: &User,
    error: Option<String>,
) -> SetPasswordPage {
    SetPasswordPage {
        layout: Layout::new(req, None),
        heading: heading(purpose),
        name: user.name.clone(),
        action: action(purpose, secret),
        min_length: passwords::MIN_LENGTH,
        error,
    }
}

async fn show(state: &AppState, req: &Request, purpose: LinkPurpose, secret: &str) -> Response {
    match user_links::valid_link(&state.db, purpose, secret).await {
        Ok(Some(user)) => {
            let page = password_page(req, purpose, secret, &user, None);
            render(state, StatusCode::OK, &page.layout, &page)
        }
        Ok(None) => invalid_link(state, req),
        Err(e) => failure(state, req, e),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn complete(state: &AppState, req: &Request, purpose: LinkPurpose, secret: &str, form: PasswordForm) -> Response {
    match user_links::complete(&state.db, purpose, secret, &form.password).await {
        // An accepted invitation signs the person in; after a reset they sign in anew.
        Ok(Some(user)) if purpose == LinkPurpose::Invite => match sessions::new_session(&state.db, user.id).await {
            Ok(token) => {
                let mut response = redirect("/");
                response.headers_mut().append(header::SET_COOKIE, session_cookie(state, &token).parse().unwrap());
                response
            }
            Err(e) => failure(state, req, e),
        },
        Ok(Some(_)) => message(
            state,
            req,
            None,
            StatusCode::OK,
            "Password changed",
            "Sign in with your new password. Every other session of your account was signed out; API tokens keep working, so revoke any you do not recognise on the API tokens page.",
        ),
        Ok(None) => invalid_link(state, req),
        Err(user_links::LinkError::Field(_, text)) => match user_links::valid_link(&state.db, purpose, secret).await {
            Ok(Some(user)) => {
                let page = password_page(req, purpose, secret, &user, Some(text));
                render(state, StatusCode::UNPROCESSABLE_ENTITY, &page.layout, &page)
            }
            Ok(None) => invalid_link(state, req),
            Err(e) => failure(state, req, e),
        },
        Err(e) => failure(state, req, e),
    }
}

#[handler]
pub async fn invite_page(req: &Request, state: Data<&Arc<AppState>>, Path(secret): Path<String>) -> Response {
    show(&state, req, LinkPurpose::Invite, &secret).await
}

#[handler]
pub async fn accept_invite(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(secret): Path<String>,
    AnonymousForm(form): AnonymousForm<PasswordForm>,
) -> Response {
    complete(&state, req, LinkPurpose::Invite, &secret, form).await
}

#[handler]
pub async fn reset_page(req: &Request, state: Data<&Arc<AppState>>, Path(secret): Path<String>) -> Response {
    show(&state, req, LinkPurpose::Reset, &secret).await
}

#[handler]
pub async fn reset_password(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(secret): Path<String>,
    AnonymousForm(form): AnonymousForm<PasswordForm>,
) -> Response {
    complete(&state, req, LinkPurpose::Reset, &secret, form).await
}

#[derive(Template)]
#[template(path = "forgot_password.html")]
struct ForgotPage {
    layout: Layout,
    sent: bool,
    /// No mail server is set up: no reset link can be sent, and the page says so.
    no_mail: bool,
}

/// Whether mail can be sent (from the environment or the settings page).
async fn mail_configured(state: &AppState) -> bool {
    matches!(crate::services::mail::current(&state.db, state.site.smtp.as_ref()).await, Ok(Some(_)))
}

#[handler]
pub async fn forgot_page(req: &Request, state: Data<&Arc<AppState>>) -> Response {
    if super::auth::passwords_off(&state).await {
        return sso_only(&state, req);
    }
    let no_mail = !mail_configured(&state).await;
    let page = ForgotPage { layout: Layout::new(req, None), sent: false, no_mail };
    render(&state, StatusCode::OK, &page.layout, &page)
}

#[derive(Deserialize)]
pub struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

/// Always the same answer, sent before any lookup or mail, so that neither the text nor
/// the timing tells whether an address has an account.
#[handler]
pub async fn forgot(
    req: &Request,
    state: Data<&Arc<AppState>>,
    AnonymousForm(form): AnonymousForm<ForgotForm>,
) -> Response {
    if super::auth::passwords_off(&state).await {
        return sso_only(&state, req);
    }
    let worker = state.clone();
    let peer = crate::web::client_address::client_address(&state.site.trusted_proxies, req);
    tokio::spawn(async move {
        let smtp = match crate::services::mail::current(&worker.db, worker.site.smtp.as_ref()).await {
            Ok(current) => current.map(|(settings, _)| settings),
            Err(e) => return tracing::warn!("password reset: {e}"),
        };
        user_links::request_reset(&worker.db, smtp.as_ref(), &worker.site.url, &peer, &form.email).await;
    });
    // Whether mail is set up is no secret (the form says so): only accounts are.
    let no_mail = !mail_configured(&state).await;
    let page = ForgotPage { layout: Layout::new(req, None), sent: true, no_mail };
    render(&state, StatusCode::OK, &page.layout, &page)
}

carries_csrf!(PasswordForm, ForgotForm);
