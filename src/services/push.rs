//! Accepting pushes: plan a batch, verify each path's metadata and signature, receive and
//! verify its NAR while streaming it to storage, then make it visible in one transaction.
//!
//! A path becomes visible only when its NAR is stored and every reference is already in the
//! cache (the closure invariant). A NAR the server already stores is attached without an
//! upload only when the caller can read a cache that holds it (proof of possession).

use std::collections::HashSet;
use std::io::{self, BufWriter, Read, Write};

use hibernation::api::{PathUpload, PlanAction, PushPlanRequest, PushPlanResponse};
use hibernation::nix::nar::{HashingReader, NarError, validate};
use hibernation::nix::{NarHash, PublicKey, StorePath, signing};
use sha2::{Digest, Sha256};

use super::access::{Access, access_to, readable_cache_ids};
use super::auth::Caller;
use crate::db::models::{Cache, Nar, NewNar, NewStorePath};
use crate::db::{Db, DbError, caches, is_unique_violation, now, paths};
use crate::storage::{PendingUpload, Storage};

/// Compression of the NAR bodies the push API accepts (and stores as received).
pub const UPLOAD_COMPRESSION: &str = "zstd";

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cache {0:?} does not exist")]
    CacheNotFound(String),
    #[error("you may not push to cache {0:?}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    BadSignature(String),
    #[error("{path} references paths that are not in the cache yet: {}", missing.join(", "))]
    MissingReferences { path: String, missing: Vec<String> },
    #[error("the NAR of {0} must be uploaded")]
    UploadRequired(String),
    #[error("the uploaded NAR does not match the narinfo: {0}")]
    NarMismatch(String),
    #[error("the uploaded NAR is malformed: {0}")]
    MalformedNar(String),
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("storage error: {0}")]
    Storage(io::Error),
}

fn invalid(msg: impl Into<String>) -> PushError {
    PushError::InvalidInput(msg.into())
}

async fn cache_for_push(db: &Db, caller: &Caller, name: &str) -> Result<Cache, PushError> {
    let (name, caller) = (name.to_string(), caller.clone());
    db.read(move |c| {
        let Some(cache) = caches::find_by_name(c, &name)? else {
            return Ok(Err(PushError::CacheNotFound(name)));
        };
        Ok(match access_to(c, Some(&caller), &cache)? {
            Access::Push => Ok(cache),
            Access::Read => Err(PushError::Forbidden(name)),
            // Do not reveal private caches to callers who cannot read them.
            Access::None if cache.is_public => Err(PushError::Forbidden(name)),
            Access::None => Err(PushError::CacheNotFound(name)),
        })
    })
    .await?
}

