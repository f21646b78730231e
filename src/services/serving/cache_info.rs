//! What a client needs to know about a cache: how to substitute from it, its keys and
//! upstreams, and what the caller may do with it.

use hibernation::api::CacheInfo;

use crate::db::models::Cache;
use crate::db::{AnyConnection, Db, DbResult, browse, caches, upstreams};
use crate::services::identity::access::{Access, Sight, access_to, look_up, readable_cache_ids, sight};
use crate::services::identity::auth::Caller;

/// The URL Nix substitutes from for the cache `name`.
pub fn substituter_url(site_url: &str, name: &str) -> String {
    format!("{}/api/nix/{name}", site_url.trim_end_matches('/'))
}

/// `signed_in`: sizes are counted only for callers with a token (the count scans the cache).
fn describe(
    conn: &mut AnyConnection,
    site_url: &str,
    cache: Cache,
    access: Access,
    signed_in: bool,
) -> DbResult<CacheInfo> {
    let (paths, stored_bytes) = match signed_in {
        true => browse::cache_sizes(conn, cache.id).map(|(p, b)| (Some(p), Some(b)))?,
        false => (None, None),
    };
    Ok(CacheInfo {
        substituter: substituter_url(site_url, &cache.name),
        public_keys: caches::public_keys(conn, cache.id)?,
        upstreams: upstreams::list(conn, cache.id)?,
        can_push: access >= Access::Push,
        name: cache.name,
        public: cache.is_public,
        priority: cache.priority,
        allow_force_push: cache.allow_force_push,
        paths,
        stored_bytes,
        quota_bytes: cache.quota_bytes,
    })
}

/// The caches the caller can read (public ones for anonymous callers), by name.
pub async fn list(db: &Db, caller: Option<Caller>, site_url: String) -> DbResult<Vec<CacheInfo>> {
    db.read(move |c| {
        let ids = match &caller {
            Some(caller) => readable_cache_ids(c, caller)?,
            None => Some(Vec::new()),
        };
        let mut found = Vec::new();
        for cache in browse::caches_by_ids(c, ids.as_deref())? {
            let access = access_to(c, caller.as_ref(), &cache)?;
            if let Sight::Visible(cache, access) = sight(Some(cache), access) {
                found.push(describe(c, &site_url, cache, access, caller.is_some())?);
            }
        }
        Ok(found)
    })
    .await
}

/// One cache, or `None` when it does not exist or the caller cannot read it.
pub async fn find(db: &Db, caller: Option<Caller>, site_url: String, name: String) -> DbResult<Option<CacheInfo>> {
    db.read(move |c| match look_up(c, caller.as_ref(), &name)? {
        Sight::Visible(cache, access) => describe(c, &site_url, cache, access, caller.is_some()).map(Some),
        Sight::Invisible => Ok(None),
    })
    .await
}
