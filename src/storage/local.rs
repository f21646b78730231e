//! Blobs as files under a directory.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::BlobReader;

/// Makes renames and new entries in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Moves a finished temporary file into place (same filesystem: an atomic rename), durably:
    /// the file's data first, then the directory entry, so that a crash never leaves a
    /// committed row pointing at a name the disk forgot.
    pub fn commit(&self, temp: &Path, file: std::fs::File, key: &str) -> io::Result<()> {
        file.sync_all()?;
        let target = self.path_of(key);
        let dir = target.parent().expect("keys name a file under the root");
        std::fs::create_dir_all(dir)?;
        std::fs::rename(temp, &target)?;
        sync_dir(dir)
    }

    /// Writes a small blob (a listing) durably under `key`.
    pub fn put_bytes(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        let target = self.path_of(key);
        let dir = target.parent().expect("keys name a file under the root");
        std::fs::create_dir_all(dir)?;
        let temp = target.with_extension(format!("tmp-{}", crate::services::random_id()));
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, &target)?;
        sync_dir(dir)
    }

    pub async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads `[start, end)` of a blob whole, in one trip to the blocking pool (for small
    /// blobs: a streamed read costs a trip per open, read and end of file).
    pub async fn read_small(&self, key: &str, (start, end): (u64, u64)) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek};
        let path = self.path_of(key);
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(path)?;
            file.seek(io::SeekFrom::Start(start))?;
            let mut out = Vec::with_capacity(end.saturating_sub(start) as usize);
            file.take(end.saturating_sub(start)).read_to_end(&mut out)?;
            Ok(out)
        })
        .await
        .map_err(io::Error::other)?
    }

    pub async fn read(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<BlobReader> {
        let mut file = tokio::fs::File::open(self.path_of(key)).await?;
        Ok(match range {
            None => Box::pin(file),
            Some((start, end)) => {
                file.seek(io::SeekFrom::Start(start)).await?;
                Box::pin(file.take(end.saturating_sub(start)))
            }
        })
    }
}
