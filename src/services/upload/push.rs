//! Accepting pushes: plan a batch, verify each path's metadata and signature, receive and
//! verify its NAR while streaming it to storage, then make it visible in one transaction.
//!
//! A path becomes visible only when its NAR is stored and every reference is already in the
//! cache (the closure invariant). A NAR the server already stores is attached without an
//! upload only when the caller can read a cache that holds it (proof of possession).

use std::collections::HashSet;

use hibernation::api::{PathUpload, PlanAction, PushPlanRequest, PushPlanResponse};
use hibernation::nix::{PublicKey, StorePath, signing};

use super::Destination;
use super::push_error::PushError;
use super::quota::{self, QuotaCheck};
use super::receive::ReceivedNar;
use super::upstream::UpstreamChecker;
use crate::db::models::{Cache, NewNar, NewStorePath, PendingNar};
use crate::db::replication::{Counter, bump, read_counters};
use crate::db::{Db, DbError, caches, is_unique_violation, now, paths, uploads, upstreams};
use crate::services::identity::access::{Access, Sight, readable_cache_ids};
use crate::services::identity::auth::Caller;
use crate::storage::Storage;
use crate::storage::keys::{listing_key, new_nar_key};

fn invalid(msg: impl Into<String>) -> PushError {
    PushError::InvalidInput(msg.into())
}

/// A cache the caller may push to; made only by [`push_decision`], so every push service
/// that takes one knows the rights were checked.
#[derive(Debug, Clone)]
pub struct PushableCache(Cache);

impl PushableCache {
    pub fn into_inner(self) -> Cache {
        self.0
    }
}

impl std::ops::Deref for PushableCache {
    type Target = Cache;
    fn deref(&self) -> &Cache {
        &self.0
    }
}

/// Whether a caller who sees the cache `name` so may push to it.
pub fn push_decision(sight: Sight, name: &str) -> Result<PushableCache, PushError> {
    match sight {
        Sight::Visible(cache, Access::Push | Access::Manage) => Ok(PushableCache(cache)),
        Sight::Visible(..) => Err(PushError::Forbidden(name.to_string())),
        Sight::Invisible => Err(PushError::CacheNotFound(name.to_string())),
    }
}

/// Says for each path whether the cache has it, an upstream serves it, the server can attach a
/// NAR it holds, or the NAR must be uploaded.
pub async fn plan(
    db: &Db,
    upstreams: &UpstreamChecker,
    caller: &Caller,
    cache: &PushableCache,
    request: PushPlanRequest,
) -> Result<PushPlanResponse, PushError> {
    if request.force && !cache.allow_force_push {
        return Err(PushError::ForceNotAllowed(cache.name.clone()));
    }
    let mut store_paths = Vec::with_capacity(request.paths.len());
    for p in &request.paths {
        store_paths.push(StorePath::from_full_path(&p.store_path).map_err(|e| invalid(e.to_string()))?);
    }
    let (cache_id, wanted): (i64, Vec<String>) =
        (cache.id, store_paths.iter().map(|p| p.base_name().to_string()).collect());
    let (present, upstream_list) =
        db.read(move |c| Ok((paths::present_base_names(c, cache_id, &wanted)?, upstreams::list(c, cache_id)?))).await?;
    let held = if request.force {
        HashSet::new()
    } else {
        let absent: Vec<StorePath> = store_paths.iter().filter(|p| !present.contains(p.base_name())).cloned().collect();
        // An upstream that cannot be asked holds nothing: its paths are pushed.
        upstreams.held(&upstream_list, &absent).await.held
    };
    let caller = caller.clone();
    let actions = db
        .read(move |c| {
            let readable = readable_cache_ids(c, &caller)?;
            let mut actions = Vec::with_capacity(store_paths.len());
            for (path, planned) in store_paths.iter().zip(&request.paths) {
                let action = if present.contains(path.base_name()) {
                    PlanAction::Present
                } else if held.contains(path) {
                    PlanAction::Upstream
                } else {
                    match paths::find_nar(c, &planned.nar_hash.to_nix32())? {
                        Some(nar)
                            if nar.nar_size as u64 == planned.nar_size
                                && paths::nar_is_readable_by(c, nar.id, readable.as_deref())? =>
                        {
                            PlanAction::Attach
                        }
                        _ => PlanAction::Upload,
                    }
                };
                actions.push(action);
            }
            Ok(actions)
        })
        .await?;
    Ok(PushPlanResponse { actions })
}

