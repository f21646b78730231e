//! Hourly protocol traffic per cache, and recent pushes, for the overview.

use chrono::{NaiveDateTime, Timelike};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamp};

use super::schema::{caches, store_paths, traffic_hourly};
use super::{AnyConnection, DbResult};

/// The start of the current hour (UTC), the key of the traffic counters.
pub fn current_hour() -> NaiveDateTime {
    let t = super::now();
    t.date().and_hms_opt(t.hour(), 0, 0).unwrap_or(t)
}

/// Counts to add to one cache's hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficDelta {
    pub narinfo_hits: i64,
    pub narinfo_misses: i64,
    pub nar_bytes: i64,
}

/// Adds to an hour's counters; an upsert that SQLite (3.24+) and PostgreSQL both accept.
pub fn add(conn: &mut AnyConnection, cache_id: i64, hour: NaiveDateTime, delta: TrafficDelta) -> DbResult<()> {
    diesel::sql_query(
        "INSERT INTO traffic_hourly (cache_id, hour, narinfo_hits, narinfo_misses, nar_bytes) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (cache_id, hour) DO UPDATE SET narinfo_hits = traffic_hourly.narinfo_hits + excluded.narinfo_hits, \
         narinfo_misses = traffic_hourly.narinfo_misses + excluded.narinfo_misses, \
         nar_bytes = traffic_hourly.nar_bytes + excluded.nar_bytes",
    )
    .bind::<BigInt, _>(cache_id)
    .bind::<Timestamp, _>(hour)
    .bind::<BigInt, _>(delta.narinfo_hits)
    .bind::<BigInt, _>(delta.narinfo_misses)
    .bind::<BigInt, _>(delta.nar_bytes)
    .execute(conn)?;
    Ok(())
}

/// Per-hour totals since `since` over the given caches (`None`: all), oldest first.
pub fn hourly(
    conn: &mut AnyConnection,
    cache_ids: Option<&[i64]>,
    since: NaiveDateTime,
) -> DbResult<Vec<(NaiveDateTime, TrafficDelta)>> {
    let mut query = traffic_hourly::table.filter(traffic_hourly::hour.ge(since)).into_boxed();
    if let Some(ids) = cache_ids {
        query = query.filter(traffic_hourly::cache_id.eq_any(ids.to_vec()));
    }
    let rows: Vec<(NaiveDateTime, i64, i64, i64)> = query
        .select((
            traffic_hourly::hour,
            traffic_hourly::narinfo_hits,
            traffic_hourly::narinfo_misses,
            traffic_hourly::nar_bytes,
        ))
        .load(conn)?;
    let mut by_hour: std::collections::BTreeMap<NaiveDateTime, TrafficDelta> = Default::default();
    for (hour, hits, misses, bytes) in rows {
        let entry = by_hour.entry(hour).or_default();
        entry.narinfo_hits += hits;
        entry.narinfo_misses += misses;
        entry.nar_bytes += bytes;
    }
    Ok(by_hour.into_iter().collect())
}

/// The newest pushes: (cache, path base name, time).
pub fn recent_pushes(
    conn: &mut AnyConnection,
    cache_ids: Option<&[i64]>,
    limit: i64,
) -> DbResult<Vec<(String, String, NaiveDateTime)>> {
    let mut query = store_paths::table.inner_join(caches::table).into_boxed();
    if let Some(ids) = cache_ids {
        query = query.filter(store_paths::cache_id.eq_any(ids.to_vec()));
    }
    let rows: Vec<(String, String, String, NaiveDateTime)> = query
        .order(store_paths::created_at.desc())
        .limit(limit)
        .select((caches::name, store_paths::hash_part, store_paths::name, store_paths::created_at))
        .load(conn)?;
    Ok(rows.into_iter().map(|(cache, hash, name, at)| (cache, format!("{hash}-{name}"), at)).collect())
}
