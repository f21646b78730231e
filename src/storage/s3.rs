//! Blobs in an S3-compatible bucket (rust-s3). Large uploads go up as multipart uploads with
//! one part in memory at a time, and a failed one is aborted so no object or part is left.
//! Reads stream through a presigned GET, with a `Range` header for byte ranges.

use std::io;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use futures_util::TryStreamExt;
use s3::creds::Credentials;
use s3::serde_types::ObjectIdentifier;
use s3::{Bucket, Region};
use tokio::io::AsyncReadExt;

use super::BlobReader;

/// Parts of a multipart upload; S3 needs at least 5 MiB per part but the last.
const PART_SIZE: usize = 16 * 1024 * 1024;
const CONTENT_TYPE: &str = "application/octet-stream";
const PRESIGN_SECONDS: u32 = 3600;
/// S3's limit for one DeleteObjects request.
const DELETES_PER_REQUEST: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub host: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub bucket: String,
    pub force_path_style: bool,
}

#[derive(Clone)]
pub struct S3Storage {
    bucket: Arc<Bucket>,
    http: reqwest::Client,
}

fn s3_error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("S3 {what} failed: {e}"))
}

impl S3Storage {
    /// Connects and proves the bucket is usable by writing and deleting a probe object.
    pub async fn connect(config: S3Config) -> anyhow::Result<Self> {
        let region = Region::Custom { region: config.region.clone(), endpoint: config.host.clone() };
        let credentials = Credentials::new(Some(&config.access_key), Some(&config.secret_key), None, None, None)
            .context("invalid S3 credentials")?;
        let mut bucket = Bucket::new(&config.bucket, region, credentials).context("invalid S3 configuration")?;
        if config.force_path_style {
            bucket = bucket.with_path_style();
        }
        let storage = Self { bucket: Arc::from(bucket), http: reqwest::Client::new() };
        let probe = format!("tmp/.probe-{}", crate::random::random_id());
        let check = async {
            storage.put_bytes(&probe, b"ok".to_vec()).await?;
            storage.delete(&probe).await
        };
        check.await.with_context(|| format!("cannot use S3 bucket {:?} at {}", config.bucket, config.host))?;
        Ok(storage)
    }

    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> io::Result<()> {
        self.bucket.put_object_with_content_type(key, &bytes, CONTENT_TYPE).await.map_err(|e| s3_error("PUT", e))?;
        Ok(())
    }

    pub async fn upload_file(&self, path: &Path, key: &str) -> io::Result<()> {
        let mut file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        if size <= PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).await?;
            return self.put_bytes(key, bytes).await;
        }
        let upload = self
            .bucket
            .initiate_multipart_upload(key, CONTENT_TYPE)
            .await
            .map_err(|e| s3_error("starting a multipart upload", e))?;
        let result = self.upload_parts(&mut file, key, &upload.upload_id).await;
        if result.is_err() {
            // Leave nothing behind: parts of an unfinished upload still cost storage.
            if let Err(e) = self.bucket.abort_upload(key, &upload.upload_id).await {
                tracing::warn!("could not abort multipart upload of {key}: {e}");
            }
        }
        result
    }

    async fn upload_parts(&self, file: &mut tokio::fs::File, key: &str, upload_id: &str) -> io::Result<()> {
        let mut parts = Vec::new();
        loop {
            let mut chunk = Vec::with_capacity(PART_SIZE);
            (&mut *file).take(PART_SIZE as u64).read_to_end(&mut chunk).await?;
            if chunk.is_empty() {
                break;
            }
            let number = parts.len() as u32 + 1;
            let part = self
                .bucket
                .put_multipart_chunk(chunk, key, number, upload_id, CONTENT_TYPE)
                .await
                .map_err(|e| s3_error("uploading a part", e))?;
            parts.push(part);
        }
        self.bucket
            .complete_multipart_upload(key, upload_id, parts)
            .await
            .map_err(|e| s3_error("completing a multipart upload", e))?;
        Ok(())
    }

    /// Lists the objects under `prefix` into `pages`, a page per request, until the listing
    /// ends or the receiver drops.
    pub async fn list(&self, prefix: &str, pages: &tokio::sync::mpsc::Sender<io::Result<Vec<super::StoredObject>>>) {
        let mut token = None;
        loop {
            let listed = self
                .bucket
                .list_page(prefix.to_string(), None, token.take(), None, Some(super::LIST_PAGE))
                .await
                .map_err(|e| s3_error("LIST", e));
            let result = match listed {
                Ok((result, _)) => result,
                Err(e) => {
                    let _ = pages.send(Err(e)).await;
                    return;
                }
            };
            let page = result
                .contents
                .into_iter()
                .map(|o| super::StoredObject {
                    modified: chrono::DateTime::parse_from_rfc3339(&o.last_modified)
                        .map(std::time::SystemTime::from)
                        .unwrap_or_else(|_| std::time::SystemTime::now()),
                    key: o.key,
                    size: o.size,
                })
                .collect();
            if pages.send(Ok(page)).await.is_err() || !result.is_truncated {
                return;
            }
            match result.next_continuation_token {
                Some(next) => token = Some(next),
                None => return,
            }
        }
    }

    pub async fn delete(&self, key: &str) -> io::Result<()> {
        match self.bucket.delete_object(key).await {
            Ok(_) => Ok(()),
            Err(s3::error::S3Error::HttpFailWithBody(404, _)) => Ok(()),
            Err(e) => Err(s3_error("DELETE", e)),
        }
    }

    /// Deletes objects a thousand per request (DeleteObjects); a store that refuses the batch
    /// request gets them one by one. Returns the keys that could not be deleted.
    pub async fn delete_many(&self, keys: &[&str]) -> Vec<(String, io::Error)> {
        let mut failed = Vec::new();
        for chunk in keys.chunks(DELETES_PER_REQUEST) {
            let objects: Vec<ObjectIdentifier> = chunk.iter().map(|key| ObjectIdentifier::new(*key)).collect();
            match self.bucket.delete_objects(objects).await {
                Ok(result) => failed.extend(
                    result
                        .errors
                        .into_iter()
                        .map(|e| (e.key, s3_error("DELETE", format!("{}: {}", e.code, e.message)))),
                ),
                Err(e) => {
                    tracing::debug!("S3 DeleteObjects failed ({e}); deleting one object at a time");
                    for key in chunk {
                        if let Err(e) = self.delete(key).await {
                            failed.push((key.to_string(), e));
                        }
                    }
                }
            }
        }
        failed
    }

    pub async fn read(&self, key: &str, range: Option<(u64, u64)>) -> io::Result<BlobReader> {
        let url = self.bucket.presign_get(key, PRESIGN_SECONDS, None).await.map_err(|e| s3_error("presigning", e))?;
        let mut request = self.http.get(url);
        if let Some((start, end)) = range {
            request = request.header(reqwest::header::RANGE, format!("bytes={start}-{}", end.saturating_sub(1)));
        }
        let response = request.send().await.map_err(|e| s3_error("GET", e))?;
        match response.status().as_u16() {
            200 | 206 => {}
            404 => return Err(io::Error::new(io::ErrorKind::NotFound, format!("S3 object {key} is missing"))),
            status => return Err(s3_error("GET", format!("HTTP {status}"))),
        }
        let stream = response.bytes_stream().map_err(io::Error::other);
        Ok(Box::pin(tokio_util::io::StreamReader::new(stream)))
    }
}
