//! Groups of users: their global permissions (create caches, administer), members, and
//! deletion. No change may leave the server without an administrator.

use super::hot_cache::HotCache;
use crate::db::groups::{self, Group, GroupPermissions};
use crate::db::ids::{GroupId, UserId};
use crate::db::{Db, DbError, is_refused_rollback, is_unique_violation, users};

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("a group with this name exists")]
    NameTaken,
    #[error("that would leave no administrator; make someone else an administrator first")]
    LastAdministrator,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A group with its members and the users who could join it.
pub struct GroupView {
    pub group: Group,
    pub members: Vec<(i64, String)>,
    /// Users who are not members yet.
    pub others: Vec<(i64, String)>,
}

pub async fn list(db: &Db) -> Result<Vec<GroupView>, DbError> {
    db.read(|c| {
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
    .await
}

/// Runs a change to groups and forgets remembered rights after it, mapping a change that
/// would leave no administrator to [`GroupError::LastAdministrator`].
async fn change(
    db: &Db,
    hot: &HotCache,
    apply: impl FnOnce(&mut crate::db::AnyConnection) -> crate::db::DbResult<()> + Send + 'static,
) -> Result<(), GroupError> {
    match db.write(move |c| groups::keeping_an_administrator(c, apply)).await {
        Ok(()) => {
            hot.forget_rights();
            Ok(())
        }
        Err(e) if is_refused_rollback(&e) => Err(GroupError::LastAdministrator),
        Err(e) if is_unique_violation(&e) => Err(GroupError::NameTaken),
        Err(e) => Err(e.into()),
    }
}

pub async fn create(db: &Db, hot: &HotCache, name: &str, permissions: GroupPermissions) -> Result<(), GroupError> {
    let name = name.to_string();
    change(db, hot, move |c| groups::create(c, &name, permissions)).await
}

pub async fn add_member(db: &Db, hot: &HotCache, group: GroupId, user: UserId) -> Result<(), GroupError> {
    change(db, hot, move |c| groups::add_member(c, group, user)).await
}

pub async fn remove_member(db: &Db, hot: &HotCache, group: GroupId, user: UserId) -> Result<(), GroupError> {
    change(db, hot, move |c| groups::remove_member(c, group, user)).await
}

pub async fn delete(db: &Db, hot: &HotCache, GroupId(group): GroupId) -> Result<(), GroupError> {
    change(db, hot, move |c| groups::delete(c, group)).await
}
