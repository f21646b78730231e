//! Who may read from and push to which cache.
//!
//! Every surface (the Nix protocol, the push API, the dashboard) asks one question, "what
//! does this caller see of the cache named so?", through [`look_up`] (or [`sight`] when the
//! cache and the caller's access come from memory), and gets [`Sight::Invisible`] both for a
//! cache that does not exist and for a private one the caller may not read: nobody learns
//! which private caches exist. Each surface answers `Invisible` its one way (the protocol 401,
//! so that Nix fails instead of building everything; the API and the dashboard 404).

use super::auth::Caller;
use crate::db::ids::{CacheId, GroupId, UserId};
use crate::db::models::{Cache, GrantLevel};
use crate::db::permissions::{Permission, Permissions};
use crate::db::{AnyConnection, Db, DbResult, caches, users};

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
            let granted = users::permission(conn, CacheId(cache.id), c.user_id)?.map_or(Access::None, Access::from);
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

/// A cache as one caller sees it.
#[derive(Debug, Clone)]
pub enum Sight {
    /// The caller may at least read the cache; `Access` says what more.
    Visible(Cache, Access),
    /// No cache of that name, or a private one the caller may not read: never told apart.
    Invisible,
}

impl Sight {
    /// The cache and the caller's access, when visible.
    pub fn visible(self) -> Option<(Cache, Access)> {
        match self {
            Self::Visible(cache, access) => Some((cache, access)),
            Self::Invisible => None,
        }
    }
}

/// The rule, for a cache found (or not) and the caller's access to it (`access_to`, or a
/// remembered answer of it).
pub fn sight(found: Option<Cache>, access: Access) -> Sight {
    match found {
        Some(cache) if access > Access::None => Sight::Visible(cache, access),
        _ => Sight::Invisible,
    }
}

/// What `caller` (none: anonymous) sees of the cache named `name`.
pub fn look_up(conn: &mut AnyConnection, caller: Option<&Caller>, name: &str) -> DbResult<Sight> {
    let Some(cache) = caches::find_by_name(conn, name)? else { return Ok(Sight::Invisible) };
    let access = access_to(conn, caller, &cache)?;
    Ok(sight(Some(cache), access))
}

