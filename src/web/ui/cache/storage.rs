//! The cache page's storage card: the quota policy and retention in force, the pins, and
//! what eviction, retention and garbage collection last reclaimed.

use crate::db::DbError;
use crate::db::models::{Cache, Reclaim};
use crate::services::lifecycle::pins;
use crate::web::AppState;
use hibernation::api::PinInfo;
use hibernation::human::{count, human_bytes};

/// What the card shows.
pub struct StorageCard {
    pub policy: &'static str,
    /// "quota 50 GiB" or "no quota".
    pub quota: String,
    pub retention_days: Option<i64>,
    pub pins: Vec<PinInfo>,
    /// The latest eviction and retention run of this cache, and the latest garbage collection.
    pub reclaims: Vec<String>,
    /// A pin that was refused, shown again in the form with its error.
    pub attempt: Option<PinAttempt>,
}

/// What was typed into the pin form, and why it was refused.
pub struct PinAttempt {
    pub pin: String,
    pub store_path: String,
    pub error: String,
}

impl StorageCard {
    pub async fn load(state: &AppState, cache: &Cache) -> Result<Self, DbError> {
        let pins = match pins::list(&state.db, cache).await {
            Ok(pins) => pins.iter().map(pins::info).collect(),
            Err(pins::PinError::Db(e)) => return Err(e),
            Err(_) => Vec::new(),
        };
        let reclaims = crate::services::dashboard::latest_reclaims(&state.db, cache.id).await?;
        Ok(Self {
            policy: cache.policy().describe(),
            quota: match cache.quota_bytes {
                Some(q) => format!("quota {}", hibernation::human::gib(q.max(0) as u64)),
                None => "no quota".into(),
            },
            retention_days: cache.retention_seconds.map(|s| s / 86_400),
            pins,
            reclaims: reclaims.iter().map(Self::describe).collect(),
            attempt: None,
        })
    }

    pub fn typed_pin(&self) -> &str {
        self.attempt.as_ref().map_or("", |a| a.pin.as_str())
    }

    pub fn typed_path(&self) -> &str {
        self.attempt.as_ref().map_or("", |a| a.store_path.as_str())
    }

    /// "Last eviction: 3 paths (1.2 MiB) at 2026-11-30 10:00 UTC".
    fn describe(reclaim: &Reclaim) -> String {
        let at = reclaim.at.format("%Y-%m-%d %H:%M UTC");
        let bytes = human_bytes(reclaim.bytes.max(0) as u64);
        match reclaim.kind.as_str() {
            "eviction" => format!("Last eviction: {} ({bytes}) at {at}", count(reclaim.paths, "path", "paths")),
            "retention" => {
                format!("Last retention run: {} ({bytes}) at {at}", count(reclaim.paths, "unused path", "unused paths"))
            }
            "gc" => {
                let objects = count(reclaim.objects, "object", "objects");
                format!("Last garbage collection (all caches): {objects} ({bytes}) at {at}")
            }
            other => format!("{other}: {} at {at}", count(reclaim.paths, "path", "paths")),
        }
    }
}
