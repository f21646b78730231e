//! Who a token is, which cache a name means, and what the token may do there: decided from
//! memory when it was decided a moment ago and nothing changed since (see `hot_cache` and
//! `replication`: a revocation anywhere is read within a second), so most protocol requests
//! need no database query. The decision itself is `identity::access`'s.

use super::hot_cache::HotCache;
use crate::db::models::Cache;
use crate::db::{Db, DbResult, caches};
use crate::services::identity::access::{Sight, access_to, sight};
use crate::services::identity::auth::{AuthError, Caller, authenticate, hash_token};

/// The cache named `name`, if it exists.
pub async fn find_cache(db: &Db, hot: &HotCache, name: &str) -> DbResult<Option<Cache>> {
    if let Some(cache) = hot.cache(name) {
        return Ok(Some(cache));
    }
    let (lookup, looked_up) = (name.to_string(), hot.access_seen_at());
    let found = db.read(move |c| caches::find_by_name(c, &lookup)).await?;
    if let Some(cache) = &found {
        hot.remember_cache_row(cache, looked_up);
    }
    Ok(found)
}

/// Who `token` authenticates.
pub async fn caller(db: &Db, hot: &HotCache, token: &str) -> Result<Caller, AuthError> {
    caller_with_hash(db, hot, token, &hash_token(token.trim())).await
}

async fn caller_with_hash(db: &Db, hot: &HotCache, token: &str, token_hash: &str) -> Result<Caller, AuthError> {
    if let Some(caller) = hot.caller(token_hash) {
        return Ok(caller);
    }
    let looked_up = hot.access_seen_at();
    let caller = authenticate(db, token).await?;
    hot.remember_caller(token_hash, &caller, looked_up);
    Ok(caller)
}

/// What the holder of `token` sees of `found` (the cache of some name, or none).
pub async fn token_sight(db: &Db, hot: &HotCache, token: &str, found: Option<Cache>) -> Result<Sight, AuthError> {
    let token_hash = hash_token(token.trim());
    // The caller first: it is what notices an expired token (from memory too).
    let caller = caller_with_hash(db, hot, token, &token_hash).await?;
    let Some(cache) = found else { return Ok(Sight::Invisible) };
    let access = match hot.access(&token_hash, cache.id) {
        Some(access) => access,
        None => {
            let (for_check, looked_up) = (cache.clone(), hot.access_seen_at());
            let access = db.read(move |c| access_to(c, Some(&caller), &for_check)).await?;
            hot.remember_access(&token_hash, cache.id, access, looked_up);
            access
        }
    };
    Ok(sight(Some(cache), access))
}
