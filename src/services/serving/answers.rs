//! What the Nix binary-cache protocol answers for a cache the caller may read: narinfos, NAR
//! listings, NARs and build logs; from memory where it can (`hot_cache`, the `presence`
//! filter), from the database and the store otherwise, and counted (`access_log`, metrics).
//! The HTTP layer only parses the request and shapes the response.

use std::sync::Arc;

use bytes::Bytes;

use super::access_log::AccessLog;
use super::hot_cache::{HotCache, SMALL_NAR};
use super::replication::Replication;
use crate::db::models::{Cache, Nar};
use crate::db::{Db, DbError, paths, uploads};
use crate::services::metrics;
use crate::storage::keys::listing_key;
use crate::storage::{BlobReader, Storage};

/// What answering Nix needs of this process.
#[derive(Clone, Copy)]
pub struct Serving<'a> {
    pub db: &'a Db,
    pub storage: &'a Storage,
    pub hot: &'a HotCache,
    pub replication: &'a Replication,
    pub access_log: &'a AccessLog,
}

/// Why an answer could not be given (absence is not an error: `None`).
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// The store failed, or holds an object other than the database says.
    #[error("{0}")]
    Storage(String),
}

/// A stored file's bytes, whole (small ones, or a short range) or as a stream.
pub enum Blob {
    Whole(Bytes),
    Stream(BlobReader),
}

/// The text of the narinfo of `hash` (a validated hash part) in `cache`; `None` when the
/// cache has no such path. Every answer counts as a hit or a miss.
pub async fn narinfo(s: Serving<'_>, cache: &Cache, hash: &str) -> Result<Option<Arc<str>>, DbError> {
    if let Some(text) = s.hot.narinfo(cache.id, hash) {
        count_narinfo(s, cache, true);
        return Ok(Some(text));
    }
    // Misses are most of what Nix asks a second substituter: answered from the presence
    // filter, or remembered briefly (MISS_TTL) when the filter was not sure.
    if !s.replication.presence().may_contain(cache.id, hash) || s.hot.is_miss(cache.id, hash) {
        count_narinfo(s, cache, false);
        return Ok(None);
    }
    let looked_up = s.hot.misses_seen_at();
    let entry = find_entry(s, cache, hash).await?;
    count_narinfo(s, cache, entry.is_some());
    let Some(entry) = entry else {
        s.hot.remember_miss(cache.id, hash, looked_up);
        return Ok(None);
    };
    // A stored row that cannot be rendered (a line break from before values were checked) is
    // absent to Nix: a 5xx would make it retry and fail the build instead of building.
    let text: Arc<str> = match super::narinfo::render(&entry) {
        Ok(text) => Arc::from(text),
        Err(e) => {
            tracing::error!("{e}");
            return Ok(None);
        }
    };
    s.hot.remember_narinfo(cache.id, hash, text.clone());
    Ok(Some(text))
}

/// The JSON listing of the NAR of path `hash` (`<hash>.ls`); `None` when the cache has no
/// such path or its NAR has no listing (more entries than a listing may hold).
pub async fn listing(s: Serving<'_>, cache: &Cache, hash: &str) -> Result<Option<BlobReader>, ServingError> {
    let Some(entry) = find_entry(s, cache, hash).await? else { return Ok(None) };
    match s.storage.read(&listing_key(&entry.nar.storage_key), None).await {
        Ok(listing) => Ok(Some(listing)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServingError::Storage(e.to_string())),
    }
}

/// The path from the database. Found before the presence filter read it (stored through
/// another process a moment ago, or a false "maybe"): its NAR must not be answered as absent
/// once its narinfo is served, so the filter learns it now.
async fn find_entry(s: Serving<'_>, cache: &Cache, hash: &str) -> Result<Option<paths::PathEntry>, DbError> {
    let (cache_id, lookup) = (cache.id, hash.to_string());
    let entry = s.db.read(move |c| paths::find_entry(c, cache_id, &lookup)).await?;
    if let Some(entry) = &entry {
        s.replication.presence().add_nar(cache.id, &entry.nar.file_hash);
        s.replication.presence().add_nar(cache.id, &entry.nar.nar_hash);
    }
    Ok(entry)
}

