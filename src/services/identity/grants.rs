//! Who may use a cache beyond its public reads: grants to users and groups, and the lists
//! the settings page offers. A change takes effect at once (remembered rights forgotten).

use super::access::{Access, access_to};
use super::auth::Caller;
use crate::db::ids::{CacheId, GroupId, UserId};
use crate::db::models::{GrantLevel, User, user_label};
use crate::db::{Db, DbError, groups, users};
use crate::services::serving::hot_cache::HotCache;

/// What `user` may do with the cache `cache` (by id); `None` when there is no such cache.
/// Nobody grants more than this, nor takes away a grant above it.
pub async fn access_of(db: &Db, user: &User, CacheId(cache): CacheId) -> Result<Option<Access>, DbError> {
    let caller = Caller::session(user);
    db.read(move |c| {
        let Some(found) = crate::db::browse::caches_by_ids(c, Some(&[cache]))?.into_iter().find(|f| f.id == cache)
        else {
            return Ok(None);
        };
        access_to(c, Some(&caller), &found).map(Some)
    })
    .await
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy)]
pub enum Grantee {
    User(UserId),
    Group(GroupId),
}

/// Grants `level` on the cache, replacing an earlier grant; false when the user or group
/// does not exist. `hot`: the serving process's remembered rights, forgotten at once (the
/// admin CLI has none; servers notice within the rights cache's lifetime).
pub async fn grant(
    db: &Db,
    hot: Option<&HotCache>,
    cache: CacheId,
    grantee: Grantee,
    level: GrantLevel,
) -> Result<bool, DbError> {
    let granted = db
        .write(move |c| {
            let exists = match grantee {
                Grantee::User(user) => users::find(c, user)?.is_some(),
                Grantee::Group(group) => groups::list(c)?.iter().any(|g| g.id == group),
            };
            match (exists, grantee) {
                (true, Grantee::User(user)) => users::grant(c, cache, user, level)?,
                (true, Grantee::Group(group)) => groups::grant(c, cache, group, level)?,
                (false, _) => {}
            }
            crate::db::replication::access_changed(c)?;
            Ok(exists)
        })
        .await?;
    if let Some(hot) = hot {
        hot.forget_rights();
    }
    Ok(granted)
}

pub async fn revoke(db: &Db, hot: &HotCache, cache: CacheId, grantee: Grantee) -> Result<(), DbError> {
    db.write(move |c| {
        match grantee {
            Grantee::User(user) => users::revoke_grant(c, cache, user)?,
            Grantee::Group(group) => groups::revoke(c, cache, group)?,
        };
        crate::db::replication::access_changed(c)?;
        Ok(())
    })
    .await?;
    hot.forget_rights();
    Ok(())
}

/// The grants on a cache and who could be granted access next.
pub struct AccessLists {
    /// Users granted access: (id, name, level).
    pub grants: Vec<(UserId, String, GrantLevel)>,
    /// Users who could be granted access (administrators can do everything anyway).
    pub candidates: Vec<(UserId, String)>,
    /// Groups granted access: (id, name, level).
    pub group_grants: Vec<(GroupId, String, GrantLevel)>,
    /// Groups that could be granted access.
    pub group_candidates: Vec<(GroupId, String)>,
}

pub async fn access_lists(db: &Db, CacheId(cache_id): CacheId) -> Result<AccessLists, DbError> {
    db.read(move |c| {
        let grants = users::grants_on(c, cache_id)?;
        let candidates = users::list(c)?
            .into_iter()
            .filter(|u| !u.is_admin() && !grants.iter().any(|(id, _, _)| *id == u.id))
            .map(|u| (u.id, user_label(&u.name, &u.login)))
            .collect();
        let group_grants = groups::grants_on(c, cache_id)?;
        let group_candidates = groups::list(c)?
            .into_iter()
            .filter(|g| !group_grants.iter().any(|(id, _, _)| *id == g.id))
            .map(|g| (g.id, g.name))
            .collect();
        Ok(AccessLists { grants, candidates, group_grants, group_candidates })
    })
    .await
}