/// Says for each path whether the cache has it, can attach a NAR it holds, or needs an upload.
pub async fn plan(
    db: &Db,
    caller: &Caller,
    cache_name: &str,
    request: PushPlanRequest,
) -> Result<PushPlanResponse, PushError> {
    let cache = cache_for_push(db, caller, cache_name).await?;
    let mut base_names = Vec::with_capacity(request.paths.len());
    for p in &request.paths {
        let path = StorePath::from_full_path(&p.store_path).map_err(|e| invalid(e.to_string()))?;
        base_names.push(path.base_name().to_string());
    }
    let caller = caller.clone();
    let actions = db
        .read(move |c| {
            let present = paths::present_base_names(c, cache.id, &base_names)?;
            let readable = readable_cache_ids(c, &caller)?;
            let mut actions = Vec::with_capacity(base_names.len());
            for (base, planned) in base_names.iter().zip(&request.paths) {
                let action = if present.contains(base) {
                    PlanAction::Present
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
    /// The cache already serves this path; nothing is to be done.
    pub already_present: bool,
}

/// Checks everything about a path that can be checked before its NAR arrives.
pub async fn verify_path(
    db: &Db,
    caller: &Caller,
    cache_name: &str,
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
    if upload.signatures.iter().any(|s| s.contains('\n')) {
        return Err(invalid("a signature contains a line break"));
    }
    let cache = cache_for_push(db, caller, cache_name).await?;

    let (cache_id, others): (i64, Vec<String>) =
        (cache.id, refs.iter().filter(|r| **r != path).map(|r| r.base_name().to_string()).collect());
    let own = path.base_name().to_string();
    let (keys, present) = db
        .read(move |c| {
            let keys = caches::public_keys(c, cache_id)?;
            let mut wanted = others.clone();
            wanted.push(own);
            Ok((keys, paths::present_base_names(c, cache_id, &wanted)?))
        })
        .await?;
    check_signature(&cache, &keys, &path, &upload, &refs)?;
    let missing: Vec<String> =
        refs.iter().filter(|r| **r != path && !present.contains(r.base_name())).map(|r| r.full_path()).collect();
    if !missing.is_empty() {
        return Err(PushError::MissingReferences { path: path.full_path(), missing });
    }
    let already_present = present.contains(path.base_name());
    let references = refs.iter().map(|r| r.base_name().to_string()).collect();
    Ok(VerifiedPath { cache, path, upload, references, already_present })
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

/// A verified NAR written to a temporary file, not yet visible.
pub struct ReceivedNar {
    pending: PendingUpload,
    file_hash: NarHash,
    file_size: u64,
}

impl ReceivedNar {
    pub fn file_size(&self) -> u64 {
        self.file_size
    }
}

/// Reads a zstd-compressed NAR body, storing the compressed bytes while it decompresses,
/// validates and hashes the NAR. Runs on a blocking thread.
pub fn receive_nar(
    storage: &Storage,
    body: impl Read,
    expected_hash: &NarHash,
    expected_size: u64,
) -> Result<ReceivedNar, PushError> {
    let pending = storage.begin_upload().map_err(PushError::Storage)?;
    let file = pending.file.try_clone().map_err(PushError::Storage)?;
    let mut tee = Tee { inner: body, out: BufWriter::with_capacity(256 * 1024, file), hasher: Sha256::new(), count: 0 };
    {
        let decoder = zstd::stream::read::Decoder::new(&mut tee).map_err(PushError::Storage)?;
        // Reading one byte past the declared size is enough to know it is wrong.
        let mut nar = HashingReader::new(decoder.take(expected_size + 1));
        let result = validate(&mut nar);
        let read = nar.count();
        let (nar_hash, nar_size, _) = nar.finish();
        if read > expected_size {
            return Err(PushError::NarMismatch(format!("the NAR is larger than its declared NarSize {expected_size}")));
        }
        match result {
            Ok(_) => {}
            Err(NarError::Io(e)) => return Err(classify_read_error(e)),
            Err(e) => return Err(PushError::MalformedNar(e.to_string())),
        }
        if nar_size != expected_size {
            return Err(PushError::NarMismatch(format!("NarSize is {nar_size}, the narinfo says {expected_size}")));
        }
        if nar_hash != *expected_hash {
            return Err(PushError::NarMismatch(format!("NarHash is {nar_hash}, the narinfo says {expected_hash}")));
        }
    }
    // Anything after the compressed NAR would be stored but never served: refuse it.
    let mut rest = [0u8; 1];
    if tee.read(&mut rest).map_err(classify_read_error)? != 0 {
        return Err(PushError::MalformedNar("data after the end of the compressed NAR".into()));
    }
    tee.out.flush().map_err(PushError::Storage)?;
    Ok(ReceivedNar { pending, file_hash: NarHash::from_hasher(tee.hasher), file_size: tee.count })
}

/// Errors from the body are interruptions; errors from the decoder mean a bad stream.
fn classify_read_error(e: io::Error) -> PushError {
    if e.kind() == io::ErrorKind::Other && e.get_ref().is_some_and(|inner| inner.is::<TeeError>()) {
        return PushError::Interrupted(e.to_string());
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof => PushError::MalformedNar("the upload ended before the NAR did".into()),
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
            PushError::Interrupted(e.to_string())
        }
        _ => PushError::MalformedNar(format!("the body is not a valid zstd stream: {e}")),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reading the request body failed: {0}")]
struct TeeError(String);

/// Copies everything read from the body into the storage file and hashes it.
struct Tee<R> {
    inner: R,
    out: BufWriter<std::fs::File>,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| io::Error::other(TeeError(e.to_string())))?;
        self.out.write_all(&buf[..n])?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Where the NAR of a verified path comes from.
pub enum NarSource {
    Uploaded(ReceivedNar),
    /// Reuse the stored NAR; the caller proved they can read it.
    Attach(Caller),
}

/// Stores the NAR (if uploaded) and makes the path visible. Returns false when the path was
/// already there (another push won the race).
pub async fn commit(db: &Db, storage: &Storage, verified: VerifiedPath, source: NarSource) -> Result<bool, PushError> {
    let nar_hash = verified.upload.nar_hash.to_nix32();
    let nar = match source {
        NarSource::Uploaded(received) => store_nar(db, storage, &nar_hash, verified.upload.nar_size, received).await?,
        NarSource::Attach(caller) => {
            let (hash, size) = (nar_hash.clone(), verified.upload.nar_size);
            let nar = db
                .read(move |c| {
                    let Some(nar) = paths::find_nar(c, &hash)? else {
                        return Ok(None);
                    };
                    let readable = readable_cache_ids(c, &caller)?;
                    let ok = nar.nar_size as u64 == size && paths::nar_is_readable_by(c, nar.id, readable.as_deref())?;
                    Ok(ok.then_some(nar))
                })
                .await?;
            nar.ok_or_else(|| PushError::UploadRequired(verified.path.full_path()))?
        }
    };
    insert_path(db, verified, nar).await
}

async fn store_nar(
    db: &Db,
    storage: &Storage,
    nar_hash: &str,
    nar_size: u64,
    received: ReceivedNar,
) -> Result<Nar, PushError> {
    let key = format!("nar/{nar_hash}.{}.nar.zst", super::random_id());
    let ReceivedNar { pending, file_hash, file_size } = received;
    let (s, k) = (storage.clone(), key.clone());
    tokio::task::spawn_blocking(move || s.commit(pending, &k))
        .await
        .map_err(|e| PushError::Storage(io::Error::other(e)))?
        .map_err(PushError::Storage)?;
    let new = NewNar {
        nar_hash: nar_hash.to_string(),
        nar_size: nar_size as i64,
        compression: UPLOAD_COMPRESSION.to_string(),
        file_hash: file_hash.to_nix32(),
        file_size: file_size as i64,
        storage_key: key.clone(),
        created_at: now(),
    };
    let inserted = db.write(move |c| paths::insert_nar(c, &new)).await;
    match inserted {
        Ok(nar) => Ok(nar),
        Err(e) => {
            // Ours is not the stored copy either way: a concurrent upload won, or the insert failed.
            let _ = storage.delete(&key);
            if !is_unique_violation(&e) {
                return Err(e.into());
            }
            let hash = nar_hash.to_string();
            db.read(move |c| paths::find_nar(c, &hash))
                .await?
                .ok_or(PushError::Db(DbError::Query(diesel::result::Error::NotFound)))
        }
    }
}

async fn insert_path(db: &Db, verified: VerifiedPath, nar: Nar) -> Result<bool, PushError> {
    let VerifiedPath { cache, path, upload, references, .. } = verified;
    let own = path.base_name().to_string();
    let new = NewStorePath {
        cache_id: cache.id,
        nar_id: nar.id,
        hash_part: path.hash_part().to_string(),
        name: path.name().to_string(),
        deriver: upload.deriver.clone(),
        ca: upload.ca.clone(),
        signatures: upload.signatures.join("\n"),
        created_at: now(),
        access_count: 0,
    };
    let result = db
        .write(move |c| {
            // Re-check inside the transaction: the closure invariant must hold at commit time.
            let mut wanted: Vec<String> = references.iter().filter(|r| **r != own).cloned().collect();
            wanted.push(own.clone());
            let present = paths::present_base_names(c, cache.id, &wanted)?;
            if present.contains(&own) {
                return Ok(Ok(false));
            }
            let missing: HashSet<&String> = wanted.iter().filter(|r| **r != own && !present.contains(*r)).collect();
            if !missing.is_empty() {
                let missing = missing.into_iter().map(|m| format!("{}/{m}", hibernation::nix::STORE_DIR)).collect();
                return Ok(Err(PushError::MissingReferences {
                    path: format!("{}/{own}", hibernation::nix::STORE_DIR),
                    missing,
                }));
            }
            paths::insert_path(c, &new, &references)?;
            Ok(Ok(true))
        })
        .await;
    match result {
        Ok(outcome) => outcome,
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        (dir, storage)
    }

    fn sample_nar() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"hello\n").unwrap();
        let mut nar = Vec::new();
        hibernation::nix::nar::dump_path(&dir.path().join("f"), &mut nar).unwrap();
        nar
    }

    #[test]
    fn accepts_a_matching_nar_and_hashes_the_compressed_bytes() {
        let (_dir, storage) = storage();
        let nar = sample_nar();
        let body = zstd::encode_all(nar.as_slice(), 3).unwrap();
        let received = receive_nar(&storage, body.as_slice(), &NarHash::digest(&nar), nar.len() as u64).unwrap();
        assert_eq!(received.file_size, body.len() as u64);
        assert_eq!(received.file_hash, NarHash::digest(&body));
    }

    #[test]
    fn names_what_is_wrong_with_a_body() {
        let (dir, storage) = storage();
        let nar = sample_nar();
        let hash = NarHash::digest(&nar);
        let size = nar.len() as u64;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"definitely not zstd".to_vec(), "not a valid zstd stream"),
            (zstd::encode_all(&nar[..size as usize / 2], 3).unwrap(), "ended"),
            (zstd::encode_all(&b"not a nar at all, but long enough"[..], 3).unwrap(), "malformed"),
            (Vec::new(), "not a NAR"),
        ];
        for (body, expected) in cases {
            let err = receive_nar(&storage, body.as_slice(), &hash, size).err().expect("must fail").to_string();
            assert!(err.contains(expected), "expected {expected:?} in {err:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "no temporary file is left");
    }
}
