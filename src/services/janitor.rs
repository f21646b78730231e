//! Periodic clean-up of state nobody will use: NARs uploaded by `nix copy` whose narinfo
//! never arrived, and CLI login requests nobody approved in time.

use std::time::Duration;

use super::push::delete_stored;
use crate::db::{Db, now, uploads};
use crate::storage::Storage;

/// A narinfo follows its NAR within seconds; a day is far beyond any retry.
const PENDING_LIFETIME: chrono::Duration = chrono::Duration::hours(24);
const EVERY: Duration = Duration::from_secs(3600);

pub async fn remove_stale_pending(db: &Db, storage: &Storage) {
    let cutoff = now() - PENDING_LIFETIME;
    match db.write(move |c| uploads::take_stale_pending(c, cutoff)).await {
        Ok(stale) => {
            for pending in &stale {
                delete_stored(storage, &pending.storage_key).await;
            }
            if !stale.is_empty() {
                tracing::info!("removed {} NAR uploads whose narinfo never arrived", stale.len());
            }
        }
        Err(e) => tracing::warn!("could not clean up pending uploads: {e}"),
    }
}

pub async fn run(db: Db, storage: Storage) {
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        remove_stale_pending(&db, &storage).await;
        if let Err(e) = db.write(crate::db::cli_logins::delete_expired).await {
            tracing::warn!("could not remove expired CLI login requests: {e}");
        }
    }
}
