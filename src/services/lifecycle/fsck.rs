//! fsck: re-reads every stored NAR (streaming) and checks its file hash and size, and its
//! NarHash and NarSize after decompression, against the database; finds objects no row owns
//! and paths whose references are missing. With repair, removes every broken path together
//! with what references it (so no client is ever served a path it cannot fetch), the broken
//! NARs, and orphans older than the grace period.

use std::io::{self, Read};

use hibernation::nix::Compression;
use hibernation::nix::nar::HashingReader;

use super::gc;
use crate::db::lifecycle::{self, NewReclaim};
use crate::db::models::{Cache, Nar};
use crate::db::{Db, Exclusive, now};
use crate::services::upload::decode_memory::DecodeMemory;
use crate::services::upload::push::delete_stored;
use crate::storage::Storage;

const PAGE: i64 = 200;

/// A NAR whose object is missing or does not match its row, and the paths that use it.
#[derive(Debug, Clone)]
pub struct BadNar {
    pub nar_id: i64,
    pub storage_key: String,
    pub problem: String,
}

/// A path whose reference its cache does not hold.
#[derive(Debug, Clone)]
pub struct BrokenClosure {
    pub cache: String,
    pub path: String,
    pub reference: String,
    /// The cache has upstreams, which may serve the reference: not damage.
    pub upstream_may_serve: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub nars_checked: u64,
    pub bytes_checked: u64,
    pub missing: Vec<BadNar>,
    pub corrupt: Vec<BadNar>,
    pub broken: Vec<BrokenClosure>,
    pub orphans: u64,
    pub orphan_bytes: u64,
    /// With repair: paths removed, and orphans deleted.
    pub removed_paths: u64,
    pub deleted_orphans: u64,
}

impl Report {
    /// Missing or corrupt objects, or closures broken within a cache without upstreams.
    pub fn damaged(&self) -> bool {
        !self.missing.is_empty() || !self.corrupt.is_empty() || self.broken.iter().any(|b| !b.upstream_may_serve)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for bad in &self.missing {
            writeln!(f, "missing: NAR {} ({}): {}", bad.nar_id, bad.storage_key, bad.problem)?;
        }
        for bad in &self.corrupt {
            writeln!(f, "corrupt: NAR {} ({}): {}", bad.nar_id, bad.storage_key, bad.problem)?;
        }
        for b in &self.broken {
            let note = if b.upstream_may_serve { " (an upstream of the cache may serve it)" } else { "" };
            writeln!(f, "missing reference: {} in cache {} references {}{note}", b.path, b.cache, b.reference)?;
        }
        write!(
            f,
            "checked {} NARs ({}): {} missing, {} corrupt, {} paths with a missing reference, {} objects no row owns ({})",
            self.nars_checked,
            hibernation::human::human_bytes(self.bytes_checked),
            self.missing.len(),
            self.corrupt.len(),
            self.broken.iter().filter(|b| !b.upstream_may_serve).count(),
            self.orphans,
            hibernation::human::human_bytes(self.orphan_bytes),
        )?;
        if self.removed_paths > 0 || self.deleted_orphans > 0 {
            write!(
                f,
                "\nrepaired: removed {} paths (the broken ones and what references them) and {} orphan objects",
                self.removed_paths, self.deleted_orphans
            )?;
        }
        Ok(())
    }
}

pub struct Options {
    /// Only this cache's paths and the NARs they use; every NAR and cache when None.
    pub cache: Option<Cache>,
    pub repair: bool,
    /// Orphans younger than this may be uploads in progress: reported, never deleted.
    pub grace: chrono::Duration,
}

/// Objects younger than this may be uploads between storing their object and recording
/// their row: not reported as orphans.
const UPLOAD_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// Checks (and with `repair`, repairs) the storage; `progress(done, total)` after each NAR.
/// Garbage collection deletes rows before their objects, so fsck and a collection must not
/// overlap: fsck holds the same lock, waiting for a running collection to finish.
pub async fn run(db: &Db, storage: &Storage, options: &Options, progress: impl Fn(u64, u64)) -> anyhow::Result<Report> {
    let lock = wait_for_collections(db).await?;
    let result = check(db, storage, options, progress).await;
    lock.release().await;
    result
}