/// A path upload whose metadata and signature were checked against its cache.
pub struct VerifiedPath {
    pub cache: Cache,
    pub path: StorePath,
    pub upload: PathUpload,
    pub references: Vec<String>,
    /// References (base names) the cache lacks but one of its upstreams serves.
    pub served_upstream: HashSet<String>,
    /// The cache already serves this path; nothing is to be done.
    pub already_present: bool,
}

/// Checks everything about a path that can be checked before its NAR arrives. With
/// `upstreams`, a reference that an upstream cache serves counts as present.
pub async fn verify_path(
    db: &Db,
    upstreams: Option<&UpstreamChecker>,
    cache: PushableCache,
    hash_in_url: &str,
    upload: PathUpload,
) -> Result<VerifiedPath, PushError> {
    let path = StorePath::from_full_path(&upload.store_path).map_err(|e| invalid(e.to_string()))?;
    if path.hash_part() != hash_in_url {
        return Err(invalid(format!("the URL names {hash_in_url} but the metadata is for {}", upload.store_path)));
    }
    if upload.nar_size == 0 {
        return Err(invalid("NarSize must be greater than zero"));
    }
    let refs = upload
        .references
        .iter()
        .map(|r| StorePath::from_base_name(r).map_err(|e| invalid(format!("invalid reference: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(d) = &upload.deriver {
        StorePath::from_base_name(d).map_err(|e| invalid(format!("invalid deriver: {e}")))?;
    }
    if upload.signatures.iter().any(|s| s.contains(['\n', '\r'])) {
        return Err(invalid("a signature contains a line break"));
    }
    if let Some(ca) = &upload.ca {
        hibernation::nix::content_address::validate(ca).map_err(invalid)?;
    }
    let cache = cache.into_inner();
    let (cache_id, others): (i64, Vec<String>) =
        (cache.id, refs.iter().filter(|r| **r != path).map(|r| r.base_name().to_string()).collect());
    let own = path.base_name().to_string();
    let (keys, present, upstream_list) = db
        .read(move |c| {
            let keys = caches::public_keys(c, cache_id)?;
            let mut wanted = others.clone();
            wanted.push(own);
            Ok((keys, paths::present_base_names(c, cache_id, &wanted)?, upstreams::list(c, cache_id)?))
        })
        .await?;
    check_signature(&cache, &keys, &path, &upload, &refs)?;
    let absent: Vec<StorePath> =
        refs.iter().filter(|r| **r != path && !present.contains(r.base_name())).cloned().collect();
    let answer = match upstreams {
        Some(checker) if !absent.is_empty() => checker.held(&upstream_list, &absent).await,
        _ => Default::default(),
    };
    let held = answer.held;
    let missing: Vec<String> = absent.iter().filter(|r| !held.contains(*r)).map(|r| r.full_path()).collect();
    if !missing.is_empty() && answer.unreachable {
        return Err(PushError::UpstreamUnreachable(path.full_path()));
    }
    if !missing.is_empty() {
        return Err(PushError::MissingReferences { path: path.full_path(), missing });
    }
    let already_present = present.contains(path.base_name());
    let references = refs.iter().map(|r| r.base_name().to_string()).collect();
    let served_upstream = held.iter().map(|r| r.base_name().to_string()).collect();
    Ok(VerifiedPath { cache, path, upload, references, served_upstream, already_present })
}

fn check_signature(
    cache: &Cache,
    keys: &[String],
    path: &StorePath,
    upload: &PathUpload,
    refs: &[StorePath],
) -> Result<(), PushError> {
    let keys: Vec<PublicKey> = keys.iter().filter_map(|k| PublicKey::parse(k).ok()).collect();
    if keys.is_empty() {
        return Err(PushError::BadSignature(format!(
            "cache {:?} has no public signing key; add one with `hibernation-server admin add-key`",
            cache.name
        )));
    }
    let fingerprint = signing::fingerprint(path, &upload.nar_hash, upload.nar_size, refs);
    let valid = upload.signatures.iter().any(|sig| keys.iter().any(|k| k.verifies(&fingerprint, sig)));
    if !valid {
        let names: Vec<&str> = keys.iter().map(PublicKey::name).collect();
        return Err(PushError::BadSignature(format!(
            "no signature of {path} verifies with a key of cache {:?} (trusted key names: {})",
            cache.name,
            names.join(", ")
        )));
    }
    Ok(())
}

/// Where the NAR of a verified path comes from.
pub enum NarSource {
    /// Uploaded with the path (CLI push); verified against the path's metadata.
    Uploaded(ReceivedNar),
    /// Uploaded earlier by `nix copy` and waiting for this narinfo; already checked to match.
    Pending(PendingNar),
    /// Reuse the stored NAR; the caller proved they can read it.
    Attach(Caller),
}

/// Commits a received NAR and its listing to storage under a new key.
pub async fn store_received(storage: &Storage, received: ReceivedNar) -> Result<(String, NewNar), PushError> {
    let ReceivedNar { pending, compression, file_hash, file_size, nar_hash, nar_size, listing } = received;
    let key = new_nar_key(&nar_hash, compression);
    let listing = listing.map(|l| (listing_key(&key), l.to_string().into_bytes()));
    storage.commit(pending, &key, listing).await.map_err(PushError::Storage)?;
    let nar = NewNar {
        nar_hash: nar_hash.to_nix32(),
        nar_size: nar_size as i64,
        compression: compression.name().to_string(),
        file_hash: file_hash.to_nix32(),
        file_size: file_size as i64,
        storage_key: key.clone(),
        created_at: now(),
    };
    Ok((key, nar))
}

/// Deletes a stored NAR object and its listing (best effort: an orphan only costs space).
pub async fn delete_stored(storage: &Storage, key: &str) {
    for (k, e) in storage.delete_each(&[&listing_key(key), key]).await {
        tracing::warn!("could not delete {k} from storage: {e}");
    }
}

/// Stores the NAR (if uploaded) and makes the path visible. Returns false when the path was
/// already there (another push won the race).
///
/// Every stored object is owned by exactly one row: a pending upload or a NAR. The NAR row,
/// the path and the hand-over of a pending upload are written in one transaction, and an
/// object is deleted afterwards only when this commit owned it and no NAR row took it, so
/// concurrent pushes of one path (on one server or several) never delete a live NAR.
///
/// Its NAR is added to this process's presence filter before the commit, so that it is never
/// answered as absent here once visible (callers add the path itself before verifying it: a
/// path another process stored meanwhile is visible here at once too). It returns once every
/// other replica serves the path too (see `replication`).
pub async fn commit(to: Destination<'_>, verified: VerifiedPath, source: NarSource) -> Result<bool, PushError> {
    let Destination { db, storage, replication, eviction_min_age } = to;
    // A pending upload already counts against the quota (it was checked on arrival, and an
    // evicting cache makes room for it now); the size of a NAR to attach is looked up only
    // when the cache has a quota. The cache's current settings decide, not the row this
    // process remembered (a quota set through another process a moment ago counts).
    let cache_id = verified.cache.id;
    let current = db.read(move |c| crate::db::lifecycle::current_cache(c, cache_id)).await?;
    if let Some(cache) = current.filter(|c| c.quota_bytes.is_some()) {
        let incoming = match &source {
            NarSource::Uploaded(received) => Some(received.file_size as i64),
            NarSource::Pending(_) => cache.policy().evicts().then_some(0),
            NarSource::Attach(_) => {
                let hash = verified.upload.nar_hash.to_nix32();
                Some(db.read(move |c| paths::find_nar(c, &hash)).await?.map_or(0, |n| n.file_size))
            }
        };
        if let Some(incoming) = incoming {
            let check = QuotaCheck::Commit { needs: &verified.references, eviction_min_age };
            quota::make_room(db, &cache, incoming, check).await?;
        }
    }
    let (candidate, own_key) = match source {
        NarSource::Uploaded(received) => {
            let (key, new) = store_received(storage, received).await?;
            (NarCandidate::New(new), Some(key))
        }
        NarSource::Pending(pending) => (NarCandidate::Pending(pending), None),
        NarSource::Attach(caller) => (NarCandidate::Attach(caller), None),
    };
    let record = PathRecord::from(verified);
    let presence = replication.presence();
    let (cache_id, hash_part) = (record.cache_id, record.new.hash_part.clone());
    let mut nar_hashes = vec![record.nar_hash.clone()];
    match &candidate {
        NarCandidate::New(new) => nar_hashes.push(new.file_hash.clone()),
        NarCandidate::Pending(pending) => nar_hashes.push(pending.file_hash.clone()),
        // Known once the commit found it (an instant later; the next refresh adds it too).
        NarCandidate::Attach(_) => {}
    }
    let add_keys = |extra_file_hash: Option<&String>| {
        presence.add_path(cache_id, &hash_part);
        for hash in nar_hashes.iter().chain(extra_file_hash) {
            presence.add_nar(cache_id, hash);
        }
    };
    add_keys(None);
    // Run again when a concurrent commit inserted the same NAR, or deleted the NAR this one
    // reused (the next attempt sees what it did), or the database chose this transaction to
    // end a deadlock with one (an eviction, another commit).
    let outcome =
        db.write_retrying(is_retryable_conflict, move |c| commit_in_transaction(c, &record, &candidate)).await;
    match outcome {
        Ok(Ok(committed)) => {
            // Again after the commit: a filter that replaced this process's while the body
            // arrived was loaded before the commit and never saw the keys added before it
            // began loading, and this process's own push does not wait for its own reading.
            add_keys(committed.file_hash.as_ref());
            if let Some(key) = committed.unowned_key {
                delete_stored(storage, &key).await;
            }
            replication.wait_until_seen(committed.seq).await;
            Ok(committed.created)
        }
        Ok(Err(refused)) => {
            if let Some(key) = own_key {
                delete_stored(storage, &key).await;
            }
            Err(refused)
        }
        Err(e) => {
            if let Some(key) = own_key {
                delete_stored(storage, &key).await;
            }
            Err(e.into())
        }
    }
}

/// Drops a pending upload nobody needs. Its object is deleted only by whoever deletes its row,
/// so a commit taking it over at the same moment keeps it.
pub async fn discard_pending(db: &Db, storage: &Storage, pending: PendingNar) -> Result<(), PushError> {
    let id = pending.id;
    if db.write(move |c| uploads::delete_pending(c, id)).await? {
        delete_stored(storage, &pending.storage_key).await;
    }
    Ok(())
}

/// What a path's row is made of, independent of where its NAR comes from.
#[derive(Clone)]
struct PathRecord {
    cache_id: i64,
    base_name: String,
    new: NewStorePath,
    /// Every reference, as base names (the path itself included when it refers to itself).
    references: Vec<String>,
    /// References the cache lacks but an upstream serves: not required to be present.
    served_upstream: HashSet<String>,
    nar_hash: String,
    nar_size: u64,
}

impl PathRecord {
    fn full_path(&self) -> String {
        format!("{}/{}", hibernation::nix::STORE_DIR, self.base_name)
    }
}

impl From<VerifiedPath> for PathRecord {
    fn from(verified: VerifiedPath) -> Self {
        let VerifiedPath { cache, path, upload, references, served_upstream, .. } = verified;
        let new = NewStorePath {
            cache_id: cache.id,
            nar_id: 0,
            hash_part: path.hash_part().to_string(),
            name: path.name().to_string(),
            deriver: upload.deriver.clone(),
            ca: upload.ca.clone(),
            signatures: upload.signatures.join("\n"),
            // Both taken inside the commit's transaction (see `commit_in_transaction`).
            created_at: now(),
            access_count: 0,
            commit_seq: 0,
        };
        Self {
            cache_id: cache.id,
            base_name: path.base_name().to_string(),
            new,
            references,
            served_upstream,
            nar_hash: upload.nar_hash.to_nix32(),
            nar_size: upload.nar_size,
        }
    }
}

/// The NAR a commit will use.
#[derive(Clone)]
enum NarCandidate {
    /// Stored just now under a key only this commit knows.
    New(NewNar),
    /// Uploaded by `nix copy`; its object belongs to the pending row until a NAR row takes it.
    Pending(PendingNar),
    /// A NAR the server stores, reused if the caller can read a cache that holds it.
    Attach(Caller),
}

struct Committed {
    created: bool,
    /// The commit that made the path visible, or a later one: every replica that has read it
    /// serves the path.
    seq: i64,
    /// The file hash of the NAR the new path uses.
    file_hash: Option<String>,
    /// An object this commit owned that no row references: delete it after the commit.
    unowned_key: Option<String>,
}

fn commit_in_transaction(
    c: &mut crate::db::AnyConnection,
    record: &PathRecord,
    candidate: &NarCandidate,
) -> Result<Result<Committed, PushError>, DbError> {
    // Refusals come before any write, so that returning one leaves the database unchanged
    // (releasing an Attach writes nothing, and a pending row that is gone deletes nothing).
    // Locking the referenced rows (PostgreSQL) makes a concurrent delete of one wait for this
    // transaction, or win so that this commit sees the reference missing.
    let mut wanted: Vec<String> = record
        .references
        .iter()
        .filter(|r| **r != record.base_name && !record.served_upstream.contains(*r))
        .cloned()
        .collect();
    wanted.push(record.base_name.clone());
    let present = paths::lock_present_base_names(c, record.cache_id, &wanted)?;
    if present.contains(&record.base_name) {
        let unowned_key = release_candidate(c, candidate)?;
        let seq = read_counters(c)?.paths;
        return Ok(Ok(Committed { created: false, seq, file_hash: None, unowned_key }));
    }
    let missing: Vec<String> = wanted
        .iter()
        .filter(|r| **r != record.base_name && !present.contains(*r))
        .map(|m| format!("{}/{m}", hibernation::nix::STORE_DIR))
        .collect();
    if !missing.is_empty() {
        return crate::db::refuse(PushError::MissingReferences { path: record.full_path(), missing });
    }
    // Taken first, then the NAR looked up: when a concurrent commit took the pending upload,
    // the lookup (a new statement) sees the NAR it registered.
    let candidate_key = release_candidate(c, candidate)?;
    let existing = paths::find_nar(c, &record.nar_hash)?;
    let nar = match (existing, candidate) {
        (Some(nar), NarCandidate::Attach(caller)) => {
            let readable = readable_cache_ids(c, caller)?;
            if nar.nar_size as u64 != record.nar_size || !paths::nar_is_readable_by(c, nar.id, readable.as_deref())? {
                return crate::db::refuse(PushError::UploadRequired(record.full_path()));
            }
            nar
        }
        (None, NarCandidate::Attach(_)) => return crate::db::refuse(PushError::UploadRequired(record.full_path())),
        (Some(nar), _) => nar,
        (None, NarCandidate::New(new)) => paths::insert_nar(c, new)?,
        // The pending upload expired and was removed before its narinfo came.
        (None, NarCandidate::Pending(_)) if candidate_key.is_none() => {
            return crate::db::refuse(PushError::UploadRequired(record.full_path()));
        }
        (None, NarCandidate::Pending(pending)) => paths::insert_nar(c, &NewNar::from(pending.clone()))?,
    };
    if nar.unreferenced_since.is_some() {
        // Waiting for garbage collection: this path keeps it.
        crate::db::lifecycle::mark_referenced(c, nar.id)?;
    }
    let mut new = record.new.clone();
    new.nar_id = nar.id;
    new.created_at = now();
    // Last: the counter's row stays locked until this transaction commits, which orders
    // commits as other processes read them (see `db::replication`).
    new.commit_seq = bump(c, Counter::Paths)?;
    paths::insert_path(c, &new, &record.references)?;
    let unowned_key = candidate_key.filter(|key| *key != nar.storage_key);
    Ok(Ok(Committed { created: true, seq: new.commit_seq, file_hash: Some(nar.file_hash.clone()), unowned_key }))
}

/// The object key this commit owns: a new upload's, or a pending upload's when this commit
/// is the one that deletes its row (whoever deletes the row first takes the object).
fn release_candidate(c: &mut crate::db::AnyConnection, candidate: &NarCandidate) -> Result<Option<String>, DbError> {
    Ok(match candidate {
        NarCandidate::New(new) => Some(new.storage_key.clone()),
        NarCandidate::Pending(pending) => uploads::delete_pending(c, pending.id)?.then(|| pending.storage_key.clone()),
        NarCandidate::Attach(_) => None,
    })
}

/// Conflicts a retry resolves: a unique violation (a concurrent insert of the same NAR or
/// path) or a foreign-key violation (the reused NAR was deleted meanwhile).
fn is_retryable_conflict(e: &DbError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    is_unique_violation(e)
        || matches!(e, DbError::Query(Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)))
}
