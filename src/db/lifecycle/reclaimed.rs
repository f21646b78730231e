//! What eviction, retention, garbage collection and fsck reclaimed, for the pages and metrics.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;

use crate::db::models::Reclaim;
use crate::db::schema::reclaims;
use crate::db::{AnyConnection, DbResult};

/// What one eviction, retention or garbage collection run removed.
pub struct NewReclaim<'a> {
    pub cache_id: Option<i64>,
    pub kind: &'a str,
    pub paths: i64,
    pub bytes: i64,
    pub objects: i64,
}

pub fn record_reclaim(conn: &mut AnyConnection, reclaim: &NewReclaim, at: NaiveDateTime) -> DbResult<()> {
    diesel::insert_into(reclaims::table)
        .values((
            reclaims::cache_id.eq(reclaim.cache_id),
            reclaims::kind.eq(reclaim.kind),
            reclaims::at.eq(at),
            reclaims::paths.eq(reclaim.paths),
            reclaims::bytes.eq(reclaim.bytes),
            reclaims::objects.eq(reclaim.objects),
        ))
        .execute(conn)?;
    Ok(())
}

/// The latest reclaim of each kind for a cache (eviction, retention) or the server (gc).
pub fn latest_reclaims(conn: &mut AnyConnection, cache_id: Option<i64>) -> DbResult<Vec<Reclaim>> {
    let mut query = reclaims::table.select(Reclaim::as_select()).order(reclaims::at.desc()).limit(50).into_boxed();
    query = match cache_id {
        Some(id) => query.filter(reclaims::cache_id.eq(id)),
        None => query.filter(reclaims::cache_id.is_null()),
    };
    let mut seen = HashSet::new();
    Ok(query.load(conn)?.into_iter().filter(|r: &Reclaim| seen.insert(r.kind.clone())).collect())
}

/// Bytes reclaimed since `since`, over every cache and garbage collection.
pub fn reclaimed_bytes_since(conn: &mut AnyConnection, since: NaiveDateTime, kind: &str) -> DbResult<i64> {
    use diesel::sql_types::{BigInt, Nullable};
    let total: Option<i64> = reclaims::table
        .filter(reclaims::at.ge(since))
        .filter(reclaims::kind.eq(kind))
        .select(sql::<Nullable<BigInt>>("CAST(SUM(reclaims.bytes) AS BIGINT)"))
        .first(conn)?;
    Ok(total.unwrap_or(0))
}