/// A narinfo answered: for the overview's chart and for Prometheus.
fn count_narinfo(s: Serving<'_>, cache: &Cache, hit: bool) {
    s.access_log.record_narinfo(cache.id, hit);
    metrics::narinfo(&cache.name, hit);
}

/// A NAR of the cache, by its NarHash (nix32): the path that owns it and the stored NAR;
/// `None` when the cache has none. From where this process last found it when
/// `remembered`; a caller whose read of that object fails with NotFound asks again with
/// `remembered` false (deleted and pushed again through another process: the database says
/// where it is now).
pub async fn find_nar(
    s: Serving<'_>,
    cache: &Cache,
    nar_hash: &str,
    remembered: bool,
) -> Result<Option<(i64, Nar)>, DbError> {
    let cache_id = cache.id;
    if remembered && let Some(found) = s.hot.nar(cache_id, nar_hash) {
        return Ok(Some(found));
    }
    // What `nix copy --to` asks before each upload: answered without a query.
    if !s.replication.presence().may_hold_nar(cache_id, nar_hash) {
        return Ok(None);
    }
    let lookup = nar_hash.to_string();
    let found = s.db.read(move |c| paths::nar_in_cache(c, cache_id, &lookup)).await?;
    if let Some(found) = &found {
        s.hot.remember_nar(cache_id, nar_hash, found.clone());
    }
    Ok(found)
}

/// The bytes `[start, end)` of a stored NAR (`partial`: a range was asked for). Most NARs of
/// a closure are small: the smallest are kept in memory, the others read whole in one trip to
/// the blocking pool (up to `whole_up_to` bytes); large ones stream. A NotFound error means
/// the object is gone (this process's memory of it is dropped).
pub async fn read_nar(
    s: Serving<'_>,
    cache: &Cache,
    stored: &Nar,
    (start, end): (u64, u64),
    partial: bool,
    whole_up_to: u64,
) -> std::io::Result<Blob> {
    let read = read_stored_nar(s, stored, (start, end), partial, whole_up_to).await;
    if read.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        // Deleted through another server process since this one remembered it.
        s.hot.forget_nars(cache.id);
    }
    read
}

async fn read_stored_nar(
    s: Serving<'_>,
    stored: &Nar,
    (start, end): (u64, u64),
    partial: bool,
    whole_up_to: u64,
) -> std::io::Result<Blob> {
    let len = stored.file_size as u64;
    if len <= SMALL_NAR {
        let whole = match s.hot.small_nar(&stored.storage_key) {
            Some(whole) => whole,
            None => {
                let read = s.storage.read_small(&stored.storage_key, (0, len)).await?;
                if read.len() as u64 != len {
                    return Err(std::io::Error::other(format!(
                        "registered with {len} bytes but storage holds {}",
                        read.len()
                    )));
                }
                let whole = Bytes::from(read);
                s.hot.remember_small_nar(&stored.storage_key, whole.clone());
                whole
            }
        };
        Ok(Blob::Whole(whole.slice(start as usize..end as usize)))
    } else if end - start <= whole_up_to {
        Ok(Blob::Whole(Bytes::from(s.storage.read_small(&stored.storage_key, (start, end)).await?)))
    } else {
        let range = partial.then_some((start, end));
        Ok(Blob::Stream(s.storage.read(&stored.storage_key, range).await?))
    }
}

/// `bytes` of the NAR of path `path_id` went to a client: for LRU eviction, the traffic
/// chart and Prometheus.
pub fn count_nar_served(s: Serving<'_>, cache: &Cache, path_id: i64, bytes: u64) {
    s.access_log.record_nar(cache.id, path_id, bytes);
    metrics::nar_served(&cache.name, bytes);
}

/// A build log stored with `nix store copy-log` for the derivation `drv`, and the transfer
/// encoding it was sent with; `None` when the cache has none.
pub async fn build_log(
    s: Serving<'_>,
    cache: &Cache,
    drv: &str,
) -> Result<Option<(BlobReader, Option<String>)>, ServingError> {
    let (cache_id, lookup) = (cache.id, drv.to_string());
    let Some(log) = s.db.read(move |c| uploads::find_log(c, cache_id, &lookup)).await? else { return Ok(None) };
    let reader = s
        .storage
        .read(&log.storage_key, None)
        .await
        .map_err(|e| ServingError::Storage(format!("the log of {drv} cannot be read: {e}")))?;
    Ok(Some((reader, log.content_encoding)))
}
