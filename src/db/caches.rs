//! Caches and their public signing keys: created, changed, cleared and deleted.

use diesel::prelude::*;

use super::models::{Cache, QuotaPolicy};
use super::schema::{cache_keys, caches, store_paths};
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

/// Removes every path of a cache; the NARs no cache uses any more wait for garbage collection.
pub fn clear(conn: &mut AnyConnection, cache_id: i64) -> DbResult<()> {
    let mut nar_ids = Vec::new();
    // On PostgreSQL a commit that locked a path of this cache before the delete reached it
    // lands its new path after; the next round removes it, so no path is left whose
    // references are gone. Later commits find their references missing.
    for _ in 0..100 {
        let rows: Vec<(i64, i64)> = store_paths::table
            .filter(store_paths::cache_id.eq(cache_id))
            .select((store_paths::id, store_paths::nar_id))
            .load(conn)?;
        if rows.is_empty() {
            break;
        }
        for chunk in rows.chunks(500) {
            let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
            diesel::delete(store_paths::table.filter(store_paths::id.eq_any(ids))).execute(conn)?;
        }
        nar_ids.extend(rows.into_iter().map(|(_, nar_id)| nar_id));
    }
    nar_ids.sort_unstable();
    nar_ids.dedup();
    super::lifecycle::mark_unreferenced(conn, &nar_ids, now())?;
    Ok(())
}

/// Deletes a cache with everything in it; returns the storage keys to delete (pending uploads
/// and build logs; NARs no cache uses wait for garbage collection).
pub fn delete(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<String>> {
    use super::schema::{build_logs, pending_nars};
    clear(conn, cache_id)?;
    let mut keys = Vec::new();
    // A pending upload's object is ours to delete only if we delete its row: a commit taking
    // it over right now deletes the row first (and its NAR row then owns the object).
    let pending: Vec<(i64, String)> = pending_nars::table
        .filter(pending_nars::cache_id.eq(cache_id))
        .select((pending_nars::id, pending_nars::storage_key))
        .load(conn)?;
    for (id, key) in pending {
        if super::uploads::delete_pending(conn, id)? {
            keys.push(key);
        }
    }
    keys.extend(
        build_logs::table
            .filter(build_logs::cache_id.eq(cache_id))
            .select(build_logs::storage_key)
            .load::<String>(conn)?,
    );
    diesel::delete(caches::table.find(cache_id)).execute(conn)?;
    Ok(keys)
}

/// Replaces a cache's settings and public keys.
pub fn update(conn: &mut AnyConnection, cache_id: i64, settings: &CacheSettings) -> DbResult<()> {
    diesel::update(caches::table.find(cache_id))
        .set((
            caches::is_public.eq(settings.is_public),
            caches::priority.eq(settings.priority),
            caches::quota_bytes.eq(settings.quota_bytes),
            caches::quota_policy.eq(settings.quota_policy.name()),
            caches::retention_seconds.eq(settings.retention_seconds),
        ))
        .execute(conn)?;
    if let Some(allowed) = settings.allow_force_push {
        diesel::update(caches::table.find(cache_id)).set(caches::allow_force_push.eq(allowed)).execute(conn)?;
    }
    diesel::delete(cache_keys::table.filter(cache_keys::cache_id.eq(cache_id))).execute(conn)?;
    for key in &settings.keys {
        add_key(conn, cache_id, key)?;
    }
    if let Some(upstreams) = &settings.upstreams {
        super::upstreams::replace(conn, cache_id, upstreams)?;
    }
    Ok(())
}