/// [`look_up`] in a read of its own.
pub async fn see(db: &Db, caller: Option<Caller>, name: &str) -> DbResult<Sight> {
    let name = name.to_string();
    db.read(move |c| look_up(c, caller.as_ref(), &name)).await
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
pub fn user_beyond(conn: &mut AnyConnection, actor: &Caller, target: UserId) -> DbResult<Option<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::caches::{self, CacheSettings};
    use crate::db::groups;
    use crate::db::migrated_in_memory;
    use crate::db::models::QuotaPolicy;
    use crate::db::users::TokenScope;

    fn cache(conn: &mut AnyConnection, name: &str, is_public: bool) -> Cache {
        let settings = CacheSettings {
            is_public,
            priority: 40,
            quota_bytes: None,
            keys: Vec::new(),
            upstreams: Some(Vec::new()),
            allow_force_push: Some(false),
            quota_policy: QuotaPolicy::Refuse,
            retention_seconds: None,
        };
        caches::create(conn, name, &settings).unwrap()
    }

    /// A user with these grants on `cache` (directly, or through a group) and these global
    /// permissions (through a group), as a dashboard session sees them.
    fn session(
        conn: &mut AnyConnection,
        login: &str,
        own: Option<(&Cache, GrantLevel)>,
        via_group: Option<(&Cache, GrantLevel)>,
        permissions: Permissions,
    ) -> Caller {
        let user = users::create(conn, login, login, false).unwrap();
        if let Some((cache, level)) = own {
            users::grant(conn, CacheId(cache.id), user.id, level).unwrap();
        }
        if via_group.is_some() || permissions != Permissions::NONE {
            groups::create(conn, login, permissions).unwrap();
            let group = groups::list(conn).unwrap().into_iter().find(|g| g.name == login).unwrap();
            groups::add_member(conn, group.id, user.id).unwrap();
            if let Some((cache, level)) = via_group {
                groups::grant(conn, CacheId(cache.id), group.id, level).unwrap();
            }
        }
        let user = users::find(conn, user.id).unwrap().unwrap();
        Caller::session(&users::with_group_rights(conn, user).unwrap())
    }

    fn token(caller: &Caller, cache_ids: Option<Vec<i64>>, read_only: bool) -> Caller {
        Caller { token_name: "ci".into(), scope: TokenScope { cache_ids, read_only }, ..caller.clone() }
    }

    /// Every kind of caller against a public and a private cache: what each may do.
    #[test]
    fn the_access_matrix() {
        use Access::{Manage, None as Nothing, Push, Read};
        let conn = &mut migrated_in_memory();
        let (public, private) = (cache(conn, "public", true), cache(conn, "private", false));
        let none = Permissions::NONE;
        let view_all = Permissions::of([Permission::ViewCaches]);
        let manage_all = Permissions::of([Permission::ManageCaches]);
        let stranger = session(conn, "stranger", None, None, none);
        let reader = session(conn, "reader", Some((&private, GrantLevel::Read)), None, none);
        let pusher = session(conn, "pusher", Some((&private, GrantLevel::Push)), None, none);
        let manager = session(conn, "manager", Some((&private, GrantLevel::Manage)), None, none);
        let group_pusher = session(conn, "group-pusher", None, Some((&private, GrantLevel::Push)), none);
        // The stronger of the user's own grant and their group's counts.
        let both =
            session(conn, "both", Some((&private, GrantLevel::Read)), Some((&private, GrantLevel::Manage)), none);
        let viewer = session(conn, "viewer", None, None, view_all);
        let cache_admin = session(conn, "cache-admin", None, None, manage_all);
        let admin = session(conn, "admin", None, None, Permissions::ALL);
        let cases: Vec<(&str, Option<Caller>, Access, Access)> = vec![
            ("anonymous", None, Read, Nothing),
            ("a user without grants", Some(stranger.clone()), Read, Nothing),
            ("a reader", Some(reader.clone()), Read, Read),
            ("a pusher", Some(pusher.clone()), Read, Push),
            ("a manager", Some(manager.clone()), Read, Manage),
            ("a pusher through a group", Some(group_pusher.clone()), Read, Push),
            ("a reader whose group manages", Some(both), Read, Manage),
            ("view every cache", Some(viewer.clone()), Read, Read),
            ("manage every cache", Some(cache_admin.clone()), Manage, Manage),
            ("an administrator", Some(admin.clone()), Manage, Manage),
            ("the pusher's unlimited token", Some(token(&pusher, None, false)), Read, Push),
            ("the pusher's read-only token", Some(token(&pusher, None, true)), Read, Read),
            (
                "the manager's token for the public cache only",
                Some(token(&manager, Some(vec![public.id]), false)),
                Read,
                Nothing,
            ),
            (
                "the manager's token for the private cache only",
                Some(token(&manager, Some(vec![private.id]), false)),
                Read,
                Manage,
            ),
            ("the administrator's read-only token", Some(token(&admin, None, true)), Read, Read),
            (
                "the administrator's token for the private cache",
                Some(token(&admin, Some(vec![private.id]), false)),
                Read,
                Manage,
            ),
            (
                "the group pusher's token for the public cache",
                Some(token(&group_pusher, Some(vec![public.id]), false)),
                Read,
                Nothing,
            ),
            ("the viewer's token scoped elsewhere", Some(token(&viewer, Some(vec![public.id]), false)), Read, Nothing),
            ("a stranger's token", Some(token(&stranger, None, false)), Read, Nothing),
        ];
        // What each surface sees by name: the cache and the access, or nothing at all, the
        // same for a private cache the caller may not read as for one that does not exist.
        let expected = |name: &str, access: Access| (access != Nothing).then(|| (name.to_string(), access));
        for (who, caller, on_public, on_private) in cases {
            assert_eq!(access_to(conn, caller.as_ref(), &public).unwrap(), on_public, "{who} on the public cache");
            assert_eq!(access_to(conn, caller.as_ref(), &private).unwrap(), on_private, "{who} on the private cache");
            let mut seen = |name: &str| {
                look_up(conn, caller.as_ref(), name).unwrap().visible().map(|(cache, access)| (cache.name, access))
            };
            assert_eq!(seen("public"), expected("public", on_public), "{who} looking up the public cache");
            assert_eq!(seen("private"), expected("private", on_private), "{who} looking up the private cache");
            assert_eq!(seen("missing"), None, "{who} looking up a missing cache");
        }
        // Who can list the private cache's contents besides public ones (None: every cache).
        assert_eq!(readable_cache_ids(conn, &stranger).unwrap(), Some(vec![]));
        assert_eq!(readable_cache_ids(conn, &group_pusher).unwrap(), Some(vec![private.id]));
        assert_eq!(readable_cache_ids(conn, &viewer).unwrap(), None);
        assert_eq!(
            readable_cache_ids(conn, &token(&viewer, Some(vec![public.id]), false)).unwrap(),
            Some(vec![public.id])
        );
        assert_eq!(readable_cache_ids(conn, &token(&reader, Some(vec![public.id]), false)).unwrap(), Some(vec![]));
    }
}
