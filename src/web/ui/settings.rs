//! Service settings (administrators): the SMTP server for invitations and resets, locked when
//! SMTP_* environment variables set it, and a test mail.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::extract::{AdminForm, Administrator, carries_csrf};
use super::{CsrfOnly, FormError, Layout, done, render, unavailable};
use crate::db::models::User;
use crate::services::mail::{self, Security, SmtpSettings};
use crate::web::AppState;

#[derive(Default, Deserialize)]
pub struct SmtpForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    security: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    from: String,
}

impl SmtpForm {
    fn of(settings: &SmtpSettings) -> Self {
        Self {
            host: settings.host.clone(),
            port: settings.port.to_string(),
            security: settings.security.as_str().into(),
            username: settings.username.clone().unwrap_or_default(),
            from: settings.from.clone(),
            ..Default::default()
        }
    }

    /// The settings the form asks for; an empty password keeps `saved_password`.
    fn validate(&self, saved_password: Option<String>) -> Result<SmtpSettings, FormError> {
        let security = Security::parse(&self.security).unwrap_or(Security::StartTls);
        let port = match self.port.trim() {
            "" => security.default_port(),
            text => text.parse().map_err(|_| FormError::new("port", "Enter a port number, e.g. 587."))?,
        };
        let non_empty = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let settings = SmtpSettings {
            host: self.host.trim().to_string(),
            port,
            security,
            username: non_empty(&self.username),
            password: non_empty(&self.password).or(saved_password),
            from: self.from.trim().to_string(),
        };
        settings.validate().map_err(|(field, text)| FormError::new(field, text))?;
        Ok(settings)
    }
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    form: SmtpForm,
    locked: bool,
    error: FormError,
    admin_email: String,
    securities: [(&'static str, &'static str); 3],
}

const SECURITIES: [(&str, &str); 3] =
    [("starttls", "STARTTLS (port 587)"), ("tls", "TLS (port 465)"), ("none", "none (a relay on a trusted network)")];

async fn page(state: &AppState, req: &Request, user: &User, form: Option<SmtpForm>, error: FormError) -> Response {
    let current = match mail::current(&state.db, state.config.smtp.as_ref()).await {
        Ok(current) => current,
        Err(e) => return unavailable(state, req, user, e),
    };
    let locked = current.as_ref().is_some_and(|(_, locked)| *locked);
    let form = match (form, &current) {
        (Some(form), _) if !locked => form,
        (_, Some((settings, _))) => SmtpForm::of(settings),
        (_, None) => SmtpForm { security: "starttls".into(), ..Default::default() },
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = SettingsPage {
        layout: Layout::new(req, Some(user)),
        form,
        locked,
        error,
        admin_email: user.email.clone().unwrap_or_default(),
        securities: SECURITIES,
    };
    render(state, status, &page.layout, &page)
}

#[handler]
pub async fn show(req: &Request, state: Data<&Arc<AppState>>, Administrator(user): Administrator) -> Response {
    page(&state, req, &user, None, FormError::default()).await
}

#[handler]
pub async fn save(
    req: &Request,
    state: Data<&Arc<AppState>>,
    AdminForm { user, form }: AdminForm<SmtpForm>,
) -> Response {
    if state.config.smtp.is_some() {
        let note = "Nothing was changed: SMTP_* environment variables set the mail settings.";
        return page(&state, req, &user, None, FormError::new("host", note)).await;
    }
    let saved = match mail::saved_password(&state.db).await {
        Ok(saved) => saved,
        Err(e) => return unavailable(&state, req, &user, e),
    };
    let settings = match form.validate(saved) {
        Ok(settings) => settings,
        Err(error) => return page(&state, req, &user, Some(form), error).await,
    };
    match mail::save(&state.db, &settings).await {
        Ok(()) => done(&state, "/settings", "Mail settings saved."),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn test_mail(
    req: &Request,
    state: Data<&Arc<AppState>>,
    AdminForm { user, .. }: AdminForm<CsrfOnly>,
) -> Response {
    let Some(to) = user.email.clone() else {
        return done(&state, "/settings", "Your account has no email address to send the test to.");
    };
    let notice = match mail::current(&state.db, state.config.smtp.as_ref()).await {
        Ok(Some((settings, _))) => {
            let body = "This is a test mail from Hibernation: the mail settings work.\n".to_string();
            match mail::send(&settings, &to, "Hibernation test mail", body).await {
                Ok(()) => format!("A test mail was sent to {to}."),
                Err(e) => format!("The test mail failed: {e}"),
            }
        }
        Ok(None) => mail::MailError::NotConfigured.to_string(),
        Err(e) => return unavailable(&state, req, &user, e),
    };
    done(&state, "/settings", &notice)
}

carries_csrf!(SmtpForm);
