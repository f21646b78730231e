//! Where NAR files and other blobs live: a local directory (default) or an S3 bucket.
//!
//! Uploads are always spooled to a local temporary file first, verified, and only then
//! committed under their final key, so nothing partial is ever readable. Keys are unique per
//! upload, so concurrent uploads never overwrite each other.

pub mod keys;
mod local;
mod s3;

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::io::AsyncRead;

pub use local::LocalStorage;
pub use s3::{S3Config, S3Storage};

/// A stored object as a listing shows it.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub key: String,
    pub modified: SystemTime,
    pub size: u64,
}

/// Objects per page of a listing.
const LIST_PAGE: usize = 1000;

/// A readable stream of stored bytes.
pub type BlobReader = Pin<Box<dyn AsyncRead + Send>>;

const TMP_DIR: &str = "tmp";
/// Temporary files older than this belong to uploads that died with their process.
const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone)]
pub struct Storage {
    spool: PathBuf,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Local(LocalStorage),
    S3(S3Storage),
}

/// An upload being written to a local temporary file; removed on drop unless committed.
pub struct PendingUpload {
    path: PathBuf,
    pub file: std::fs::File,
    committed: bool,
}

impl PendingUpload {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Storage {
    /// Local storage under `root` (which also holds the temporary files).
    pub fn local(root: &Path) -> anyhow::Result<Self> {
        let spool = prepare_spool(root)?;
        Ok(Self { spool, backend: Backend::Local(LocalStorage::new(std::path::absolute(root)?)) })
    }

    /// S3 storage; `spool_root` holds temporary files while uploads are verified.
    pub async fn s3(config: S3Config, spool_root: &Path) -> anyhow::Result<Self> {
        let spool = prepare_spool(spool_root)?;
        let s3 = S3Storage::connect(config).await?;
        Ok(Self { spool, backend: Backend::S3(s3) })
    }

    pub fn begin_upload(&self) -> io::Result<PendingUpload> {
        let path = self.spool.join(format!("{}.part", crate::random::random_id()));
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        Ok(PendingUpload { path, file, committed: false })
    }

    /// Makes a verified upload durable and readable under `key`, with an optional small blob
    /// (a listing) stored beside it under its own key.
    pub async fn commit(
        &self,
        mut upload: PendingUpload,
        key: &str,
        beside: Option<(String, Vec<u8>)>,
    ) -> io::Result<()> {
        match &self.backend {
            Backend::Local(local) => {
                let (path, file) = (upload.path.clone(), upload.file.try_clone()?);
                let (local, key) = (local.clone(), key.to_string());
                tokio::task::spawn_blocking(move || {
                    local.commit(&path, file, &key, beside.as_ref().map(|(k, b)| (k.as_str(), b.as_slice())))
                })
                .await
                .map_err(io::Error::other)??;
                upload.committed = true;
            }
            // The temporary file is removed when `upload` drops, uploaded or not.
            Backend::S3(s3) => match beside {
                Some((companion, bytes)) => {
                    tokio::try_join!(s3.put_bytes(&companion, bytes), s3.upload_file(upload.path(), key))?;
                }
                None => s3.upload_file(upload.path(), key).await?,
            },
        }
        Ok(())
    }

    /// Deletes several blobs (missing ones are fine); the errors of those that could not be.
    pub async fn delete_each(&self, keys: &[&str]) -> Vec<(String, io::Error)> {
        match &self.backend {
            Backend::Local(local) => local.delete(keys).await,
            Backend::S3(s3) => s3.delete_many(keys).await,
        }
    }

    /// Every stored object under `prefix` (such as `nar/`), in pages, in no promised order.
    /// Listing stops when the receiver drops.
    pub fn list(&self, prefix: &str) -> tokio::sync::mpsc::Receiver<io::Result<Vec<StoredObject>>> {
        let (pages, receiver) = tokio::sync::mpsc::channel(2);
        match &self.backend {
            Backend::Local(local) => {
                let (local, prefix) = (local.clone(), prefix.to_string());
                tokio::task::spawn_blocking(move || local.list(&prefix, |page| pages.blocking_send(page).is_ok()));
            }
            Backend::S3(s3) => {
                let (s3, prefix) = (s3.clone(), prefix.to_string());
                tokio::spawn(async move { s3.list(&prefix, &pages).await });
            }
        }
        receiver
    }

