//! Counts traffic in memory and writes it in batches, so serving a narinfo or a NAR never
//! waits for a database write: NAR downloads per path (access count, last access) and
//! narinfo hits, misses and NAR bytes per cache and hour (the overview's chart).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::db::traffic::{self, TrafficDelta};
use crate::db::{Db, now, paths};

const FLUSH_EVERY: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Pending {
    path_accesses: HashMap<i64, i64>,
    traffic: HashMap<(i64, NaiveDateTime), TrafficDelta>,
}

#[derive(Default)]
pub struct AccessLog {
    pending: Mutex<Pending>,
}

impl AccessLog {
    fn with_pending(&self, update: impl FnOnce(&mut Pending)) {
        update(&mut self.pending.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// A NAR of `path_id` in `cache_id` is being served (`bytes` of it).
    pub fn record_nar(&self, cache_id: i64, path_id: i64, bytes: u64) {
        self.with_pending(|p| {
            *p.path_accesses.entry(path_id).or_default() += 1;
            p.traffic.entry((cache_id, traffic::current_hour())).or_default().nar_bytes += bytes as i64;
        });
    }

    pub fn record_narinfo(&self, cache_id: i64, hit: bool) {
        self.with_pending(|p| {
            let entry = p.traffic.entry((cache_id, traffic::current_hour())).or_default();
            if hit { entry.narinfo_hits += 1 } else { entry.narinfo_misses += 1 }
        });
    }

    /// Writes what was counted so far.
    pub async fn flush(&self, db: &Db) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if batch.path_accesses.is_empty() && batch.traffic.is_empty() {
            return;
        }
        let result = db
            .write(move |c| {
                let at = now();
                for (id, count) in batch.path_accesses {
                    paths::record_accesses(c, id, count, at)?;
                }
                for ((cache_id, hour), delta) in batch.traffic {
                    traffic::add(c, cache_id, hour, delta)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = result {
            tracing::warn!("could not record traffic: {e}");
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
