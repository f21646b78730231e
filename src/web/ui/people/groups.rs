//! Groups: seen by those who may view groups; created, changed (global permissions,
//! members) and deleted by those who may edit them, never beyond what they hold.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::avatar::AvatarTag;
use crate::db::ids::{GroupId, UserId};
use crate::db::models::User;
use crate::db::permissions::{Permission, Permissions};
use crate::services::identity::groups::{self, GroupError};
use crate::web::AppState;
use crate::web::ui::extract::{Holding, HoldingForm, carries_csrf, need};
use crate::web::ui::{CsrfOnly, Failure, FormError, Layout, done, render, unavailable};

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    layout: Layout,
    groups: Vec<groups::GroupView>,
    name: String,
    error: FormError,
    permissions: [Permission; 9],
}

async fn page(state: &AppState, req: &Request, user: &User, name: String, error: FormError) -> Response {
    match groups::list(&state.db).await {
        Ok(views) => {
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let page = GroupsPage {
                layout: Layout::new(req, Some(user)),
                groups: views,
                name,
                error,
                permissions: Permission::ALL,
            };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

/// The answer to a change of groups: back to the list with `notice`, or why not.
fn answer(state: &AppState, req: &Request, user: &User, result: Result<(), GroupError>, notice: &str) -> Response {
    answer_at(state, req, user, result, "/groups", notice)
}

/// The answer to a change of groups made on page `to` (the groups list, a user's page).
pub(in crate::web::ui) fn answer_at(
    state: &AppState,
    req: &Request,
    user: &User,
    result: Result<(), GroupError>,
    to: &str,
    notice: &str,
) -> Response {
    match result {
        Ok(()) => done(state, to, notice),
        Err(GroupError::LastAdministrator) => {
            let text = "That would leave no administrator. Make someone else an administrator first.".into();
            Failure::Conflict { heading: "Not changed", text }.page(state, req, Some(user))
        }
        Err(e @ (GroupError::BeyondYourRights(_) | GroupError::MemberBeyondYourRights(_))) => {
            Failure::Forbidden(format!("Nothing was changed: {e}.")).page(state, req, Some(user))
        }
        Err(e @ (GroupError::NameTaken | GroupError::NotFound)) => {
            Failure::Invalid { heading: "Not changed", text: e.to_string() }.page(state, req, Some(user))
        }
        Err(GroupError::Db(e)) => unavailable(state, req, user, e),
    }
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>, Holding(user, _): Holding<need::ViewGroups>) -> Response {
    page(&state, req, &user, String::new(), FormError::default()).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// A checkbox per permission, named by its key.
    #[serde(flatten)]
    checked: HashMap<String, String>,
}

#[handler]
pub async fn create(
    req: &Request,
    state: Data<&Arc<AppState>>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditGroups, CreateForm>,
) -> Response {
    let name = form.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return page(&state, req, &user, form.name, FormError::new("name", "Enter a name of 1 to 100 characters."))
            .await;
    }
    let permissions = Permissions::from_form(&form.checked);
    match groups::create(&state.db, &state.hot, &user, &name, permissions).await {
        Err(GroupError::NameTaken) => {
            page(&state, req, &user, name, FormError::new("name", "A group with this name exists.")).await
        }
        result => answer(&state, req, &user, result, &format!("Group {name} created.")),
    }
}

#[derive(Deserialize)]
pub struct PermissionsForm {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    checked: HashMap<String, String>,
}

#[handler]
pub async fn set_permissions(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditGroups, PermissionsForm>,
) -> Response {
    let permissions = Permissions::from_form(&form.checked);
    let changed = groups::set_permissions(&state.db, &state.hot, &user, GroupId(id), permissions).await;
    answer(&state, req, &user, changed, "Permissions changed.")
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: i64,
}

#[handler]
pub async fn add_member(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, form, .. }: HoldingForm<need::EditGroups, MemberForm>,
) -> Response {
    let added = groups::add_member(&state.db, &state.hot, &user, GroupId(id), UserId(form.user_id)).await;
    answer(&state, req, &user, added, "Member added.")
}

#[handler]
pub async fn remove_member(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((id, member)): Path<(i64, i64)>,
    HoldingForm { user, .. }: HoldingForm<need::EditGroups, CsrfOnly>,
) -> Response {
    let removed = groups::remove_member(&state.db, &state.hot, &user, GroupId(id), UserId(member)).await;
    answer(&state, req, &user, removed, "Member removed.")
}

#[handler]
pub async fn delete(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    HoldingForm { user, .. }: HoldingForm<need::EditGroups, CsrfOnly>,
) -> Response {
    let deleted = groups::delete(&state.db, &state.hot, &user, GroupId(id)).await;
    answer(&state, req, &user, deleted, "Group deleted.")
}

carries_csrf!(CreateForm, PermissionsForm, MemberForm);
