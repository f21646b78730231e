//! Caches and their public signing keys.

use diesel::prelude::*;

use super::models::Cache;
use super::schema::{cache_keys, caches};
use super::{AnyConnection, DbResult, now};

pub fn find_by_name(conn: &mut AnyConnection, name: &str) -> DbResult<Option<Cache>> {
    Ok(caches::table.filter(caches::name.eq(name)).select(Cache::as_select()).first(conn).optional()?)
}

pub fn create(
    conn: &mut AnyConnection,
    name: &str,
    is_public: bool,
    priority: i32,
    keys: &[String],
) -> DbResult<Cache> {
    let created_at = now();
    diesel::insert_into(caches::table)
        .values((
            caches::name.eq(name),
            caches::is_public.eq(is_public),
            caches::priority.eq(priority),
            caches::created_at.eq(created_at),
        ))
        .execute(conn)?;
    let cache = find_by_name(conn, name)?.ok_or(diesel::result::Error::NotFound)?;
    for key in keys {
        add_key(conn, cache.id, key)?;
    }
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
