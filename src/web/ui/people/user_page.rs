//! One user's page (for those who may view users; changes for those who may edit them):
//! their name and email, a new password (their sessions end), their groups, their rights
//! per cache, and deleting them. Nobody changes an account holding more than they do, or
//! gives more than they hold; every change keeps an administrator (groups) and takes
//! effect at once (remembered rights forgotten).

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::avatar::AvatarTag;
use crate::db::ids::{CacheId, GroupId, UserId};
use crate::db::models::{GrantLevel, User};
use crate::services::identity::access::Access;
use crate::services::identity::accounts::{self, AccountError, UserDetail};
use crate::services::identity::auth::hash_token;
use crate::services::identity::grants::{self, Grantee};
use crate::services::identity::groups;
use crate::web::AppState;
use crate::web::ui::extract::{Holding, HoldingForm, carries_csrf, need};
use crate::web::ui::{CsrfOnly, Failure, FormError, Layout, SESSION_COOKIE, cookie, done, render, unavailable};

#[derive(Template)]
#[template(path = "user.html")]
struct UserPage {
    layout: Layout,
    detail: UserDetail,
    /// What the profile form had when it was refused.
    name: String,
    email: String,
    error: FormError,
    levels: [GrantLevel; 3],
    /// The viewer may change this account (edits users, holds all the account holds).
    editable: bool,
}

fn address(user: &User) -> &str {
    user.email.as_deref().unwrap_or_default()
}

/// The page for user `id`; `typed` is a refused profile form's (name, email).
async fn page(
    state: &AppState,
    req: &Request,
    admin: &User,
    id: i64,
    typed: Option<(String, String)>,
    error: FormError,
) -> Response {
    match accounts::detail(&state.db, admin, UserId(id)).await {
        Ok(Some(mut detail)) => {
            let (name, email) = typed.unwrap_or_else(|| (detail.user.name.clone(), address(&detail.user).to_string()));
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let layout = Layout::new(req, Some(admin));
            let editable = layout.may_edit(&detail.user);
            // Only groups the viewer may change are offered (their cache grants are checked
            // when they act).
            detail.other_groups.retain(|group| layout.holds_all_of(group));
            let page = UserPage { layout, detail, name, email, error, levels: GrantLevel::ALL, editable };
            render(state, status, &page.layout, &page)
        }
        Ok(None) => crate::web::ui::not_found_page(),
        Err(e) => unavailable(state, req, admin, e),
    }
}

fn back(id: i64) -> String {
    format!("/users/{id}")
}

/// The 403 page when `actor` may not change user `id`, who holds more than they do.
pub(in crate::web::ui) async fn out_of_reach(
    state: &AppState,
    req: &Request,
    actor: &User,
    id: i64,
) -> Option<Response> {
    match accounts::beyond_reach(&state.db, actor, UserId(id)).await {
        Ok(None) => None,
        Ok(Some(held)) => Some(beyond_reach_page(state, req, actor, &held)),
        Err(e) => Some(unavailable(state, req, actor, e)),
    }
}

fn beyond_reach_page(state: &AppState, req: &Request, actor: &User, held: &str) -> Response {
    let text = format!(
        "This user holds permissions you do not ({held}); only someone who holds them may change this \
         account. Nothing was changed."
    );
    Failure::Forbidden(text).page(state, req, Some(actor))
}

/// The 403 page when `actor` may do less than `needed` with the cache `cache`.
async fn cache_out_of_reach(
    state: &AppState,
    req: &Request,
    actor: &User,
    cache: CacheId,
    needed: Access,
) -> Option<Response> {
    match grants::access_of(&state.db, actor, cache).await {
        Ok(Some(held)) if held >= needed => None,
        Ok(Some(_)) => {
            let text = "You cannot give or take away more than you may do with this cache yourself. \
                        Nothing was changed.";
            Some(Failure::Forbidden(text.into()).page(state, req, Some(actor)))
        }
        Ok(None) => Some(crate::web::ui::not_found_page()),
        Err(e) => Some(unavailable(state, req, actor, e)),
    }
}

#[handler]
pub async fn show(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    Holding(admin, _): Holding<need::ViewUsers>,
) -> Response {
    page(&state, req, &admin, id, None, FormError::default()).await
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
}

