//! Groups (administrators only): create with global permissions, members, delete.

use std::sync::Arc;

use askama::Template;
use poem::http::StatusCode;
use poem::web::{Data, Path};
use poem::{Request, Response, handler};
use serde::Deserialize;

use super::extract::{AdminForm, Administrator, carries_csrf};
use super::{CsrfOnly, Failure, FormError, Layout, done, render, unavailable};
use crate::db::groups::{self, Group, GroupPermissions};
use crate::db::models::User;
use crate::db::{is_refused_rollback, is_unique_violation, users};
use crate::web::AppState;

pub struct GroupView {
    pub group: Group,
    pub members: Vec<(i64, String)>,
    /// Users who are not members yet.
    pub others: Vec<(i64, String)>,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    layout: Layout,
    groups: Vec<GroupView>,
    name: String,
    error: FormError,
}

async fn page(state: &AppState, req: &Request, user: &User, name: String, error: FormError) -> Response {
    let loaded = state
        .db
        .read(|c| {
            let everyone = users::list(c)?;
            let mut views = Vec::new();
            for group in groups::list(c)? {
                let members = groups::members(c, group.id)?;
                let others = everyone
                    .iter()
                    .filter(|u| !members.iter().any(|(id, _)| *id == u.id))
                    .map(|u| (u.id, users::labelled(&u.name, &u.login)))
                    .collect();
                views.push(GroupView { group, members, others });
            }
            Ok(views)
        })
        .await;
    match loaded {
        Ok(views) => {
            let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
            let page = GroupsPage { layout: Layout::new(req, Some(user)), groups: views, name, error };
            render(state, status, &page.layout, &page)
        }
        Err(e) => unavailable(state, req, user, e),
    }
}

fn last_admin(state: &AppState, req: &Request, user: &User) -> Response {
    let text = "That would leave no administrator. Make someone else an administrator first.".into();
    Failure::Conflict { heading: "Not changed", text }.page(state, req, Some(user))
}

#[handler]
pub async fn list(req: &Request, state: Data<&Arc<AppState>>, Administrator(user): Administrator) -> Response {
    page(&state, req, &user, String::new(), FormError::default()).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    create_caches: Option<String>,
    #[serde(default)]
    administer: Option<String>,
}

#[handler]
pub async fn create(
    req: &Request,
    state: Data<&Arc<AppState>>,
    AdminForm { user, form }: AdminForm<CreateForm>,
) -> Response {
    let name = form.name.trim().to_string();
    if name.is_empty() || name.len() > 100 {
        return page(&state, req, &user, form.name, FormError::new("name", "Enter a name of 1 to 100 characters."))
            .await;
    }
    let permissions =
        GroupPermissions { create_caches: form.create_caches.is_some(), administer: form.administer.is_some() };
    let n = name.clone();
    match state.db.write(move |c| groups::create(c, &n, permissions)).await {
        Ok(()) => {
            state.hot.forget_rights();
            done(&state, "/groups", &format!("Group {name} created."))
        }
        Err(e) if is_unique_violation(&e) => {
            page(&state, req, &user, name, FormError::new("name", "A group with this name exists.")).await
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
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
    AdminForm { user, form }: AdminForm<MemberForm>,
) -> Response {
    let member = form.user_id;
    match state.db.write(move |c| groups::add_member(c, id, member)).await {
        Ok(()) => {
            state.hot.forget_rights();
            done(&state, "/groups", "Member added.")
        }
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn remove_member(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path((id, member)): Path<(i64, i64)>,
    AdminForm { user, .. }: AdminForm<CsrfOnly>,
) -> Response {
    match state.db.write(move |c| groups::keeping_an_administrator(c, |c| groups::remove_member(c, id, member))).await {
        Ok(()) => {
            state.hot.forget_rights();
            done(&state, "/groups", "Member removed.")
        }
        Err(e) if is_refused_rollback(&e) => last_admin(&state, req, &user),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

#[handler]
pub async fn delete(
    req: &Request,
    state: Data<&Arc<AppState>>,
    Path(id): Path<i64>,
    AdminForm { user, .. }: AdminForm<CsrfOnly>,
) -> Response {
    match state.db.write(move |c| groups::keeping_an_administrator(c, |c| groups::delete(c, id))).await {
        Ok(()) => {
            state.hot.forget_rights();
            done(&state, "/groups", "Group deleted.")
        }
        Err(e) if is_refused_rollback(&e) => last_admin(&state, req, &user),
        Err(e) => unavailable(&state, req, &user, e),
    }
}

carries_csrf!(CreateForm, MemberForm);
