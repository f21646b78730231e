//! NAR files on the local filesystem.
//!
//! Uploads are written to `tmp/` and renamed into place only after they were verified, so a
//! reader never sees a partial file. Every stored object has its own key (NarHash plus a unique
//! upload id), so two concurrent uploads of the same NAR never overwrite each other: the
//! loser of the database insert deletes its own file.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};

const TMP_DIR: &str = "tmp";
/// Temporary files older than this belong to uploads that died with their process.
const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

/// An upload being written; removed on drop unless committed.
pub struct PendingUpload {
    path: PathBuf,
    pub file: std::fs::File,
    committed: bool,
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Storage {
    /// Opens (creating if needed) the storage directory and proves it is writable.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(root.join(TMP_DIR))
            .with_context(|| format!("STORAGE_PATH {} cannot be created", root.display()))?;
        let probe = root.join(TMP_DIR).join(".write-probe");
        std::fs::write(&probe, b"ok")
            .and_then(|_| std::fs::read(&probe))
            .and_then(|data| if data == b"ok" { Ok(()) } else { Err(io::Error::other("read back different bytes")) })
            .with_context(|| format!("STORAGE_PATH {} is not writable", root.display()))?;
        std::fs::remove_file(&probe).ok();
        let storage = Self { root: std::path::absolute(root)? };
        storage.remove_stale_uploads();
        if !storage.root.is_dir() {
            bail!("STORAGE_PATH {} is not a directory", root.display());
        }
        Ok(storage)
    }

    fn remove_stale_uploads(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join(TMP_DIR)) else {
            return;
        };
        let cutoff = SystemTime::now() - STALE_UPLOAD_AGE;
        for entry in entries.flatten() {
            let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    pub fn begin_upload(&self) -> io::Result<PendingUpload> {
        let name = format!("{}.part", crate::services::random_id());
        let path = self.root.join(TMP_DIR).join(name);
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(PendingUpload { path, file, committed: false })
    }

    /// Makes a verified upload durable and visible under `key`.
    pub fn commit(&self, mut upload: PendingUpload, key: &str) -> io::Result<()> {
        upload.file.sync_all()?;
        let target = self.path_of(key);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(&upload.path, &target)?;
        upload.committed = true;
        Ok(())
    }

    pub fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path_of(key)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub async fn open_read(&self, key: &str) -> io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path_of(key)).await
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn uncommitted_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut upload = storage.begin_upload().unwrap();
        upload.file.write_all(b"partial").unwrap();
        drop(upload);
        assert_eq!(std::fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
    }

    #[test]
    fn committed_uploads_are_readable_under_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let mut upload = storage.begin_upload().unwrap();
        upload.file.write_all(b"nar bytes").unwrap();
        storage.commit(upload, "nar/abc.nar.zst").unwrap();
        assert_eq!(std::fs::read(dir.path().join("nar/abc.nar.zst")).unwrap(), b"nar bytes");
        storage.delete("nar/abc.nar.zst").unwrap();
        storage.delete("nar/abc.nar.zst").unwrap();
    }

    #[test]
    fn unwritable_storage_is_a_clear_error() {
        let err = Storage::open(Path::new("/proc/hibernation-storage")).unwrap_err();
        assert!(format!("{err:#}").contains("STORAGE_PATH /proc/hibernation-storage"), "{err:#}");
    }
}
