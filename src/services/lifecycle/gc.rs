//! Garbage collection: deletes NARs no path has used for the grace period (and their
//! listings), stored objects no row owns that are older than the grace period (left by a
//! crash), NARs uploaded by `nix copy` whose narinfo never came, and rows past their use.
//!
//! Safe with any number of replicas: one run at a time holds an exclusive lock (a PostgreSQL
//! advisory lock, or a lock file beside an SQLite database, both released when the holder
//! dies); a
//! NAR row is deleted only while it is still unused and due (a push that takes it back
//! clears the mark in its own transaction, and a path cannot be inserted for a deleted
//! row), and objects are deleted only after their row. Keys are never reused, so an object
//! deleted late can never be a new upload's.

use std::time::SystemTime;

use chrono::NaiveDateTime;

use crate::db::lifecycle::{self, DueNar, NewReclaim};
use crate::db::{Db, DbResult, Exclusive, now, uploads};
use crate::services::upload::push::delete_stored;
use crate::storage::keys::{OWNED_PREFIXES, listing_key, owner_key};
use crate::storage::{Storage, StoredObject};

/// A narinfo follows its NAR within seconds; a day is far beyond any retry.
const PENDING_LIFETIME: chrono::Duration = chrono::Duration::hours(24);
/// Traffic counters and reclaim records are kept this long (the overview shows less).
const HISTORY: chrono::Duration = chrono::Duration::days(30);
const ROUND: i64 = 500;

/// What a run deleted (or, dry, would delete).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub dry_run: bool,
    pub nars: u64,
    pub nar_bytes: u64,
    pub orphans: u64,
    pub orphan_bytes: u64,
    pub stale_uploads: u64,
    pub pruned_rows: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would delete" } else { "deleted" };
        let gib = |b: u64| hibernation::human::gib(b);
        write!(
            f,
            "{verb} {} unused NARs ({}), {} objects no row owns ({}), {} uploads whose narinfo never came, {} expired rows",
            self.nars,
            gib(self.nar_bytes),
            self.orphans,
            gib(self.orphan_bytes),
            self.stale_uploads,
            self.pruned_rows
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("another garbage collection is running (here or on another server); try again when it is done")]
    Busy,
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
}

/// One garbage collection run. `grace` protects what was unused or stored only recently.
pub async fn collect(db: &Db, storage: &Storage, grace: chrono::Duration, dry_run: bool) -> Result<Report, GcError> {
    let lock = db.try_exclusive(Exclusive::GarbageCollection).await?.ok_or(GcError::Busy)?;
    let result = run(db, storage, grace, dry_run).await;
    lock.release().await;
    let report = result?;
    if !dry_run {
        record(db, &report).await;
    }
    Ok(report)
}

async fn run(db: &Db, storage: &Storage, grace: chrono::Duration, dry_run: bool) -> Result<Report, GcError> {
    let started = now();
    let cutoff = started - grace;
    let mut report = Report { dry_run, ..Report::default() };
    if !dry_run {
        db.read(lifecycle::refresh_statistics).await?;
        db.write(move |c| lifecycle::mark_unused_nars(c, started)).await?;
    }
    collect_unused_nars(db, storage, cutoff, &mut report).await?;
    if dry_run {
        report.stale_uploads =
            db.read(move |c| uploads::count_stale_pending(c, started - PENDING_LIFETIME)).await? as u64;
    } else {
        report.stale_uploads = remove_stale_pending(db, storage, started - PENDING_LIFETIME).await? as u64;
        report.pruned_rows = db.write(move |c| lifecycle::prune_expired(c, started, started - HISTORY)).await? as u64;
    }
    // Objects stored before the cutoff: anything younger may be an upload between storing its
    // object and recording its row.
    sweep_orphans(db, storage, SystemTime::from(cutoff.and_utc()), &mut report).await?;
    Ok(report)
}

