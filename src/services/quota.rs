//! Quotas: a push that would take a cache past its quota is refused (policy `refuse`), or
//! room is made by eviction (`lru`, `lfu`, `oldest`) without taking anything the pushed path
//! needs.

use super::eviction;
use super::push_error::PushError;
use crate::db::models::Cache;
use crate::db::{Db, caches};

/// When a quota is checked.
#[derive(Debug, Clone, Copy)]
pub enum QuotaCheck<'a> {
    /// A NAR arriving from `nix copy`, before its narinfo names its references: evicting now
    /// could take a path the narinfo needs, so an evicting cache only refuses a NAR larger
    /// than its whole quota here, and makes room when the narinfo commits.
    Arrival,
    /// A path about to become visible, referencing `needs` (base names), which stay.
    Commit { needs: &'a [String] },
}

/// Makes room for `incoming` more bytes, or refuses them. NARs uploaded by `nix copy` that
/// wait for their narinfo count as used.
pub async fn make_room(db: &Db, cache: &Cache, incoming: i64, check: QuotaCheck<'_>) -> Result<(), PushError> {
    let Some(quota) = cache.quota_bytes else { return Ok(()) };
    let mut used = eviction::used_bytes(db, cache.id).await?;
    if used + incoming <= quota {
        return Ok(());
    }
    let why = if !cache.policy().evicts() {
        "make room or raise the quota, or let the cache evict (quota policy lru, lfu or oldest)"
    } else if incoming > quota {
        "it is larger than the whole quota"
    } else if let QuotaCheck::Commit { needs } = check {
        // The cache row may be seconds old (it is reused from memory): evict by the current
        // settings, or not at all when the quota was raised or lifted meanwhile.
        let name = cache.name.clone();
        let Some(current) = db.read(move |c| caches::find_by_name(c, &name)).await? else { return Ok(()) };
        let Some(quota) = current.quota_bytes.filter(|_| current.policy().evicts()) else { return Ok(()) };
        if used + incoming > quota {
            eviction::evict(db, &current, used + incoming - quota, eviction::pushed_before(), needs).await?;
            used = eviction::used_bytes(db, cache.id).await?;
        }
        if used + incoming <= quota {
            return Ok(());
        }
        "what is left is pinned, was pushed within EVICTION_MIN_AGE, or is needed by those paths or this one"
    } else {
        return Ok(());
    };
    let gib = |b: i64| hibernation::format::gib(b.max(0) as u64);
    Err(PushError::OverQuota {
        cache: cache.name.clone(),
        used: gib(used),
        quota: gib(quota),
        needed: gib(incoming),
        why,
    })
}
