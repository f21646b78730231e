//! Creating, changing, clearing and deleting caches, for the dashboard and the admin CLI
//! alike: one set of rules for names, keys, quotas and upstreams, and the operations that
//! apply them (with the in-memory caches forgotten and storage tidied as each needs).

use hibernation::api::{CACHE_NAME_RULE, Upstream, is_valid_cache_name};
use hibernation::nix::PublicKey;

use super::serving::hot_cache::HotCache;
use super::upload::push::delete_stored;
use crate::db::browse;
use crate::db::caches::CacheSettings;
use crate::db::ids::CacheId;
use crate::db::models::{Cache, GrantLevel, QuotaPolicy, User};
use crate::db::paths::{self, DeleteOutcome};
use crate::db::{Db, DbError, caches, is_unique_violation, upstreams, users};
use crate::storage::Storage;

/// A setting that breaks a rule: which field, and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub field: &'static str,
    pub message: String,
}

impl SettingError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

impl std::fmt::Display for SettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SettingError {}

pub fn check_name(name: &str) -> Result<(), SettingError> {
    if is_valid_cache_name(name) {
        Ok(())
    } else {
        Err(SettingError::new("name", format!("Invalid cache name {name:?}: {CACHE_NAME_RULE}.")))
    }
}

/// Public keys, one per entry (blank entries dropped), each a valid `name:base64` key.
pub fn check_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, SettingError> {
    let keys: Vec<String> = keys.into_iter().map(str::trim).filter(|k| !k.is_empty()).map(str::to_string).collect();
    for key in &keys {
        PublicKey::parse(key).map_err(|e| SettingError::new("keys", format!("Invalid public key {key}: {e}")))?;
    }
    Ok(keys)
}

/// A quota in GiB (`50`, `0.5`); empty or `none` for no quota.
pub fn parse_quota_gib(text: &str) -> Result<Option<i64>, SettingError> {
    match text.trim() {
        "" | "none" => Ok(None),
        text => hibernation::human::parse_gib(text).map(|bytes| Some(bytes as i64)).ok_or_else(|| {
            SettingError::new("quota", format!("Invalid quota {text:?}: give a size in GiB such as 50 or 0.5."))
        }),
    }
}

/// Upstream caches, one `<url> <public key>...` per entry (blank entries dropped).
pub fn parse_upstreams<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<Upstream>, SettingError> {
    lines
        .into_iter()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            Upstream::parse_line(line).map_err(|e| SettingError::new("upstreams", format!("Invalid upstream: {e}")))
        })
        .collect()
}

