//! Who may read from and push to which cache.

use super::auth::Caller;
use crate::db::models::Cache;
use crate::db::{AnyConnection, DbResult, users};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    Read,
    Push,
}

pub fn access_to(conn: &mut AnyConnection, caller: Option<&Caller>, cache: &Cache) -> DbResult<Access> {
    let granted = match caller {
        Some(c) if c.is_admin => Access::Push,
        Some(c) => match users::permission(conn, cache.id, c.user_id)? {
            Some(true) => Access::Push,
            Some(false) => Access::Read,
            None => Access::None,
        },
        None => Access::None,
    };
    Ok(if cache.is_public { granted.max(Access::Read) } else { granted })
}

/// The caches whose contents the caller can read besides public ones; `None` means all.
pub fn readable_cache_ids(conn: &mut AnyConnection, caller: &Caller) -> DbResult<Option<Vec<i64>>> {
    if caller.is_admin { Ok(None) } else { users::readable_cache_ids(conn, caller.user_id).map(Some) }
}
