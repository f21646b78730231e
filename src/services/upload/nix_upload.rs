//! Uploads from stock Nix (`nix copy --to http://...`): the NAR arrives first (PUT
//! `nar/<FileHash>.nar.<ext>`), then its narinfo. The NAR is verified on arrival and kept as a
//! pending upload; the narinfo is verified (signature, references) and must match the NAR's
//! NarHash and NarSize before the path becomes visible. Build logs and listings too.

use hibernation::api::PathUpload;
use hibernation::nix::NarInfo;

use super::Destination;
use super::push::{self, NarSource, PushableCache, delete_stored, store_received};
use super::push_error::PushError;
use super::quota::{self, QuotaCheck};
use super::receive::{self, ReceiveLimits};
use crate::db::models::PendingNar;
use crate::db::{Db, now, uploads};
use crate::services::identity::auth::Caller;
use crate::services::serving::narinfo::parse_nar_file_name;
use crate::storage::Storage;

fn invalid(msg: impl Into<String>) -> PushError {
    PushError::InvalidInput(msg.into())
}

/// Receives a NAR from `nix copy` and keeps it until its narinfo arrives.
pub async fn accept_nar(
    db: &Db,
    storage: &Storage,
    caller: &Caller,
    cache: &PushableCache,
    file: &str,
    body: impl tokio::io::AsyncRead + Send + Unpin + 'static,
    limits: &ReceiveLimits,
) -> Result<u64, PushError> {
    let (file_hash, compression) = parse_nar_file_name(file)
        .ok_or_else(|| invalid(format!("nar/{file} is not a NAR file name (<nix32 sha256>.nar[.xz|.zst|.bz2|.br])")))?;
    // Refuse early when the cache is full already; the exact size is checked on arrival.
    quota::make_room(db, cache, 1, QuotaCheck::Arrival).await?;
    let received = receive::receive_upload(storage, limits, body, compression, None).await?;
    if received.file_hash != file_hash {
        return Err(PushError::NarMismatch(format!(
            "the uploaded file hashes to {}, but its name says {}",
            received.file_hash.to_nix32(),
            file_hash.to_nix32()
        )));
    }
    let stored_bytes = received.file_size;
    // Pending uploads count against the quota until their narinfo commits them.
    quota::make_room(db, cache, stored_bytes as i64, QuotaCheck::Arrival).await?;
    let (key, nar) = store_received(storage, received).await?;
    let pending = PendingNar {
        id: 0,
        cache_id: cache.id,
        user_id: caller.user_id,
        file_hash: nar.file_hash,
        compression: nar.compression,
        file_size: nar.file_size,
        nar_hash: nar.nar_hash,
        nar_size: nar.nar_size,
        storage_key: key.clone(),
        created_at: now(),
    };
    match db.write(move |c| uploads::put_pending(c, &pending)).await {
        Ok(true) => {}
        // The same bytes are already waiting (another `nix copy` of this path): keep those.
        Ok(false) => delete_stored(storage, &key).await,
        // The same, committed by a concurrent upload between the check and the insert.
        Err(e) if crate::db::is_unique_violation(&e) => delete_stored(storage, &key).await,
        Err(e) => {
            delete_stored(storage, &key).await;
            return Err(e.into());
        }
    }
    Ok(stored_bytes)
}

