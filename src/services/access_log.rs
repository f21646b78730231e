//! Counts NAR downloads per path in memory and writes them in batches, so that serving a
//! NAR never waits for a database write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::db::{Db, now, paths};

const FLUSH_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct AccessLog {
    pending: Mutex<HashMap<i64, i64>>,
}

impl AccessLog {
    pub fn record(&self, path_id: i64) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()).entry(path_id).or_default() += 1;
    }

    /// Writes what was counted so far.
    pub async fn flush(&self, db: &Db) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.is_empty() {
            return;
        }
        let result = db
            .write(move |c| {
                let at = now();
                batch.into_iter().try_for_each(|(id, count)| paths::record_accesses(c, id, count, at))
            })
            .await;
        if let Err(e) = result {
            tracing::warn!("could not record path accesses: {e}");
        }
    }

    /// Flushes every few seconds for the life of the process.
    pub async fn run(self: std::sync::Arc<Self>, db: Db) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tick.tick().await;
            self.flush(&db).await;
        }
    }
}
