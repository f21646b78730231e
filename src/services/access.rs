//! Who may read from and push to which cache.

use super::auth::Caller;
use crate::db::ids::{CacheId, UserId};
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