async fn wait_for_collections(db: &Db) -> anyhow::Result<crate::db::ExclusiveLock> {
    let mut told = false;
    loop {
        if let Some(lock) = db.try_exclusive(Exclusive::GarbageCollection).await? {
            return Ok(lock);
        }
        if !told {
            eprintln!("waiting for a garbage collection to finish (it deletes rows before objects)");
            told = true;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

async fn check(db: &Db, storage: &Storage, options: &Options, progress: impl Fn(u64, u64)) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let cache_id = options.cache.as_ref().map(|c| c.id);
    let total = db.read(move |c| lifecycle::count_nars(c, cache_id)).await? as u64;
    let mut after = 0;
    loop {
        let page = db.read(move |c| lifecycle::nars_after(c, cache_id, after, PAGE)).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for nar in page {
            match check_object(storage, &nar).await {
                Ok(()) => {}
                Err(Problem::Missing(problem)) => report.missing.push(bad(&nar, problem)),
                Err(Problem::Corrupt(problem)) => report.corrupt.push(bad(&nar, problem)),
            }
            report.nars_checked += 1;
            report.bytes_checked += nar.file_size.max(0) as u64;
            progress(report.nars_checked, total);
        }
    }
    report.broken = broken_closures(db, cache_id).await?;
    let all_orphans = gc::find_orphans(db, storage, std::time::SystemTime::now() - UPLOAD_WINDOW).await?;
    report.orphans = all_orphans.len() as u64;
    report.orphan_bytes = all_orphans.iter().map(|o| o.size).sum();
    if options.repair {
        repair(db, storage, options, &mut report).await?;
    }
    let findings = (report.missing.len() + report.corrupt.len() + report.broken.len()) as i64 + report.orphans as i64;
    let entry = NewReclaim { cache_id, kind: "fsck", paths: report.removed_paths as i64, bytes: 0, objects: findings };
    db.write(move |c| lifecycle::record_reclaim(c, &entry, now())).await?;
    Ok(report)
}

fn bad(nar: &Nar, problem: String) -> BadNar {
    BadNar { nar_id: nar.id, storage_key: nar.storage_key.clone(), problem }
}

enum Problem {
    Missing(String),
    Corrupt(String),
}

/// Streams the object and compares it with its row.
async fn check_object(storage: &Storage, nar: &Nar) -> Result<(), Problem> {
    let reader = match storage.read(&nar.storage_key, None).await {
        Ok(reader) => reader,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Problem::Missing("no object".into())),
        Err(e) => return Err(Problem::Missing(format!("cannot be read: {e}"))),
    };
    let body = crate::services::upload::receive::read_ahead(reader);
    let compression = Compression::from_name(&nar.compression);
    let measured = tokio::task::spawn_blocking(move || measure(body, compression))
        .await
        .map_err(|e| Problem::Corrupt(format!("the check failed: {e}")))?;
    let m = match measured {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Problem::Missing("no object".into())),
        Err(e) => return Err(Problem::Corrupt(format!("cannot be decompressed: {e}"))),
    };
    let mut wrong = Vec::new();
    if m.file_size != nar.file_size as u64 {
        wrong.push(format!("file size {} (recorded {})", m.file_size, nar.file_size));
    }
    if m.file_hash != nar.file_hash {
        wrong.push(format!("file hash {} (recorded {})", m.file_hash, nar.file_hash));
    }
    if m.nar_size != nar.nar_size as u64 {
        wrong.push(format!("NarSize {} (recorded {})", m.nar_size, nar.nar_size));
    }
    if m.nar_hash != nar.nar_hash {
        wrong.push(format!("NarHash {} (recorded {})", m.nar_hash, nar.nar_hash));
    }
    if wrong.is_empty() { Ok(()) } else { Err(Problem::Corrupt(wrong.join(", "))) }
}

struct Measured {
    file_hash: String,
    file_size: u64,
    nar_hash: String,
    nar_size: u64,
}

fn measure(body: impl Read, compression: Option<Compression>) -> io::Result<Measured> {
    let compression = compression.ok_or_else(|| io::Error::other("unknown compression"))?;
    let mut file = HashingReader::new(body);
    let (nar_hash, nar_size) = {
        let input = io::BufReader::with_capacity(128 * 1024, &mut file);
        let mut nar =
            HashingReader::new(crate::services::upload::receive::decoder(compression, input, DecodeMemory::at_most())?);
        io::copy(&mut nar, &mut io::sink())?;
        let (hash, size, _) = nar.finish();
        (hash, size)
    };
    // Whatever the decoder left unread is part of the file too.
    io::copy(&mut file, &mut io::sink())?;
    let (file_hash, file_size, _) = file.finish();
    Ok(Measured { file_hash: file_hash.to_nix32(), file_size, nar_hash: nar_hash.to_nix32(), nar_size })
}

async fn broken_closures(db: &Db, cache_id: Option<i64>) -> anyhow::Result<Vec<BrokenClosure>> {
    Ok(db
        .read(move |c| {
            let mut broken = Vec::new();
            for (cache, has_upstreams) in lifecycle::caches_with_upstream_flag(c, cache_id)? {
                for (path, reference) in lifecycle::missing_references(c, cache.id)? {
                    broken.push(BrokenClosure {
                        cache: cache.name.clone(),
                        path: format!("{}/{path}", hibernation::nix::STORE_DIR),
                        reference: format!("{}/{reference}", hibernation::nix::STORE_DIR),
                        upstream_may_serve: has_upstreams,
                    });
                }
            }
            Ok(broken)
        })
        .await?)
}

/// Removes the paths that use a bad NAR or lack a reference (and what references them), the
/// bad NARs, and the orphans older than the grace period.
async fn repair(db: &Db, storage: &Storage, options: &Options, report: &mut Report) -> anyhow::Result<()> {
    let bad_nars: Vec<BadNar> = report.missing.iter().chain(&report.corrupt).cloned().collect();
    let bad_ids: Vec<i64> = bad_nars.iter().map(|b| b.nar_id).collect();
    let broken: Vec<(String, String)> = report
        .broken
        .iter()
        .filter(|b| !b.upstream_may_serve)
        .map(|b| (b.cache.clone(), b.path.trim_start_matches("/nix/store/").to_string()))
        .collect();
    // A broken NAR is taken out of every cache that uses it, whatever the scope: none could
    // serve it.
    let removed = db
        .write(move |c| {
            let mut removed = lifecycle::remove_paths_using_nars(c, &bad_ids, now())?;
            for (cache, base_name) in &broken {
                removed += lifecycle::remove_with_referrers(c, cache, base_name, now())?;
            }
            Ok(removed)
        })
        .await?;
    report.removed_paths = removed as u64;
    // The bad NARs: no path uses them now, and no push may take them back.
    for bad in &bad_nars {
        let id = bad.nar_id;
        if db.write(move |c| lifecycle::delete_unused_nar(c, id)).await? {
            delete_stored(storage, &bad.storage_key).await;
        }
    }
    let stored_before = std::time::SystemTime::from((now() - options.grace).and_utc());
    let old_orphans = gc::find_orphans(db, storage, stored_before).await?;
    report.deleted_orphans = gc::delete_orphans(storage, &old_orphans).await;
    Ok(())
}
