//! Groups of users: the global permissions they give, members, and deletion.
//!
//! Two rules hold for every change: nobody changes a group that gives more than they hold
//! themselves (global permissions or cache grants: its permissions, its members, its
//! existence), nor gives a group more than they hold, nor adds or removes a member who holds
//! more than they do; and no change leaves the server without an administrator.

use super::access;
use super::auth::Caller;
use crate::db::groups::{self, Group};
use crate::db::ids::{GroupId, UserId};
use crate::db::models::{User, user_label};
use crate::db::permissions::Permissions;
use crate::db::{AnyConnection, Db, DbError, DbResult, is_refused_rollback, is_unique_violation, users};
use crate::services::serving::hot_cache::HotCache;

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("a group with this name exists")]
    NameTaken,
    #[error("that would leave no administrator; make someone else an administrator first")]
    LastAdministrator,
    #[error("that group gives permissions you do not hold ({0}); only someone who holds them may change it")]
    BeyondYourRights(String),
    #[error("that user holds permissions you do not ({0}); only someone who holds them may change their groups")]
    MemberBeyondYourRights(String),
    #[error("there is no such group")]
    NotFound,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A group with its members and the users who could join it.
pub struct GroupView {
    pub group: Group,
    pub members: Vec<User>,
    /// Users who are not members yet.
    pub others: Vec<(UserId, String)>,
}

pub async fn list(db: &Db) -> Result<Vec<GroupView>, DbError> {
    db.read(|c| {
        let everyone = users::list(c)?;
        let mut views = Vec::new();
        for group in groups::list(c)? {
            let members = groups::members(c, group.id)?;
            let others = everyone
                .iter()
                .filter(|u| !members.iter().any(|member| member.id == u.id))
                .map(|u| (u.id, user_label(&u.name, &u.login)))
                .collect();
            views.push(GroupView { group, members, others });
        }
        Ok(views)
    })
    .await
}

/// What a change found wrong before it changed anything.
type Checked = Result<(), GroupError>;

/// Runs a change to groups and forgets remembered rights after it, mapping a change that
/// would leave no administrator to [`GroupError::LastAdministrator`].
async fn change(
    db: &Db,
    hot: &HotCache,
    apply: impl FnOnce(&mut AnyConnection) -> DbResult<Checked> + Send + 'static,
) -> Result<(), GroupError> {
    let changed = db.write(move |c| {
        let checked = groups::keeping_an_administrator(c, apply)?;
        crate::db::replication::access_changed(c)?;
        Ok(checked)
    });
    match changed.await {
        Ok(checked) => {
            hot.forget_rights();
            checked
        }
        Err(e) if is_refused_rollback(&e) => Err(GroupError::LastAdministrator),
        Err(e) if is_unique_violation(&e) => Err(GroupError::NameTaken),
        Err(e) => Err(e.into()),
    }
}

/// Runs `apply` on the group if `actor` holds everything it gives, global permissions and
/// cache grants (checked in the same transaction as the change).
async fn change_group(
    db: &Db,
    hot: &HotCache,
    actor: &User,
    group: GroupId,
    apply: impl FnOnce(&mut AnyConnection, &Caller) -> DbResult<Checked> + Send + 'static,
) -> Result<(), GroupError> {
    let actor = Caller::session(actor);
    change(db, hot, move |c| {
        let Some(found) = groups::find(c, group)? else { return crate::db::refuse(GroupError::NotFound) };
        if !actor.permissions.covers(found.permissions) {
            return crate::db::refuse(GroupError::BeyondYourRights(found.permissions.describe()));
        }
        let caches = access::group_grants_beyond(c, &actor, group)?;
        if !caches.is_empty() {
            return crate::db::refuse(GroupError::BeyondYourRights(format!("rights on {}", caches.join(", "))));
        }
        apply(c, &actor)
    })
    .await
}

/// Changes `member`'s membership of `group` if they are within `actor`'s reach too.
async fn change_membership(
    db: &Db,
    hot: &HotCache,
    actor: &User,
    group: GroupId,
    member: UserId,
    apply: impl FnOnce(&mut AnyConnection) -> DbResult<()> + Send + 'static,
) -> Result<(), GroupError> {
    change_group(db, hot, actor, group, move |c, actor| match access::user_beyond(c, actor, member)? {
        Some(held) => crate::db::refuse(GroupError::MemberBeyondYourRights(held)),
        None => apply(c).map(Ok),
    })
    .await
}

/// The refusal of giving a group `wanted` when `actor` does not hold all of it.
fn beyond(actor: Permissions, wanted: Permissions) -> Checked {
    match actor.covers(wanted) {
        true => Ok(()),
        false => Err(GroupError::BeyondYourRights(wanted.describe())),
    }
}

pub async fn create(
    db: &Db,
    hot: &HotCache,
    actor: &User,
    name: &str,
    permissions: Permissions,
) -> Result<(), GroupError> {
    beyond(actor.permissions, permissions)?;
    let name = name.to_string();
    change(db, hot, move |c| groups::create(c, &name, permissions).map(Ok)).await
}

/// Changes what a group gives; the actor must hold both what it gave and what it will give.
pub async fn set_permissions(
    db: &Db,
    hot: &HotCache,
    actor: &User,
    group: GroupId,
    permissions: Permissions,
) -> Result<(), GroupError> {
    beyond(actor.permissions, permissions)?;
    change_group(db, hot, actor, group, move |c, _| groups::set_permissions(c, group, permissions).map(Ok)).await
}

pub async fn add_member(db: &Db, hot: &HotCache, actor: &User, group: GroupId, user: UserId) -> Result<(), GroupError> {
    change_membership(db, hot, actor, group, user, move |c| groups::add_member(c, group, user)).await
}

pub async fn remove_member(
    db: &Db,
    hot: &HotCache,
    actor: &User,
    group: GroupId,
    user: UserId,
) -> Result<(), GroupError> {
    change_membership(db, hot, actor, group, user, move |c| groups::remove_member(c, group, user)).await
}

pub async fn delete(db: &Db, hot: &HotCache, actor: &User, group: GroupId) -> Result<(), GroupError> {
    change_group(db, hot, actor, group, move |c, _| groups::delete(c, group.0).map(Ok)).await
}