async fn collect_unused_nars(db: &Db, storage: &Storage, cutoff: NaiveDateTime, report: &mut Report) -> DbResult<()> {
    let mut after = 0;
    loop {
        let due = db.read(move |c| lifecycle::due_nars(c, cutoff, after, ROUND)).await?;
        let Some(last) = due.last() else { return Ok(()) };
        after = last.id;
        let deleted = if report.dry_run {
            due
        } else {
            let deleted = db.write(move |c| lifecycle::delete_due_nars(c, due, cutoff)).await?;
            delete_objects(storage, &deleted).await;
            deleted
        };
        report.nars += deleted.len() as u64;
        report.nar_bytes += deleted.iter().map(|nar| nar.file_size.max(0) as u64).sum::<u64>();
    }
}

/// Deletes the objects of NARs whose rows are gone (each NAR and its listing) in one batch:
/// one request per thousand objects on S3, where a round trip per object bounded collection
/// to a few hundred NARs a second.
async fn delete_objects(storage: &Storage, deleted: &[DueNar]) {
    let listings: Vec<String> = deleted.iter().map(|nar| listing_key(&nar.storage_key)).collect();
    let keys: Vec<&str> =
        deleted.iter().map(|nar| nar.storage_key.as_str()).chain(listings.iter().map(String::as_str)).collect();
    for (key, e) in storage.delete_each(&keys).await {
        tracing::warn!("could not delete {key} from storage: {e}");
    }
}

/// Deletes NAR uploads whose narinfo never came; returns how many.
pub async fn remove_stale_pending(db: &Db, storage: &Storage, cutoff: NaiveDateTime) -> DbResult<usize> {
    let stale = db.write(move |c| uploads::take_stale_pending(c, cutoff)).await?;
    for pending in &stale {
        delete_stored(storage, &pending.storage_key).await;
    }
    Ok(stale.len())
}

/// The stored objects no row owns that were stored before `stored_before` (younger ones may
/// be uploads between storing their object and recording their row).
pub async fn find_orphans(db: &Db, storage: &Storage, stored_before: SystemTime) -> Result<Vec<StoredObject>, GcError> {
    let mut orphans = Vec::new();
    for prefix in OWNED_PREFIXES {
        let mut pages = storage.list(prefix);
        while let Some(page) = pages.recv().await {
            let old: Vec<StoredObject> = page?.into_iter().filter(|o| o.modified < stored_before).collect();
            // A listing is owned through its NAR.
            let owners: Vec<String> = old.iter().map(|o| owner_key(&o.key).to_string()).collect();
            let owned = db.read(move |c| lifecycle::owned_keys(c, &owners)).await?;
            orphans.extend(old.into_iter().filter(|o| !owned.contains(owner_key(&o.key))));
        }
    }
    Ok(orphans)
}

async fn sweep_orphans(
    db: &Db,
    storage: &Storage,
    stored_before: SystemTime,
    report: &mut Report,
) -> Result<(), GcError> {
    let orphans = find_orphans(db, storage, stored_before).await?;
    if !report.dry_run {
        delete_orphans(storage, &orphans).await;
    }
    report.orphans = orphans.len() as u64;
    report.orphan_bytes = orphans.iter().map(|o| o.size).sum();
    Ok(())
}

/// Deletes orphan objects, a thousand per trip; returns how many went (failures are logged).
pub async fn delete_orphans(storage: &Storage, orphans: &[StoredObject]) -> u64 {
    let mut deleted = 0;
    for chunk in orphans.chunks(1000) {
        let keys: Vec<&str> = chunk.iter().map(|o| o.key.as_str()).collect();
        let failed = storage.delete_each(&keys).await;
        for (key, e) in &failed {
            tracing::warn!("could not delete the orphan object {key}: {e}");
        }
        deleted += (keys.len() - failed.len()) as u64;
    }
    deleted
}

async fn record(db: &Db, report: &Report) {
    let objects = report.nars + report.orphans + report.stale_uploads;
    crate::services::metrics::collected(
        &[("nar", report.nars), ("orphan", report.orphans), ("upload", report.stale_uploads)],
        report.nar_bytes,
    );
    if objects == 0 {
        return;
    }
    tracing::info!("garbage collection {report}");
    let bytes = (report.nar_bytes + report.orphan_bytes) as i64;
    let entry = NewReclaim { cache_id: None, kind: "gc", paths: 0, bytes, objects: objects as i64 };
    if let Err(e) = db.write(move |c| lifecycle::record_reclaim(c, &entry, now())).await {
        tracing::warn!("could not record the garbage collection: {e}");
    }
}
