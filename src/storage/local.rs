//! Blobs as files under a directory.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::BlobReader;

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

    /// Moves a finished temporary file into place (same filesystem: an atomic rename).
    pub fn commit(&self, temp: &Path, file: std::fs::File, key: &str) -> io::Result<()> {
        file.sync_all()?;
        let target = self.path_of(key);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::rename(temp, &target)
    }

    pub async fn put_bytes(&self, key: &str, bytes: &[u8]) -> io::Result<()> {
        let target = self.path_of(key);
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        let temp = target.with_extension(format!("tmp-{}", crate::services::random_id()));
        tokio::fs::write(&temp, bytes).await?;
        tokio::fs::rename(&temp, &target).await
    }

    pub async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path_of(key)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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
