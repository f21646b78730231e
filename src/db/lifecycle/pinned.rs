//! Pins: named paths whose closures eviction and retention never take.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::models::Pin;
use crate::db::schema::pins;
use crate::db::{AnyConnection, DbResult};

/// Sets (or moves) a pin; returns true when it existed and was moved.
pub fn put_pin(
    conn: &mut AnyConnection,
    cache_id: i64,
    name: &str,
    store_path: &str,
    now: NaiveDateTime,
    expires_at: Option<NaiveDateTime>,
) -> DbResult<bool> {
    let moved = diesel::update(pins::table.filter(pins::cache_id.eq(cache_id)).filter(pins::name.eq(name)))
        .set((pins::store_path.eq(store_path), pins::created_at.eq(now), pins::expires_at.eq(expires_at)))
        .execute(conn)?;
    if moved == 0 {
        diesel::insert_into(pins::table)
            .values((
                pins::cache_id.eq(cache_id),
                pins::name.eq(name),
                pins::store_path.eq(store_path),
                pins::created_at.eq(now),
                pins::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
    }
    Ok(moved > 0)
}

pub fn list_pins(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<Pin>> {
    Ok(pins::table.filter(pins::cache_id.eq(cache_id)).order(pins::name).select(Pin::as_select()).load(conn)?)
}

/// Removes a pin; false when the cache had no pin of that name.
pub fn delete_pin(conn: &mut AnyConnection, cache_id: i64, name: &str) -> DbResult<bool> {
    Ok(diesel::delete(pins::table.filter(pins::cache_id.eq(cache_id)).filter(pins::name.eq(name))).execute(conn)? > 0)
}

/// Removes pins whose lifetime ended.
pub fn delete_expired_pins(conn: &mut AnyConnection, now: NaiveDateTime) -> DbResult<usize> {
    Ok(diesel::delete(pins::table.filter(pins::expires_at.lt(now))).execute(conn)?)
}