#[handler]
pub async fn profile(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditUsers, ProfileForm>,
) -> Response {
    // One's own address changes only with the codes to both addresses (a stolen session
    // must not move the account to another mailbox).
    if UserId(id) == user.id && Some(form.email.trim().to_ascii_lowercase()) != user.email {
        let error =
            FormError::new("email", "Change your own address on your account page: a code goes to each address.");
        return page(&state, req, &user, id, Some((form.name, form.email)), error).await;
    }
    match accounts::set_profile(&state.db, &user, UserId(id), &form.name, &form.email).await {
        Ok(()) => done(&state, &back(id), "Name and email address saved."),
        Err(AccountError::Field(field, text)) => {
            page(&state, req, &user, id, Some((form.name, form.email)), FormError::new(field, text)).await
        }
        Err(e) => account_failure(&state, req, &user, e),
    }
}

pub(in crate::web::ui) fn account_failure(state: &AppState, req: &Request, admin: &User, e: AccountError) -> Response {
    match e {
        AccountError::Db(e) => unavailable(state, req, admin, e),
        AccountError::BeyondReach(held) => beyond_reach_page(state, req, admin, &held),
        other => Failure::Conflict { heading: "Not changed", text: other.to_string() }.page(state, req, Some(admin)),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

#[handler]
pub async fn password(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditUsers, PasswordForm>,
) -> Response {
    // Setting one's own password here keeps this session, as the account page does.
    let keep = (UserId(id) == user.id).then(|| cookie(req, SESSION_COOKIE).map(|t| hash_token(&t))).flatten();
    match accounts::set_password(&state.db, &user, UserId(id), &form.password, keep).await {
        Ok(()) => done(&state, &back(id), "Password set. Their other sessions have ended."),
        Err(AccountError::Field(field, text)) => page(&state, req, &user, id, None, FormError::new(field, text)).await,
        Err(e) => account_failure(&state, req, &user, e),
    }
}

#[derive(Deserialize)]
pub struct GroupForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    group_id: i64,
}

#[handler]
pub async fn join_group(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditUsers, GroupForm>,
) -> Response {
    let joined = groups::add_member(&state.db, &state.hot, &user, GroupId(form.group_id), UserId(id)).await;
    super::groups::answer_at(&state, req, &user, joined, &back(id), "Added to the group.")
}

#[handler]
pub async fn leave_group(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((id, group_id)): Path<(i64, i64)>,
    HoldingForm { user, .. }: HoldingForm<need::EditUsers, CsrfOnly>,
) -> Response {
    let left = groups::remove_member(&state.db, &state.hot, &user, GroupId(group_id), UserId(id)).await;
    super::groups::answer_at(&state, req, &user, left, &back(id), "Removed from the group.")
}

#[derive(Deserialize)]
pub struct GrantForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    cache_id: i64,
    #[serde(default)]
    permission: String,
}

#[handler]
pub async fn grant(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditUsers, GrantForm>,
) -> Response {
    let Some(level) = GrantLevel::parse(&form.permission) else {
        return page(&state, req, &user, id, None, FormError::new("permission", "Choose read, push or manage.")).await;
    };
    if let Some(refused) = out_of_reach(&state, req, &user, id).await {
        return refused;
    }
    if let Some(refused) = cache_out_of_reach(&state, req, &user, CacheId(form.cache_id), level.into()).await {
        return refused;
    }
    match grants::grant(&state.db, Some(&state.hot), CacheId(form.cache_id), Grantee::User(UserId(id)), level).await {
        Ok(true) => done(&state, &back(id), &format!("Granted {}.", level.name())),
        Ok(false) => crate::web::ui::not_found_page(),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn revoke(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((id, cache_id)): Path<(i64, i64)>,
    HoldingForm { user, .. }: HoldingForm<need::EditUsers, CsrfOnly>,
) -> Response {
    // Within reach, the user may do no more with any cache than the actor: no grant of
    // theirs is above the actor's own.
    if let Some(refused) = out_of_reach(&state, req, &user, id).await {
        return refused;
    }
    match grants::revoke(&state.db, &state.hot, CacheId(cache_id), Grantee::User(UserId(id))).await {
        Ok(()) => done(&state, &back(id), "Access removed."),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(ProfileForm, PasswordForm, GroupForm, GrantForm);
