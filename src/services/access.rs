//! Who may read from and push to which cache.

use super::auth::Caller;
use crate::db::ids::{CacheId, GroupId, UserId};
use crate::db::models::{Cache, GrantLevel};
use crate::db::permissions::{Permission, Permissions};
use crate::db::{AnyConnection, DbResult, users};

/// What a caller may do with a cache; each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    Read,
    Push,
    /// Settings, grants, deleting paths, clearing and deleting the cache.
    Manage,
}

impl From<GrantLevel> for Access {
    fn from(level: GrantLevel) -> Self {
        match level {
            GrantLevel::Read => Self::Read,
            GrantLevel::Push => Self::Push,
            GrantLevel::Manage => Self::Manage,
        }
    }
}

/// The access global permissions give to every cache.
fn everywhere(permissions: Permissions) -> Access {
    if permissions.holds(Permission::ManageCaches) {
        Access::Manage
    } else if permissions.holds(Permission::ViewCaches) {
        Access::Read
    } else {
        Access::None
    }
}

/// The caller's access: what their user holds, narrowed by their token's scope.
pub fn access_to(conn: &mut AnyConnection, caller: Option<&Caller>, cache: &Cache) -> DbResult<Access> {
    let granted = match caller {
        // Managing every cache needs no look-up of grants (administrators on every request).
        Some(c) if everywhere(c.permissions) == Access::Manage => Access::Manage,
        Some(c) => {
            let granted =
                users::permission(conn, CacheId(cache.id), UserId(c.user_id))?.map_or(Access::None, Access::from);
            granted.max(everywhere(c.permissions))
        }
        None => Access::None,
    };
    let scoped = match caller {
        Some(c) if c.scope.cache_ids.as_ref().is_some_and(|ids| !ids.contains(&cache.id)) => Access::None,
        Some(c) if c.scope.read_only => granted.min(Access::Read),
        _ => granted,
    };
    Ok(if cache.is_public { scoped.max(Access::Read) } else { scoped })
}

/// The caches on which `target` may do more than `actor` (by their own grants or their
/// groups'): their names. Global permissions are compared apart (`Permissions::covers`).
pub fn caches_beyond(conn: &mut AnyConnection, actor: &Caller, target: &Caller) -> DbResult<Vec<String>> {
    let ids = users::readable_cache_ids(conn, target.user_id)?;
    let mut beyond = Vec::new();
    for cache in crate::db::browse::caches_by_ids(conn, Some(&ids))? {
        if access_to(conn, Some(target), &cache)? > access_to(conn, Some(actor), &cache)? {
            beyond.push(cache.name);
        }
    }
    Ok(beyond)
}

/// What user `target` holds beyond `actor`, described ("every permission (administrator)",
/// "manage of vault"); `None` when nothing (or there is no such user). Nobody changes an
/// account that holds more than they do: setting its password would give them all of it.
pub fn user_beyond(conn: &mut AnyConnection, actor: &Caller, UserId(target): UserId) -> DbResult<Option<String>> {
    let Some(user) = users::find(conn, target)? else { return Ok(None) };
    let target = Caller::session(&users::with_group_rights(conn, user)?);
    let mut beyond = Vec::new();
    if !actor.permissions.covers(target.permissions) {
        beyond.push(target.permissions.describe());
    }
    let caches = caches_beyond(conn, actor, &target)?;
    if !caches.is_empty() {
        beyond.push(format!("rights on {}", caches.join(", ")));
    }
    Ok((!beyond.is_empty()).then(|| beyond.join("; ")))
}

/// The caches on which a group's grants give more than `actor` may do: their names.
pub fn group_grants_beyond(conn: &mut AnyConnection, actor: &Caller, group: GroupId) -> DbResult<Vec<String>> {
    let granted = crate::db::groups::grants_of_group(conn, group)?;
    let ids: Vec<i64> = granted.iter().map(|(id, _)| *id).collect();
    let mut beyond = Vec::new();
    for cache in crate::db::browse::caches_by_ids(conn, Some(&ids))? {
        let Some((_, level)) = granted.iter().find(|(id, _)| *id == cache.id) else { continue };
        if Access::from(*level) > access_to(conn, Some(actor), &cache)? {
            beyond.push(cache.name);
        }
    }
    Ok(beyond)
}

/// The caches whose contents the caller can read besides public ones; `None` means all.
pub fn readable_cache_ids(conn: &mut AnyConnection, caller: &Caller) -> DbResult<Option<Vec<i64>>> {
    let granted = if caller.permissions.holds(Permission::ViewCaches) {
        None
    } else {
        Some(users::readable_cache_ids(conn, caller.user_id)?)
    };
    Ok(match (granted, &caller.scope.cache_ids) {
        (None, scope) => scope.clone(),
        (Some(ids), None) => Some(ids),
        (Some(ids), Some(scope)) => Some(ids.into_iter().filter(|id| scope.contains(id)).collect()),
    })
}
