//! Blobs as files under a directory.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::BlobReader;

/// Writes `bytes` under a name nothing refers to yet, durably (its directory entry is the
/// caller's to sync).
fn write_new_durably(target: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(target)?;
    file.write_all(bytes)?;
    file.sync_data()
}

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

    /// Moves a finished temporary file into place (same filesystem: an atomic rename), with a
    /// small companion blob (a listing) written beside it, durably: when this returns, the
    /// data and the names are on disk, so a row committed next never points at a name the
    /// disk forgot. `key` and the companion's key are new (random) names no row refers to
    /// yet, so the rename comes first and the syncs after it: a crash in between leaves at
    /// most an object nothing refers to, which the collector's orphan sweep removes, and on
    /// ext4 the file's sync commits the rename with it, leaving the directory's sync nothing
    /// to wait for. The data and the companion are synced at once, on two threads: each
    /// waits for the disk, and this is the last thing an upload waits for.
    pub fn commit(&self, temp: &Path, file: std::fs::File, key: &str, beside: Option<(&str, &[u8])>) -> io::Result<()> {
        let target = self.path_of(key);
        let dir = target.parent().expect("keys name a file under the root");
        std::fs::create_dir_all(dir)?;
        let mut dirs = vec![dir.to_path_buf()];
        let companion = match beside {
            Some((companion, bytes)) => {
                let companion = self.path_of(companion);
                let companion_dir = companion.parent().expect("keys name a file under the root");
                if companion_dir != dir {
                    std::fs::create_dir_all(companion_dir)?;
                    dirs.push(companion_dir.to_path_buf());
                }
                Some((companion, bytes))
            }
            None => None,
        };
        std::fs::rename(temp, &target)?;
        let synced = std::thread::scope(|scope| {
            let written = companion.as_ref().map(|(path, bytes)| scope.spawn(move || write_new_durably(path, bytes)));
            let synced = file.sync_data();
            let written = written.map_or(Ok(()), |w| w.join().unwrap_or_else(|_| Err(io::Error::other("panicked"))));
            synced.and(written)
        });
        if let Err(e) = synced {
            // Nothing refers to the new names yet: take them back rather than leave them.
            let _ = std::fs::remove_file(&target);
            if let Some((path, _)) = &companion {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        dirs.iter().try_for_each(|d| sync_dir(d))
    }

    /// Walks the files under `prefix`, handing them to `page` [`super::LIST_PAGE`] at a time
    /// until it returns false. Blocking.
    pub fn list(&self, prefix: &str, mut page: impl FnMut(io::Result<Vec<super::StoredObject>>) -> bool) {
        let mut dirs = vec![self.path_of(prefix)];
        let mut batch = Vec::new();
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    page(Err(e));
                    return;
                }
            };
            for entry in entries {
                let found = entry.and_then(|e| Ok((e.path(), e.metadata()?)));
                let (path, meta) = match found {
                    Ok(found) => found,
                    // Deleted while listing.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        page(Err(e));
                        return;
                    }
                };
                if meta.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let Some(key) = path.strip_prefix(&self.root).ok().and_then(|k| k.to_str()) else { continue };
                let modified = meta.modified().unwrap_or(std::time::SystemTime::now());
                batch.push(super::StoredObject { key: key.to_string(), modified, size: meta.len() });
                if batch.len() >= super::LIST_PAGE && !page(Ok(std::mem::take(&mut batch))) {
                    return;
                }
            }
        }
        if !batch.is_empty() {
            page(Ok(batch));
        }
    }

    /// Deletes blobs (missing ones are fine) in one trip to the blocking pool; the errors of
    /// those that could not be deleted.
    pub async fn delete(&self, keys: &[&str]) -> Vec<(String, io::Error)> {
        let paths: Vec<(String, PathBuf)> = keys.iter().map(|k| (k.to_string(), self.path_of(k))).collect();
        let deleted = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .filter_map(|(key, path)| match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Some((key, e)),
                    _ => None,
                })
                .collect()
        });
        deleted
            .await
            .unwrap_or_else(|e| keys.iter().map(|k| (k.to_string(), io::Error::other(e.to_string()))).collect())
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
