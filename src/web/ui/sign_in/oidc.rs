//! Single sign-on's two stops: `/oidc/start` sends the browser to the identity provider,
//! `/oidc/callback` takes it back, signs the person in and returns them where they were.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::{Data, Query};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::auth::local_path;
use crate::web::ui::{cookie, message, redirect, session_cookie};

/// The cookie binding a sign-in to the browser that started it.
const SSO_COOKIE: &str = "hibernation_sso";
use crate::services::identity::oidc::SsoError;
use crate::services::identity::sessions;
use crate::web::AppState;

#[derive(Deserialize)]
pub struct StartQuery {
    #[serde(default)]
    next: String,
}

/// The page for a sign-in that could not be done; the details go to the log too.
fn failed(state: &AppState, req: &Request, e: &SsoError) -> Response {
    let status = match e {
        SsoError::Provider(_) | SsoError::Misconfigured(_) => {
            tracing::error!("single sign-on: {e}");
            StatusCode::BAD_GATEWAY
        }
        SsoError::Db(_) | SsoError::Busy => {
            tracing::error!("single sign-on: {e}");
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => {
            tracing::warn!("single sign-on refused: {e}");
            StatusCode::FORBIDDEN
        }
    };
    let text = format!("{}. Try again, or ask an administrator.", capitalized(&e.to_string()));
    message(state, req, None, status, "Single sign-on failed", &text)
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn not_set_up(state: &AppState, req: &Request) -> Response {
    message(state, req, None, StatusCode::NOT_FOUND, "Not found", "Single sign-on is not set up on this server.")
}

#[handler]
pub async fn start(req: &Request, state: Data<&Arc<AppState>>, Query(query): Query<StartQuery>) -> Response {
    let sso = match state.sso.current(&state.db).await {
        Ok(Some(sso)) => sso,
        Ok(None) => return not_set_up(&state, req),
        Err(e) => return failed(&state, req, &SsoError::Db(e)),
    };
    match sso.begin(&state.db, local_path(&query.next)).await {
        Ok((url, browser_secret)) => {
            let mut response = redirect(&url);
            // Lax: the provider's redirect back is a top-level navigation from another site.
            let secure = state.site.secure_cookie_attribute();
            let cookie =
                format!("{SSO_COOKIE}={browser_secret}; Path=/oidc; HttpOnly; SameSite=Lax; Max-Age=600{secure}");
            response.headers_mut().append(header::SET_COOKIE, cookie.parse().expect("cookie"));
            response
        }
        Err(e) => failed(&state, req, &e),
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[handler]
pub async fn callback(req: &Request, state: Data<&Arc<AppState>>, Query(query): Query<CallbackQuery>) -> Response {
    let sso = match state.sso.current(&state.db).await {
        Ok(Some(sso)) => sso,
        Ok(None) => return not_set_up(&state, req),
        Err(e) => return failed(&state, req, &SsoError::Db(e)),
    };
    if let Some(error) = query.error {
        let detail = query.error_description.map(|d| format!("{error}: {d}")).unwrap_or(error);
        return failed(&state, req, &SsoError::Refused(detail));
    }
    let browser_secret = cookie(req, SSO_COOKIE).unwrap_or_default();
    let (user, next) = match sso.finish(&state.db, &state.hot, &query.code, &query.state, &browser_secret).await {
        Ok(done) => done,
        Err(e) => return failed(&state, req, &e),
    };
    match sessions::new_session(&state.db, user.id).await {
        Ok(token) => {
            let mut response = redirect(local_path(&next));
            response.headers_mut().append(header::SET_COOKIE, session_cookie(&state, &token).parse().expect("cookie"));
            response
        }
        Err(e) => failed(&state, req, &SsoError::Db(e)),
    }
}