/// Verifies a narinfo from `nix copy` and makes its path visible. Returns false when the
/// cache already had the path.
pub async fn accept_narinfo(
    to: Destination<'_>,
    caller: &Caller,
    cache: PushableCache,
    hash_part: &str,
    text: &str,
) -> Result<bool, PushError> {
    let Destination { db, storage, replication, .. } = to;
    let info = NarInfo::parse(text).map_err(|e| invalid(e.to_string()))?;
    let upload = PathUpload {
        store_path: info.store_path.full_path(),
        nar_hash: info.nar_hash,
        nar_size: info.nar_size,
        references: info.references.iter().map(|r| r.base_name().to_string()).collect(),
        deriver: info.deriver.clone(),
        ca: info.ca.clone(),
        signatures: info.signatures.clone(),
    };
    // The NAR is named by the hash of the file; take it from FileHash, or from the URL.
    let file_hash = info
        .file_hash
        .or_else(|| parse_nar_file_name(info.url.rsplit('/').next()?).map(|(h, _)| h))
        .map(|h| h.to_nix32());
    let cache_id = cache.id;
    let find_pending = async {
        match file_hash {
            Some(h) => db.read(move |c| uploads::find_pending(c, cache_id, &h)).await,
            None => Ok(None),
        }
    };
    // Both look-ups at once: `nix copy` waits for this answer before its next upload.
    let (verified, pending) = tokio::join!(push::verify_path(db, None, cache, hash_part, upload), find_pending);
    let (verified, pending) = (verified?, pending?);
    if verified.already_present {
        // A concurrent `nix copy` committed the path first: the NAR this one sent is surplus.
        if let Some(pending) = pending {
            push::discard_pending(db, storage, pending).await?;
        }
        replication.wait_until_current().await;
        return Ok(false);
    }
    let source = match pending {
        Some(p) if p.nar_hash == info.nar_hash.to_nix32() && p.nar_size as u64 == info.nar_size => {
            NarSource::Pending(p)
        }
        Some(p) => {
            return Err(PushError::NarMismatch(format!(
                "the uploaded NAR has NarHash sha256:{} and NarSize {}, the narinfo says {} and {}",
                p.nar_hash, p.nar_size, info.nar_hash, info.nar_size
            )));
        }
        None => NarSource::Attach(caller.clone()),
    };
    push::commit(to, verified, source).await
}

/// Stores a build log (`nix store copy-log --to`), keeping its transfer encoding. The body
/// streams to a temporary file (its size is capped by the caller's body limit).
pub async fn accept_log(
    db: &Db,
    storage: &Storage,
    cache: &PushableCache,
    drv: &str,
    content_encoding: Option<String>,
    mut body: impl tokio::io::AsyncRead + Send + Unpin,
) -> Result<(), PushError> {
    if !hibernation::nix::store_path::is_valid_name(drv) || drv.len() < 34 {
        return Err(invalid(format!("log/{drv} does not name a derivation")));
    }
    let upload = storage.begin_upload().map_err(PushError::Storage)?;
    let mut file = tokio::fs::File::from_std(upload.file.try_clone().map_err(PushError::Storage)?);
    tokio::io::copy(&mut body, &mut file).await.map_err(receive::classify_body_error)?;
    file.sync_all().await.map_err(PushError::Storage)?;
    let key = crate::storage::keys::new_log_key(cache.id, drv);
    storage.commit(upload, &key, None).await.map_err(PushError::Storage)?;
    let (drv, stored) = (drv.to_string(), key.clone());
    let cache_id = cache.id;
    match db.write(move |c| uploads::put_log(c, cache_id, &drv, &stored, content_encoding.as_deref())).await {
        Ok(Some(old)) => delete_stored(storage, &old).await,
        Ok(None) => {}
        Err(e) => {
            delete_stored(storage, &key).await;
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hibernation::nix::Compression;

    #[test]
    fn parses_nar_file_names_nix_writes() {
        let hash = "1pnl92y7rrkm7kn2ra0d98fc4c2kz383gk396jwinbx04ldmkdzb";
        assert_eq!(parse_nar_file_name(&format!("{hash}.nar.xz")).unwrap().1, Compression::Xz);
        assert_eq!(parse_nar_file_name(&format!("{hash}.nar.zst")).unwrap().1, Compression::Zstd);
        assert_eq!(parse_nar_file_name(&format!("{hash}.nar")).unwrap().1, Compression::None);
        assert_eq!(parse_nar_file_name(&format!("{hash}.nar.xz")).unwrap().0.to_nix32(), hash);
        assert!(parse_nar_file_name("short.nar.xz").is_none());
        assert!(parse_nar_file_name(&format!("{hash}.nar.lz4")).is_none());
        assert!(parse_nar_file_name(&format!("{hash}.tar")).is_none());
    }
}
