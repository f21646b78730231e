//! The background storage lifecycle: on a schedule, retention removes paths unused for longer
//! than their cache keeps them, then garbage collection deletes what nothing uses any more.

use crate::db::{Db, now};
use crate::storage::Storage;

use super::{Timing, eviction, gc};

/// Retention for every cache that has it; errors are logged and the next cache goes on.
pub async fn apply_retention(db: &Db, eviction_min_age: chrono::Duration) {
    let caches = match db.read(crate::db::caches::with_retention).await {
        Ok(caches) => caches,
        Err(e) => return tracing::warn!("could not read the caches for retention: {e}"),
    };
    for cache in caches {
        let Some(seconds) = cache.retention_seconds else { continue };
        let unused_since = now() - chrono::Duration::seconds(seconds);
        if let Err(e) =
            eviction::apply_retention(db, &cache, unused_since, eviction::pushed_before(eviction_min_age)).await
        {
            tracing::warn!("retention of cache {} failed: {e}", cache.name);
        }
    }
}

pub async fn run(db: Db, storage: Storage, lifecycle: Timing) {
    let mut tick = tokio::time::interval(lifecycle.gc_interval);
    loop {
        tick.tick().await;
        apply_retention(&db, lifecycle.eviction_min_age).await;
        match gc::collect(&db, &storage, lifecycle.gc_grace, false).await {
            Ok(_) | Err(gc::GcError::Busy) => {}
            Err(e) => tracing::warn!("garbage collection failed: {e}"),
        }
    }
}
