//! Named pins: each keeps a path and its closure in its cache, safe from eviction and
//! retention. Re-pinning a name moves it (`release` always names the latest build); a pin may
//! end on its own after a lifetime.

use chrono::NaiveDateTime;
use hibernation::api::{PIN_NAME_RULE, PinInfo, is_valid_pin_name};
use hibernation::nix::StorePath;

use crate::db::models::{Cache, Pin};
use crate::db::{Db, DbError, lifecycle, now, paths};

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("invalid pin name {0:?}: {PIN_NAME_RULE}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("cache {cache:?} does not hold {path}: push it first")]
    NotInCache { cache: String, path: String },
    #[error("cache {cache:?} has no pin named {name:?}")]
    NoSuchPin { cache: String, name: String },
    #[error("a pin lifetime must be above zero")]
    InvalidLifetime,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Pins `store_path` (which the cache must hold) as `name`, moving the pin if it exists.
pub async fn pin(
    db: &Db,
    cache: &Cache,
    name: &str,
    store_path: &str,
    expires_in_seconds: Option<i64>,
) -> Result<PinInfo, PinError> {
    if !is_valid_pin_name(name) {
        return Err(PinError::InvalidName(name.to_string()));
    }
    let path = StorePath::parse(store_path.trim()).map_err(|e| PinError::InvalidPath(e.to_string()))?;
    let expires_at = match expires_in_seconds {
        Some(s) if s <= 0 => return Err(PinError::InvalidLifetime),
        Some(s) => Some(now() + chrono::Duration::seconds(s)),
        None => None,
    };
    let (cache_id, base_name, name_owned) = (cache.id, path.base_name().to_string(), name.to_string());
    let hash = path.hash_part().to_string();
    let pinned_at = now();
    let pinned = db
        .write(move |c| {
            if paths::find_entry(c, cache_id, &hash)?.is_none() {
                return Ok(false);
            }
            lifecycle::put_pin(c, cache_id, &name_owned, &base_name, pinned_at, expires_at)?;
            Ok(true)
        })
        .await?;
    if !pinned {
        return Err(PinError::NotInCache { cache: cache.name.clone(), path: path.full_path() });
    }
    Ok(info(&Pin {
        id: 0,
        cache_id,
        name: name.to_string(),
        store_path: path.base_name().to_string(),
        created_at: pinned_at,
        expires_at,
    }))
}

/// The cache's pins, by name (expired ones are left out; garbage collection removes them).
pub async fn list(db: &Db, cache: &Cache) -> Result<Vec<Pin>, PinError> {
    let cache_id = cache.id;
    let at = now();
    let pins = db.read(move |c| lifecycle::list_pins(c, cache_id)).await?;
    Ok(pins.into_iter().filter(|p| p.expires_at.is_none_or(|e| e > at)).collect())
}

pub async fn unpin(db: &Db, cache: &Cache, name: &str) -> Result<(), PinError> {
    let (cache_id, owned) = (cache.id, name.to_string());
    if !db.write(move |c| lifecycle::delete_pin(c, cache_id, &owned)).await? {
        return Err(PinError::NoSuchPin { cache: cache.name.clone(), name: name.to_string() });
    }
    Ok(())
}

pub fn info(pin: &Pin) -> PinInfo {
    let rfc3339 = |t: NaiveDateTime| t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    PinInfo {
        name: pin.name.clone(),
        store_path: format!("{}/{}", hibernation::nix::STORE_DIR, pin.store_path),
        pinned_at: rfc3339(pin.created_at),
        expires_at: pin.expires_at.map(rfc3339),
    }
}
