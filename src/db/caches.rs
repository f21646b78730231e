//! Caches and their public signing keys.

use diesel::prelude::*;

use super::models::{Cache, QuotaPolicy};
use super::schema::{cache_keys, caches};
use super::{AnyConnection, DbResult, now};

pub fn find_by_name(conn: &mut AnyConnection, name: &str) -> DbResult<Option<Cache>> {
    Ok(caches::table.filter(caches::name.eq(name)).select(Cache::as_select()).first(conn).optional()?)
}

/// What a cache is created with, or changed to.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub is_public: bool,
    pub priority: i32,
    pub quota_bytes: Option<i64>,
    pub keys: Vec<String>,
    /// `None`: a new cache starts with cache.nixos.org; a changed one keeps its upstreams.
    pub upstreams: Option<Vec<hibernation::api::Upstream>>,
    /// `None`: not allowed for a new cache; unchanged for an existing one.
    pub allow_force_push: Option<bool>,
    pub quota_policy: QuotaPolicy,
    pub retention_seconds: Option<i64>,
}

pub fn create(conn: &mut AnyConnection, name: &str, settings: &CacheSettings) -> DbResult<Cache> {
    let created_at = now();
    diesel::insert_into(caches::table)
        .values((
            caches::name.eq(name),
            caches::is_public.eq(settings.is_public),
            caches::priority.eq(settings.priority),
            caches::quota_bytes.eq(settings.quota_bytes),
            caches::allow_force_push.eq(settings.allow_force_push.unwrap_or(false)),
            caches::quota_policy.eq(settings.quota_policy.name()),
            caches::retention_seconds.eq(settings.retention_seconds),
            caches::created_at.eq(created_at),
        ))
        .execute(conn)?;
    let cache = find_by_name(conn, name)?.ok_or(diesel::result::Error::NotFound)?;
    for key in &settings.keys {
        add_key(conn, cache.id, key)?;
    }
    let upstreams = settings.upstreams.clone().unwrap_or_else(|| vec![hibernation::api::Upstream::default_upstream()]);
    super::upstreams::replace(conn, cache.id, &upstreams)?;
    Ok(cache)
}

pub fn add_key(conn: &mut AnyConnection, cache_id: i64, public_key: &str) -> DbResult<()> {
    diesel::insert_into(cache_keys::table)
        .values((
            cache_keys::cache_id.eq(cache_id),
            cache_keys::public_key.eq(public_key),
            cache_keys::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The cache's public keys as stored (`name:base64`).
pub fn public_keys(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<String>> {
    Ok(cache_keys::table
        .filter(cache_keys::cache_id.eq(cache_id))
        .order(cache_keys::id)
        .select(cache_keys::public_key)
        .load(conn)?)
}

pub fn rename(conn: &mut AnyConnection, cache_id: i64, name: &str) -> DbResult<()> {
    diesel::update(caches::table.find(cache_id)).set(caches::name.eq(name)).execute(conn)?;
    Ok(())
}

/// Caches that remove paths unused for a while.
pub fn with_retention(conn: &mut AnyConnection) -> DbResult<Vec<Cache>> {
    Ok(caches::table.filter(caches::retention_seconds.is_not_null()).select(Cache::as_select()).load(conn)?)
}

/// Quota, policy and retention to change; `None` leaves a setting as it is.
#[derive(Debug, Default)]
pub struct LifecycleChange {
    pub quota_bytes: Option<Option<i64>>,
    pub quota_policy: Option<QuotaPolicy>,
    pub retention_seconds: Option<Option<i64>>,
}

pub fn change_lifecycle(conn: &mut AnyConnection, cache_id: i64, change: &LifecycleChange) -> DbResult<()> {
    let row = caches::table.find(cache_id);
    if let Some(quota) = change.quota_bytes {
        diesel::update(row).set(caches::quota_bytes.eq(quota)).execute(conn)?;
    }
    if let Some(policy) = change.quota_policy {
        diesel::update(row).set(caches::quota_policy.eq(policy.name())).execute(conn)?;
    }
    if let Some(retention) = change.retention_seconds {
        diesel::update(row).set(caches::retention_seconds.eq(retention)).execute(conn)?;
    }
    Ok(())
}