    /// Reads `[start, end)` of a blob (the whole blob when `range` is None).
    pub async fn read(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<BlobReader> {
        match &self.backend {
            Backend::Local(local) => local.read(key, range).await,
            Backend::S3(s3) => s3.read(key, range).await,
        }
    }

    /// Reads `[start, end)` of a small blob into memory (callers keep it to a few hundred KiB).
    pub async fn read_small(&self, key: &str, range: (u64, u64)) -> io::Result<Vec<u8>> {
        match &self.backend {
            Backend::Local(local) => local.read_small(key, range).await,
            Backend::S3(_) => {
                use tokio::io::AsyncReadExt;
                let mut out = Vec::new();
                self.read(key, Some(range)).await?.read_to_end(&mut out).await?;
                Ok(out)
            }
        }
    }

    #[cfg(test)]
    pub async fn read_to_end(&self, key: &str) -> io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        self.read(key, None).await?.read_to_end(&mut out).await?;
        Ok(out)
    }
}

/// Creates `<root>/tmp`, proves it is writable, and removes stale temporary files.
fn prepare_spool(root: &Path) -> anyhow::Result<PathBuf> {
    let spool = root.join(TMP_DIR);
    std::fs::create_dir_all(&spool).with_context(|| format!("STORAGE_PATH {} cannot be created", root.display()))?;
    let probe = spool.join(format!(".write-probe-{}", crate::random::random_id()));
    std::fs::write(&probe, b"ok")
        .and_then(|_| std::fs::read(&probe))
        .and_then(|data| if data == b"ok" { Ok(()) } else { Err(io::Error::other("read back different bytes")) })
        .with_context(|| format!("STORAGE_PATH {} is not writable", root.display()))?;
    std::fs::remove_file(&probe).ok();
    let cutoff = SystemTime::now() - STALE_UPLOAD_AGE;
    for entry in std::fs::read_dir(&spool)?.flatten() {
        if entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(std::path::absolute(spool)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn uncommitted_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let mut upload = storage.begin_upload().unwrap();
        upload.file.write_all(b"partial").unwrap();
        drop(upload);
        assert_eq!(std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn committed_uploads_are_readable_under_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path()).unwrap();
        let mut upload = storage.begin_upload().unwrap();
        upload.file.write_all(b"nar bytes").unwrap();
        storage.commit(upload, "nar/abc.nar.zst", Some(("nar/abc.nar.zst.ls".into(), b"{}".to_vec()))).await.unwrap();
        assert_eq!(storage.read_to_end("nar/abc.nar.zst.ls").await.unwrap(), b"{}");
        assert_eq!(storage.read_to_end("nar/abc.nar.zst").await.unwrap(), b"nar bytes");
        let mut part = Vec::new();
        use tokio::io::AsyncReadExt;
        storage.read("nar/abc.nar.zst", Some((4, 9))).await.unwrap().read_to_end(&mut part).await.unwrap();
        assert_eq!(part, b"bytes");
        assert_eq!(std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
        assert!(storage.delete_each(&["nar/abc.nar.zst", "nar/abc.nar.zst.ls"]).await.is_empty());
        assert!(storage.delete_each(&["nar/abc.nar.zst"]).await.is_empty(), "deleting twice is fine");
        assert!(storage.read("nar/abc.nar.zst", None).await.is_err());
    }

    #[test]
    fn unwritable_storage_is_a_clear_error() {
        let err = Storage::local(Path::new("/proc/hibernation-storage")).err().unwrap();
        assert!(format!("{err:#}").contains("STORAGE_PATH /proc/hibernation-storage"), "{err:#}");
    }
}
