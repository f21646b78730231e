//! Quotas: a push that would take a cache past its quota is refused (policy `refuse`), or
//! room is made by eviction (`lru`, `lfu`, `oldest`) without taking anything the pushed path
//! needs.

use super::push_error::PushError;
use crate::db::models::Cache;
use crate::db::{Db, lifecycle};
use crate::services::lifecycle::eviction;

/// When a quota is checked.
#[derive(Debug, Clone, Copy)]
pub enum QuotaCheck<'a> {
    /// A NAR arriving from `nix copy`, before its narinfo names its references: evicting now
    /// could take a path the narinfo needs, so an evicting cache only refuses a NAR larger
    /// than its whole quota here, and makes room when the narinfo commits.
    Arrival,
    /// A path about to become visible, referencing `needs` (base names), which stay, as do
    /// paths pushed within `eviction_min_age`.
    Commit { needs: &'a [String], eviction_min_age: chrono::Duration },
}

/// Makes room for `incoming` more bytes, or refuses them. NARs uploaded by `nix copy` that
/// wait for their narinfo count as used.
///
/// `cache` may be a row the caller reused from memory, seconds old: every decision here is
/// taken on the cache's current settings, read again, so that a quota or policy changed
/// through another process refuses (or no longer refuses) at once.
pub async fn make_room(db: &Db, cache: &Cache, incoming: i64, check: QuotaCheck<'_>) -> Result<(), PushError> {
    let id = cache.id;
    let Some(cache) = db.read(move |c| lifecycle::current_cache(c, id)).await? else { return Ok(()) };
    let Some(quota) = cache.quota_bytes else { return Ok(()) };
    let mut used = eviction::used_bytes(db, cache.id).await?;
    if used + incoming <= quota {
        return Ok(());
    }
    let why = if !cache.policy().evicts() {
        "make room or raise the quota, or let the cache evict (quota policy lru, lfu or oldest)"
    } else if incoming > quota {
        "it is larger than the whole quota"
    } else if let QuotaCheck::Commit { needs, eviction_min_age } = check {
        let pushed_before = eviction::pushed_before(eviction_min_age);
        eviction::evict(db, &cache, used + incoming - quota, pushed_before, needs).await?;
        used = eviction::used_bytes(db, cache.id).await?;
        if used + incoming <= quota {
            return Ok(());
        }
        "what is left is pinned, was pushed within EVICTION_MIN_AGE, or is needed by those paths or this one"
    } else {
        return Ok(());
    };
    let gib = |b: i64| hibernation::human::gib(b.max(0) as u64);
    Err(PushError::OverQuota {
        cache: cache.name.clone(),
        used: gib(used),
        quota: gib(quota),
        needed: gib(incoming),
        why,
    })
}
