//! NARs waiting for their narinfo (`nix copy --to`), and build logs.

use diesel::prelude::*;

use super::models::{BuildLog, PendingNar};
use super::schema::{build_logs, pending_nars};
use super::{AnyConnection, DbResult, now};

/// Records a pending NAR unless this cache already has one with the same file hash (the same
/// bytes). Returns false when one was there: the caller deletes its own copy, and the
/// existing upload (which a narinfo may be committing right now) is left alone.
pub fn put_pending(conn: &mut AnyConnection, pending: &PendingNar) -> DbResult<bool> {
    if let Some(existing) = find_pending(conn, pending.cache_id, &pending.file_hash)? {
        // Its narinfo is on the way again: the cleanup must not take it meanwhile.
        diesel::update(pending_nars::table.find(existing.id)).set(pending_nars::created_at.eq(now())).execute(conn)?;
        return Ok(false);
    }
    diesel::insert_into(pending_nars::table).values(pending).execute(conn)?;
    Ok(true)
}

/// Bytes of NARs uploaded to this cache that wait for their narinfo.
pub fn pending_bytes(conn: &mut AnyConnection, cache_id: i64) -> DbResult<i64> {
    use diesel::dsl::sql;
    use diesel::sql_types::{BigInt, Nullable};
    // Cast: diesel types a SUM of BIGINT as NUMERIC, which the two-backend connection cannot read.
    let total: Option<i64> = pending_nars::table
        .filter(pending_nars::cache_id.eq(cache_id))
        .select(sql::<Nullable<BigInt>>("CAST(SUM(pending_nars.file_size) AS BIGINT)"))
        .first(conn)?;
    Ok(total.unwrap_or(0))
}

pub fn find_pending(conn: &mut AnyConnection, cache_id: i64, file_hash: &str) -> DbResult<Option<PendingNar>> {
    Ok(pending_nars::table
        .filter(pending_nars::cache_id.eq(cache_id))
        .filter(pending_nars::file_hash.eq(file_hash))
        .select(PendingNar::as_select())
        .first(conn)
        .optional()?)
}

/// Deletes a pending upload's row; false when it was gone already (someone else took it).
pub fn delete_pending(conn: &mut AnyConnection, id: i64) -> DbResult<bool> {
    Ok(diesel::delete(pending_nars::table.find(id)).execute(conn)? == 1)
}

/// Stores where a log lives; returns the key of a log it replaces.
pub fn put_log(
    conn: &mut AnyConnection,
    cache_id: i64,
    drv: &str,
    storage_key: &str,
    content_encoding: Option<&str>,
) -> DbResult<Option<String>> {
    let old = find_log(conn, cache_id, drv)?;
    if let Some(old) = &old {
        diesel::delete(build_logs::table.find(old.id)).execute(conn)?;
    }
    diesel::insert_into(build_logs::table)
        .values((
            build_logs::cache_id.eq(cache_id),
            build_logs::drv.eq(drv),
            build_logs::storage_key.eq(storage_key),
            build_logs::content_encoding.eq(content_encoding),
            build_logs::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(old.map(|o| o.storage_key))
}

pub fn find_log(conn: &mut AnyConnection, cache_id: i64, drv: &str) -> DbResult<Option<BuildLog>> {
    Ok(build_logs::table
        .filter(build_logs::cache_id.eq(cache_id))
        .filter(build_logs::drv.eq(drv))
        .select(BuildLog::as_select())
        .first(conn)
        .optional()?)
}

/// How many pending NARs are older than `cutoff`.
pub fn count_stale_pending(conn: &mut AnyConnection, cutoff: chrono::NaiveDateTime) -> DbResult<i64> {
    Ok(pending_nars::table.filter(pending_nars::created_at.lt(cutoff)).count().get_result(conn)?)
}

/// Removes pending NARs older than `cutoff` (their narinfo never came) and returns those whose
/// rows this call deleted, so that the caller deletes their objects (a row a commit took
/// meanwhile belongs to that commit).
pub fn take_stale_pending(conn: &mut AnyConnection, cutoff: chrono::NaiveDateTime) -> DbResult<Vec<PendingNar>> {
    let stale: Vec<PendingNar> =
        pending_nars::table.filter(pending_nars::created_at.lt(cutoff)).select(PendingNar::as_select()).load(conn)?;
    let mut taken = Vec::new();
    for pending in stale {
        if delete_pending(conn, pending.id)? {
            taken.push(pending);
        }
    }
    // A NAR row owns its object; never hand a live object to the caller for deletion (a
    // pending row's object is taken over by a NAR row in the transaction that deletes the row,
    // so this only guards against rows left inconsistent by hand).
    let keys: Vec<String> = taken.iter().map(|p| p.storage_key.clone()).collect();
    let live: Vec<String> = super::schema::nars::table
        .filter(super::schema::nars::storage_key.eq_any(keys))
        .select(super::schema::nars::storage_key)
        .load(conn)?;
    Ok(taken.into_iter().filter(|p| !live.contains(&p.storage_key)).collect())
}
