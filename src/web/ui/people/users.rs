//! Users (administrators only): list, create, delete; the last administrator stays.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::avatar::AvatarTag;
use crate::db::ids::UserId;
use crate::db::models::User;
use crate::services::identity::accounts::{self, AccountError, NewAccount};
use crate::services::identity::user_links::{self, LinkError};
use crate::services::mail::{self, SmtpSettings};
use crate::web::AppState;
use crate::web::ui::extract::{Holding, HoldingForm, carries_csrf, need};
use crate::web::ui::{CsrfOnly, Failure, FormError, Layout, done, render, unavailable};

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    users: Vec<User>,
    /// What was typed into the form that failed (`error` says which), shown again.
    name: String,
    email: String,
    admin: bool,
    error: FormError,
    invite_days: i64,
}

impl UsersPage {
    /// What the invite form shows in `field` ("name" or "email"): what was typed, after an
    /// invitation that failed.
    fn invited(&self, field: &str) -> &str {
        match (self.error.at("invite"), field) {
            (None, _) => "",
            (Some(_), "name") => &self.name,
            (Some(_), _) => &self.email,
        }
    }

    /// What the new-user form shows in `field`, after a creation that failed.
    fn created(&self, field: &str) -> &str {
        match (self.error.is_some() && self.error.at("invite").is_none(), field) {
            (false, _) => "",
            (true, "name") => &self.name,
            (true, _) => &self.email,
        }
    }
}

/// What a failed form had in it.
#[derive(Default)]
struct Typed {
    name: String,
    email: String,
    admin: bool,
}

async fn page(state: &AppState, req: &Request, user: &User, typed: Typed, error: FormError) -> Response {
    match accounts::list(&state.db).await {
        Ok(all) => {
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let invite_days = crate::services::identity::user_links::INVITE_LIFETIME.num_days();
            let layout = Layout::new(req, Some(user));
            let Typed { name, email, admin } = typed;
            let page = UsersPage { layout, users: all, name, email, admin, error, invite_days };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>, Holding(user, _): Holding<need::ViewUsers>) -> Response {
    page(&state, req, &user, Typed::default(), FormError::default()).await
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

impl CreateForm {
    fn typed(&self) -> Typed {
        Typed { name: self.name.clone(), email: self.email.clone(), admin: self.admin.is_some() }
    }
}

/// Only an administrator makes someone an administrator.
fn administrators_only(state: &AppState, req: &Request, user: &User, form: &CreateForm) -> Option<Response> {
    (form.admin.is_some() && !user.is_admin()).then(|| {
        let text = "Only administrators make someone an administrator. Nothing was created.".into();
        Failure::Forbidden(text).page(state, req, Some(user))
    })
}

/// Only an administrator creates an account with a password: its address is not proved, and
/// single sign-on links accounts by address. Others invite (the invitation proves it).
fn password_accounts_by_administrators(state: &AppState, req: &Request, user: &User) -> Option<Response> {
    (!user.is_admin()).then(|| {
        let text = "Only administrators create accounts with a password; invite people instead \
                    (the invitation proves their address). Nothing was created."
            .into();
        Failure::Forbidden(text).page(state, req, Some(user))
    })
}

#[handler]
pub async fn create(
    req: &Request,
    state: Data<&Arc<AppState>>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditUsers, CreateForm>,
) -> Response {
    if let Some(refused) = administrators_only(&state, req, &user, &form)
        .or_else(|| password_accounts_by_administrators(&state, req, &user))
    {
        return refused;
    }
    let account =
        NewAccount { name: &form.name, email: &form.email, password: &form.password, admin: form.admin.is_some() };
    match accounts::create(&state.db, account).await {
        Ok(created) => done(&state, "/users", &format!("{} can sign in now.", created.name)),
        Err(AccountError::Field(name, text)) => {
            page(&state, req, &user, form.typed(), FormError::new(name, text)).await
        }
        Err(e) => super::user_page::account_failure(&state, req, &user, e),
    }
}

#[handler]
/// The create form without a password: the invited person chooses it.
pub async fn invite(
    req: &Request,
    state: Data<&Arc<AppState>>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditUsers, CreateForm>,
) -> Response {
    if let Some(refused) = administrators_only(&state, req, &user, &form) {
        return refused;
    }
    let smtp = match smtp_settings(&state, req, &user).await {
        Ok(smtp) => smtp,
        Err(response) => return response,
    };
    let invited = user_links::invite(
        &state.db,
        smtp.as_ref(),
        &state.site.url,
        &user.name,
        &form.name,
        &form.email,
        form.admin.is_some(),
    )
    .await;
    invitation_page(&state, req, &user, invited, "Invitation sent to", form.typed()).await
}

/// The mail settings in force, or the page saying the database failed.
pub(in crate::web::ui) async fn smtp_settings(
    state: &AppState,
    req: &Request,
    user: &User,
) -> Result<Option<SmtpSettings>, Response> {
    match mail::current(&state.db, state.site.smtp.as_ref()).await {
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
    what: &str,
    typed: Typed,
) -> Response {
    match result {
        Ok(invited) => done(state, "/users", &format!("{what} {}.", invited.email.unwrap_or_default())),
        Err(LinkError::Db(e)) => unavailable(state, req, user, e),
        Err(e) => page(state, req, user, typed, FormError::new("invite", e.to_string())).await,
    }
}

#[handler]
pub async fn reinvite(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, .. }: HoldingForm<need::EditUsers, CsrfOnly>,
) -> Response {
    if let Some(refused) = super::user_page::out_of_reach(&state, req, &user, id).await {
        return refused;
    }
    let smtp = match smtp_settings(&state, req, &user).await {
        Ok(smtp) => smtp,
        Err(response) => return response,
    };
    let sent = user_links::reinvite(&state.db, smtp.as_ref(), &state.site.url, &user.name, UserId(id)).await;
    invitation_page(&state, req, &user, sent, "Invitation sent again to", Typed::default()).await
}

#[handler]
pub async fn delete(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, .. }: HoldingForm<need::EditUsers, CsrfOnly>,
) -> Response {
    match accounts::delete(&state.db, &state.hot, &user, UserId(id)).await {
        Ok(()) => done(&state, "/users", "User deleted. Their tokens and sessions no longer work."),
        Err(AccountError::LastAdministrator) => {
            let text = "This is the last administrator. Make someone else an administrator first.".into();
            Failure::Conflict { heading: "Not deleted", text }.page(&state, req, Some(&user))
        }
        Err(AccountError::Field(_, text)) => {
            Failure::Invalid { heading: "Not deleted", text }.page(&state, req, Some(&user))
        }
        Err(e) => super::user_page::account_failure(&state, req, &user, e),
    }
}

carries_csrf!(CreateForm);
