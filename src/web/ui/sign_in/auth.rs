//! First-run setup, sign-in and sign-out.

use std::sync::Arc;

use askama::Template;
use poem::http::{StatusCode, header};
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;

use crate::services::identity::sessions::{self, FieldError, SetupError, SignInError};
use crate::web::AppState;
use crate::web::ui::extract::{AnonymousForm, carries_csrf};
use crate::web::ui::{
    CsrfOnly, Failure, FormError, Layout, SESSION_COOKIE, clear_session_cookie, cookie, redirect, render,
    session_cookie,
};

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    layout: Layout,
    /// What this server runs on, so the administrator sees it before going on.
    database: String,
    storage: String,
    /// As typed, kept when another field needs correcting.
    setup_code: String,
    name: String,
    email: String,
    error: FormError,
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    setup_code: String,
    name: String,
    email: String,
    password: String,
}

fn db_failure(state: &AppState, req: &Request, e: impl std::fmt::Display) -> Response {
    Failure::Unavailable(e.to_string()).page(state, req, None)
}

#[handler]
pub async fn setup_page(req: &Request, state: Data<&Arc<AppState>>) -> Response {
    match sessions::needs_setup(&state.db).await {
        Ok(true) => {
            let page = SetupPage {
                layout: Layout::new(req, None),
                database: state.site.database.clone(),
                storage: state.site.storage.clone(),
                setup_code: String::new(),
                name: String::new(),
                email: String::new(),
                error: FormError::default(),
            };
            render(&state, StatusCode::OK, &page.layout, &page)
        }
        Ok(false) => redirect("/"),
        Err(e) => db_failure(&state, req, e),
    }
}

#[handler]
pub async fn setup(
    req: &Request,
    state: Data<&Arc<AppState>>,
    AnonymousForm(form): AnonymousForm<SetupForm>,
) -> Response {
    match sessions::setup_admin(&state.db, &form.setup_code, &form.name, &form.email, &form.password).await {
        Ok(token) => {
            let mut response = redirect("/");
            response.headers_mut().append(header::SET_COOKIE, session_cookie(&state, &token).parse().unwrap());
            response
        }
        Err(SetupError::AlreadyDone) => redirect("/sign-in"),
        Err(SetupError::Field(FieldError { field, message })) => {
            let error = FormError::new(field, message);
            let page = SetupPage {
                layout: Layout::new(req, None),
                database: state.site.database.clone(),
                storage: state.site.storage.clone(),
                setup_code: form.setup_code,
                name: form.name,
                email: form.email,
                error,
            };
            render(&state, StatusCode::UNPROCESSABLE_ENTITY, &page.layout, &page)
        }
        Err(SetupError::Db(e)) => db_failure(&state, req, e),
    }
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    email: String,
    error: Option<String>,
    /// Where to go after signing in.
    next: String,
    /// The single sign-on button's name for the provider, when single sign-on is on.
    sso: Option<String>,
    /// False when single sign-on is the only way in.
    passwords: bool,
}

impl SignInPage {
    async fn new(state: &AppState, req: &Request, email: String, error: Option<String>, next: String) -> Self {
        let current = state.sso.current(&state.db).await.unwrap_or_else(|e| {
            tracing::error!("single sign-on settings cannot be read: {e}");
            None
        });
        let sso = current.as_ref().map(|sso| sso.settings.display_name.clone());
        let passwords = !current.as_ref().is_some_and(|sso| sso.settings.only);
        Self { layout: Layout::new(req, None), email, error, next, sso, passwords }
    }

    /// The link that starts single sign-on and comes back to `next`.
    fn sso_link(&self) -> String {
        format!("/oidc/start?next={}", crate::web::ui::query_value(&self.next))
    }
}

/// Whether password sign-in and resets are off (single sign-on only): administrators still
/// have the admin CLI to get in (`admin reset-sso`).
pub async fn passwords_off(state: &AppState) -> bool {
    state.sso.current(&state.db).await.ok().flatten().is_some_and(|sso| sso.settings.only)
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    email: String,
    password: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// A local path to return to after signing in; anything else (another site, `//host`)
/// becomes the overview.
pub fn local_path(next: &str) -> &str {
    let local =
        next.starts_with('/') && !next.starts_with("//") && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if local { next } else { "/" }
}

#[handler]
pub async fn sign_in_page(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Query(NextQuery { next }): Query<NextQuery>,
) -> Response {
    match sessions::needs_setup(&state.db).await {
        Ok(true) => redirect("/setup"),
        Ok(false) => {
            let next = local_path(&next).to_string();
            let page = SignInPage::new(&state, req, String::new(), None, next).await;
            render(&state, StatusCode::OK, &page.layout, &page)
        }
        Err(e) => db_failure(&state, req, e),
    }
}

#[handler]
pub async fn sign_in(
    req: &Request,
    state: Data<&Arc<AppState>>,
    AnonymousForm(form): AnonymousForm<SignInForm>,
) -> Response {
    if passwords_off(&state).await {
        let text = "Password sign-in is off here: sign in with single sign-on.".into();
        return Failure::Forbidden(text).page(&state, req, None);
    }
    let peer = crate::web::client_address::client_address(&state.site.trusted_proxies, req);
    let (status, error) = match sessions::sign_in(&state.db, &peer, &form.email, &form.password).await {
        Ok(token) => {
            let mut response = redirect(local_path(&form.next));
            response.headers_mut().append(header::SET_COOKIE, session_cookie(&state, &token).parse().unwrap());
            return response;
        }
        Err(SignInError::Db(e)) => return db_failure(&state, req, e),
        Err(e @ SignInError::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        Err(e @ SignInError::Invalid) => (StatusCode::UNAUTHORIZED, e.to_string()),
    };
    let next = local_path(&form.next).to_string();
    let page = SignInPage::new(&state, req, form.email, Some(error), next).await;
    let mut response = render(&state, status, &page.layout, &page);
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(header::RETRY_AFTER, "900".parse().unwrap());
    }
    response
}

#[handler]
pub async fn sign_out(
    req: &Request,
    state: Data<&Arc<AppState>>,
    AnonymousForm(_): AnonymousForm<CsrfOnly>,
) -> Response {
    if let Some(token) = cookie(req, SESSION_COOKIE)
        && let Err(e) = sessions::sign_out(&state.db, &token).await
    {
        return db_failure(&state, req, e);
    }
    let mut response = redirect("/sign-in");
    response.headers_mut().append(header::SET_COOKIE, clear_session_cookie(&state).parse().unwrap());
    response
}

carries_csrf!(SetupForm, SignInForm);