/// A quota policy by name; empty for the default (refuse).
pub fn parse_policy(text: &str) -> Result<QuotaPolicy, SettingError> {
    match text.trim() {
        "" => Ok(QuotaPolicy::Refuse),
        text => QuotaPolicy::parse(text)
            .ok_or_else(|| SettingError::new("quota_policy", "Choose refuse, lru, lfu or oldest.")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("a cache named {0:?} exists")]
    NameTaken(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Why a change of a cache named on the command line was refused.
#[derive(Debug, thiserror::Error)]
pub enum NamedCacheError {
    #[error("cache {0:?} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("cache {0:?} already has this key")]
    KeyTaken(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Creates a cache. A creator who is not an administrator gets the manage right on it;
/// `None` (the admin CLI) grants nothing.
pub async fn create(db: &Db, creator: Option<&User>, name: &str, settings: CacheSettings) -> Result<Cache, CacheError> {
    let (owned, manager) = (name.to_string(), creator.filter(|u| !u.is_admin()).map(|u| u.id));
    let created = db
        .write(move |c| {
            let cache = caches::create(c, &owned, &settings)?;
            if let Some(user_id) = manager {
                users::grant(c, CacheId(cache.id), user_id, GrantLevel::Manage)?;
            }
            Ok(cache)
        })
        .await;
    created.map_err(|e| if is_unique_violation(&e) { CacheError::NameTaken(name.to_string()) } else { e.into() })
}

/// Changes a cache's settings and name, then evicts at once if a lowered quota asks for it
/// under an evicting policy. Returns the cache as it is now.
pub async fn update(
    db: &Db,
    hot: &HotCache,
    cache: &Cache,
    new_name: &str,
    settings: CacheSettings,
    eviction_min_age: chrono::Duration,
) -> Result<Cache, CacheError> {
    let (id, renamed) = (cache.id, new_name.to_string());
    let saved = db
        .write(move |c| {
            caches::update(c, id, &settings)?;
            caches::rename(c, id, &renamed)?;
            crate::db::replication::access_changed(c)?;
            caches::find_by_name(c, &renamed)
        })
        .await;
    let updated = match saved {
        Ok(Some(updated)) => updated,
        // Deleted in the meantime.
        Ok(None) => return Err(CacheError::Db(DbError::Query(diesel::result::Error::NotFound))),
        Err(e) if is_unique_violation(&e) => return Err(CacheError::NameTaken(new_name.to_string())),
        Err(e) => return Err(e.into()),
    };
    hot.forget_cache(cache.id, &cache.name);
    if let Err(e) = super::lifecycle::eviction::fit_quota(db, &updated, eviction_min_age).await {
        tracing::warn!("could not evict from cache {new_name} to fit its quota: {e}");
    }
    Ok(updated)
}

/// Adds a public key to the cache named `name` (the admin CLI; the settings page replaces the
/// whole list through [`update`]).
pub async fn add_key(db: &Db, name: &str, public_key: &str) -> Result<(), NamedCacheError> {
    let key = check_keys([public_key])?
        .into_iter()
        .next()
        .ok_or_else(|| SettingError::new("keys", "Give a public key (name:base64)."))?;
    let owned = name.to_string();
    let added = db
        .write(move |c| {
            let Some(cache) = caches::find_by_name(c, &owned)? else { return Ok(false) };
            caches::add_key(c, cache.id, &key)?;
            crate::db::replication::access_changed(c)?;
            Ok(true)
        })
        .await;
    match added {
        Ok(true) => Ok(()),
        Ok(false) => Err(NamedCacheError::NotFound(name.to_string())),
        Err(e) if is_unique_violation(&e) => Err(NamedCacheError::KeyTaken(name.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Changes the quota, quota policy or retention of the cache named `name` (the admin CLI),
/// then evicts at once what a lowered quota asks for under an evicting policy (paths pushed
/// within `eviction_min_age` stay). Returns what was evicted.
pub async fn change_lifecycle(
    db: &Db,
    name: &str,
    change: caches::LifecycleChange,
    eviction_min_age: chrono::Duration,
) -> Result<super::lifecycle::eviction::Removed, NamedCacheError> {
    let owned = name.to_string();
    let changed = db
        .write(move |c| {
            let Some(cache) = caches::find_by_name(c, &owned)? else { return Ok(None) };
            caches::change_lifecycle(c, cache.id, &change)?;
            crate::db::replication::access_changed(c)?;
            caches::find_by_name(c, &owned)
        })
        .await?;
    let cache = changed.ok_or_else(|| NamedCacheError::NotFound(name.to_string()))?;
    Ok(super::lifecycle::eviction::fit_quota(db, &cache, eviction_min_age).await?)
}

/// Removes every path of the cache (`whole_cache`: and the cache itself). NAR files go to
/// garbage collection; a deleted cache's pending uploads and build logs are deleted here.
pub async fn destroy(
    db: &Db,
    hot: &HotCache,
    storage: &Storage,
    cache: &Cache,
    whole_cache: bool,
) -> Result<(), DbError> {
    let id = cache.id;
    let logs = db
        .write(move |c| {
            let logs = if whole_cache { caches::delete(c, id)? } else { caches::clear(c, id).map(|()| Vec::new())? };
            crate::db::replication::access_changed(c)?;
            Ok(logs)
        })
        .await?;
    hot.forget_cache(cache.id, &cache.name);
    for key in logs {
        delete_stored(storage, &key).await;
    }
    Ok(())
}

/// Deletes one path unless other paths in the cache need it.
pub async fn delete_path(db: &Db, hot: &HotCache, cache_id: i64, hash_part: &str) -> Result<DeleteOutcome, DbError> {
    let hash = hash_part.to_string();
    let outcome = db.write(move |c| paths::delete(c, cache_id, &hash)).await?;
    if matches!(outcome, DeleteOutcome::Deleted) {
        hot.forget_narinfo(cache_id, hash_part);
    }
    Ok(outcome)
}

/// The cache's upstreams, as configured.
pub async fn upstreams_of(db: &Db, cache_id: i64) -> Result<Vec<Upstream>, DbError> {
    db.read(move |c| upstreams::list(c, cache_id)).await
}

/// The cache's contents stamp (see [`browse::contents_stamp`]).
pub async fn contents_stamp(db: &Db, cache_id: i64) -> Result<String, DbError> {
    db.read(move |c| browse::contents_stamp(c, Some(&[cache_id]))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_with_the_field_they_are_about() {
        assert!(check_name("main").is_ok());
        assert_eq!(check_name("Not Valid").unwrap_err().field, "name");
        assert_eq!(check_keys(["", "  "]).unwrap(), Vec::<String>::new());
        assert_eq!(check_keys(["nonsense"]).unwrap_err().field, "keys");
        assert_eq!(parse_quota_gib("").unwrap(), None);
        assert_eq!(parse_quota_gib("none").unwrap(), None);
        assert_eq!(parse_quota_gib("1").unwrap(), Some(1 << 30));
        assert_eq!(parse_quota_gib("lots").unwrap_err().field, "quota");
        assert_eq!(parse_policy("").unwrap(), QuotaPolicy::Refuse);
        assert_eq!(parse_policy("lru").unwrap(), QuotaPolicy::Lru);
        assert_eq!(parse_policy("fifo").unwrap_err().field, "quota_policy");
        assert_eq!(parse_upstreams(["ftp://x key"]).unwrap_err().field, "upstreams");
    }
}
