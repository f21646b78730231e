//! Caches and their public signing keys.

use diesel::prelude::*;

use super::models::Cache;
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
    pub upstreams: Vec<hibernation::api::Upstream>,
    pub allow_force_push: bool,
}

pub fn create(conn: &mut AnyConnection, name: &str, settings: &CacheSettings) -> DbResult<Cache> {
    let created_at = now();
    diesel::insert_into(caches::table)
        .values((
            caches::name.eq(name),
            caches::is_public.eq(settings.is_public),
            caches::priority.eq(settings.priority),
            caches::quota_bytes.eq(settings.quota_bytes),
            caches::allow_force_push.eq(settings.allow_force_push),
            caches::created_at.eq(created_at),
        ))
        .execute(conn)?;
    let cache = find_by_name(conn, name)?.ok_or(diesel::result::Error::NotFound)?;
    for key in &settings.keys {
        add_key(conn, cache.id, key)?;
    }
    super::upstreams::replace(conn, cache.id, &settings.upstreams)?;
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
