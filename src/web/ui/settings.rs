//! Service settings (administrators): the SMTP server for invitations and resets, locked when
//! SMTP_* environment variables set it, and a test mail.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::extract::{Holding, HoldingForm, carries_csrf, need};
use super::{CsrfOnly, FormError, Layout, done, render, unavailable};
use crate::db::models::User;
use crate::db::oidc::StoredSso;
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

/// The single sign-on form (see `services::identity::oidc`).
#[derive(Default, Deserialize)]
pub struct SsoForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    issuer_url: String,
    #[serde(default)]
    client_id: String,
    /// Empty keeps the saved one; never shown back.
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    groups_claim: String,
    #[serde(default)]
    create_users: Option<String>,
    #[serde(default)]
    sso_only: Option<String>,
    #[serde(default)]
    display_name: String,
}

impl SsoForm {
    fn of(stored: StoredSso) -> Self {
        Self {
            issuer_url: stored.issuer_url,
            client_id: stored.client_id,
            scopes: stored.scopes,
            groups_claim: stored.groups_claim.unwrap_or_default(),
            create_users: stored.create_users.then(|| "on".into()),
            sso_only: stored.sso_only.then(|| "on".into()),
            display_name: stored.display_name,
            ..Default::default()
        }
    }

    fn stored(&self) -> StoredSso {
        let trimmed = |s: &str| s.trim().to_string();
        StoredSso {
            issuer_url: trimmed(&self.issuer_url).trim_end_matches('/').to_string(),
            client_id: trimmed(&self.client_id),
            client_secret: self.client_secret.clone(),
            scopes: self
                .scopes
                .split([' ', ','])
                .filter(|s| !s.is_empty() && *s != "openid")
                .collect::<Vec<_>>()
                .join(" "),
            groups_claim: Some(trimmed(&self.groups_claim)).filter(|c| !c.is_empty()),
            create_users: self.create_users.is_some(),
            sso_only: self.sso_only.is_some(),
            display_name: trimmed(&self.display_name),
        }
    }
}

/// The single sign-on part of the page.
struct SsoSection {
    form: SsoForm,
    error: FormError,
    /// OIDC_* variables set it: the form is shown disabled.
    locked: bool,
    /// Whether single sign-on is on now.
    enabled: bool,
    /// The redirect URL to register at the provider.
    callback: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    layout: Layout,
    form: SmtpForm,
    locked: bool,
    error: FormError,
    sso: SsoSection,
    admin_email: String,
    securities: [(&'static str, &'static str); 3],
}

const SECURITIES: [(&str, &str); 3] =
    [("starttls", "STARTTLS (port 587)"), ("tls", "TLS (port 465)"), ("none", "none (a relay on a trusted network)")];

async fn page(state: &AppState, req: &Request, user: &User, form: Option<SmtpForm>, error: FormError) -> Response {
    page_with(state, req, user, form, error, None).await
}

/// The settings page; `sso` is the single sign-on form as typed, with its error.
async fn page_with(
    state: &AppState,
    req: &Request,
    user: &User,
    form: Option<SmtpForm>,
    error: FormError,
    sso: Option<(SsoForm, FormError)>,
) -> Response {
    let handle = &state.sso;
    let (enabled, saved) = match (handle.current(&state.db).await, handle.saved(&state.db).await) {
        (Ok(current), Ok(saved)) => (current, saved),
        (Err(e), _) | (_, Err(e)) => return unavailable(state, req, user, e),
    };
    let (sso, locked_error) = match (sso, state.sso.locked()) {
        // Locked: the form shows the environment's settings, with the refusal.
        (Some((_, error)), true) => (None, error),
        (sso, _) => (sso, FormError::default()),
    };
    let sso = match (sso, &state.site.oidc) {
        (Some((form, error)), None) => {
            SsoSection { form, error, locked: false, enabled: enabled.is_some(), callback: handle.redirect_url() }
        }
        (_, Some(env)) => SsoSection {
            form: SsoForm {
                issuer_url: env.issuer_url.clone(),
                client_id: env.client_id.clone(),
                scopes: env.scopes.join(" "),
                groups_claim: env.groups_claim.clone().unwrap_or_default(),
                create_users: env.create_users.then(|| "on".into()),
                sso_only: env.only.then(|| "on".into()),
                display_name: env.display_name.clone(),
                ..Default::default()
            },
            error: locked_error,
            locked: true,
            enabled: true,
            callback: handle.redirect_url(),
        },
        (None, None) => SsoSection {
            form: saved.map(SsoForm::of).unwrap_or_else(|| SsoForm {
                scopes: "email profile".into(),
                display_name: "single sign-on".into(),
                ..Default::default()
            }),
            error: FormError::default(),
            locked: false,
            enabled: enabled.is_some(),
            callback: handle.redirect_url(),
        },
    };
    let current = match mail::current(&state.db, state.site.smtp.as_ref()).await {
        Ok(current) => current,
        Err(e) => return unavailable(state, req, user, e),
    };
    let locked = current.as_ref().is_some_and(|(_, locked)| *locked);
    let form = match (form, &current) {
        (Some(form), _) if !locked => form,
        (_, Some((settings, _))) => SmtpForm::of(settings),
        (_, None) => SmtpForm { security: "starttls".into(), ..Default::default() },
    };
    let status = if error.is_some() || sso.error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = SettingsPage {
        layout: Layout::new(req, Some(user)),
        form,
        locked,
        error,
        sso,
        admin_email: user.email.clone().unwrap_or_default(),
        securities: SECURITIES,
    };
    render(state, status, &page.layout, &page)
}

#[handler]
pub async fn show(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Holding(user, _): Holding<need::ViewSettings>,
) -> Response {
    page(&state, req, &user, None, FormError::default()).await
}

#[handler]
pub async fn save(
    req: &Request,
    state: Data<&Arc<AppState>>,
    HoldingForm { user, form, .. }: HoldingForm<need::Everything, SmtpForm>,
) -> Response {
    if state.site.smtp.is_some() {
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
    HoldingForm { user, .. }: HoldingForm<need::EditSettings, CsrfOnly>,
) -> Response {
    let Some(to) = user.email.clone() else {
        return done(&state, "/settings", "Your account has no email address to send the test to.");
    };
    let notice = match mail::current(&state.db, state.site.smtp.as_ref()).await {
        Ok(Some((settings, _))) => {
            match mail::send(&settings, &to, "Hibernation test mail", mail::text(&mail::TestMail)).await {
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

#[handler]
pub async fn save_sso(
    req: &Request,
    state: Data<&Arc<AppState>>,
    HoldingForm { user, form, .. }: HoldingForm<need::Everything, SsoForm>,
) -> Response {
    if state.sso.locked() {
        let note =
            FormError::new("issuer_url", "Nothing was changed: OIDC_* environment variables set single sign-on.");
        return page_with(&state, req, &user, None, FormError::default(), Some((form, note))).await;
    }
    let turning_on_only = form.sso_only.is_some();
    match state.sso.save(&state.db, form.stored()).await {
        Ok(Ok(())) if turning_on_only => done(
            &state,
            "/settings",
            "Single sign-on saved. Password sign-in is off: if the provider fails, `hibernation-server admin reset-sso` turns it back on.",
        ),
        Ok(Ok(())) => done(&state, "/settings", "Single sign-on saved."),
        Ok(Err((field, message))) => {
            page_with(&state, req, &user, None, FormError::default(), Some((form, FormError::new(field, message))))
                .await
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(SsoForm);
