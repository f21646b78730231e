//! Pushing paths: plan in one batch, then upload what is missing, references first, several
//! at a time, retrying transient failures.

use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::http::{ApiClient, ClientError};
use super::nar_stream::compressed_nar_body;
use super::store::{LocalPath, fs_path};
use crate::api::{PathUpload, PlanAction, PlannedPath, PushPlanRequest};
use crate::human::human_bytes;
use crate::nix::{SecretKey, StorePath, signing};

const MAX_ATTEMPTS: u32 = 4;
const PLAN_BATCH: usize = 1000;

#[derive(Clone)]
pub struct PushOptions {
    pub cache: String,
    pub jobs: usize,
    pub key: SecretKey,
    /// Push paths an upstream cache already serves (the cache must allow it).
    pub force: bool,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PushSummary {
    pub pushed: usize,
    pub attached: usize,
    pub already_present: usize,
    /// Skipped because an upstream cache of the cache serves them.
    pub upstream: usize,
    pub failed: usize,
    pub uploaded_bytes: u64,
    pub elapsed_seconds: f64,
    #[serde(skip)]
    pub errors: Vec<String>,
    /// Failed paths worth another try later (the server was unreachable or busy).
    #[serde(skip)]
    pub retryable: Vec<StorePath>,
}

/// The narinfo metadata of a local path, signed with the user's key.
pub fn signed_upload(local: &LocalPath, key: &SecretKey) -> PathUpload {
    let fingerprint = signing::fingerprint(&local.path, &local.nar_hash, local.nar_size, &local.references);
    let own = key.sign(&fingerprint);
    let mut signatures: Vec<String> =
        local.signatures.iter().filter(|s| !s.starts_with(&format!("{}:", key.name()))).cloned().collect();
    signatures.insert(0, own);
    PathUpload {
        store_path: local.path.full_path(),
        nar_hash: local.nar_hash,
        nar_size: local.nar_size,
        references: local.references.iter().map(|r| r.base_name().to_string()).collect(),
        deriver: local.deriver.clone(),
        ca: local.ca.clone(),
        signatures,
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar
}

/// Prints a line above the progress bar on a terminal, or as plain output otherwise.
fn report(bar: &ProgressBar, line: String) {
    if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
}

pub async fn push(
    client: &ApiClient,
    options: &PushOptions,
    paths: BTreeMap<StorePath, LocalPath>,
) -> Result<PushSummary, ClientError> {
    let started = Instant::now();
    let mut summary = PushSummary::default();
    let ordered: Vec<&LocalPath> = paths.values().collect();
    let mut actions = Vec::with_capacity(ordered.len());
    for chunk in ordered.chunks(PLAN_BATCH) {
        let request = PushPlanRequest {
            paths: chunk
                .iter()
                .map(|p| PlannedPath { store_path: p.path.full_path(), nar_hash: p.nar_hash, nar_size: p.nar_size })
                .collect(),
            force: options.force,
        };
        let plan = retrying(|| client.push_plan(&options.cache, &request)).await?;
        if plan.actions.len() != chunk.len() {
            return Err(ClientError::Local("the server answered the push plan for a different number of paths".into()));
        }
        actions.extend(plan.actions);
    }
    let mut todo: BTreeMap<StorePath, PlanAction> = BTreeMap::new();
    for (local, action) in ordered.iter().zip(actions) {
        match action {
            PlanAction::Present => summary.already_present += 1,
            PlanAction::Upstream => summary.upstream += 1,
            other => {
                todo.insert(local.path.clone(), other);
            }
        }
    }
    let bar = progress_bar(todo.len() as u64);
    let client = Arc::new(client.clone());
    let mut running: JoinSet<(StorePath, PlanAction, Result<u64, ClientError>)> = JoinSet::new();
    let mut failed: HashSet<StorePath> = HashSet::new();
    let mut in_flight: HashSet<StorePath> = HashSet::new();
    loop {
        // Start every path whose references (other than itself) are all done, up to --jobs.
        let ready: Vec<StorePath> = todo
            .keys()
            .filter(|p| !in_flight.contains(*p))
            .filter(|p| paths[*p].references.iter().all(|r| r == *p || !(todo.contains_key(r) || failed.contains(r))))
            .take(options.jobs.saturating_sub(running.len()))
            .cloned()
            .collect();
        for path in ready {
            let upload = signed_upload(&paths[&path], &options.key);
            let (client, cache, action) = (client.clone(), options.cache.clone(), todo[&path]);
            in_flight.insert(path.clone());
            bar.set_message(path.name().to_string());
            running.spawn(async move {
                let result = upload_with_retries(&client, &cache, &upload, action).await;
                (path, action, result)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (path, action, result) = joined.map_err(|e| ClientError::Local(format!("upload task failed: {e}")))?;
        in_flight.remove(&path);
        todo.remove(&path);
        bar.inc(1);
        match result {
            Ok(bytes) => {
                summary.uploaded_bytes += bytes;
                if action == PlanAction::Attach && bytes == 0 {
                    summary.attached += 1;
                } else {
                    summary.pushed += 1;
                }
                report(&bar, format!("pushed {path}"));
            }
            Err(e) => {
                summary.failed += 1;
                summary.errors.push(format!("{path}: {e}"));
                report(&bar, format!("failed {path}: {e}"));
                if e.is_transient() {
                    summary.retryable.push(path.clone());
                }
                failed.insert(path);
            }
        }
        // Paths that need a failed one can never be accepted: drop them now, and the paths
        // that need those, until none is left.
        loop {
            let blocked: Vec<StorePath> = todo
                .keys()
                .filter(|p| !in_flight.contains(*p) && paths[*p].references.iter().any(|r| failed.contains(r)))
                .cloned()
                .collect();
            if blocked.is_empty() {
                break;
            }
            for path in blocked {
                if paths[&path].references.iter().any(|r| summary.retryable.contains(r)) {
                    summary.retryable.push(path.clone());
                }
                todo.remove(&path);
                bar.inc(1);
                summary.failed += 1;
                summary.errors.push(format!("{path}: not pushed because a path it references failed"));
                failed.insert(path);
            }
        }
    }
    bar.finish_and_clear();
    summary.elapsed_seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Runs `op` until it succeeds or fails for good, retrying transient failures (connection
/// errors, 429, 5xx) with exponential backoff.
pub async fn retrying<T, F, Fut>(mut op: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op().await {
            Err(e) if e.is_transient() && attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1))).await;
            }
            result => return result,
        }
    }
}

/// Uploads one path. An attach the server refuses (the NAR is gone or not readable by the
/// caller) falls back to a real upload.
async fn upload_with_retries(
    client: &ApiClient,
    cache: &str,
    upload: &PathUpload,
    action: PlanAction,
) -> Result<u64, ClientError> {
    let store_path = StorePath::parse(&upload.store_path).map_err(|e| ClientError::Local(e.to_string()))?;
    let send = |action: PlanAction| {
        let store_path = store_path.clone();
        retrying(move || {
            let body =
                (action == PlanAction::Upload).then(|| compressed_nar_body(fs_path(&store_path), upload.nar_size));
            async move { client.upload_path(cache, upload, body).await.map(|done| done.uploaded_bytes) }
        })
    };
    match send(action).await {
        Err(e) if action == PlanAction::Attach && e.is_conflict() && e.to_string().contains("must be uploaded") => {
            send(PlanAction::Upload).await
        }
        result => result,
    }
}

pub fn format_summary(summary: &PushSummary) -> String {
    format!(
        "{} pushed ({} uploaded{}), {} skipped ({} already in the cache, {} served by an upstream), {} failed, in {:.1}s",
        summary.pushed + summary.attached,
        human_bytes(summary.uploaded_bytes),
        if summary.attached > 0 { format!(", {} reused", summary.attached) } else { String::new() },
        summary.already_present + summary.upstream,
        summary.already_present,
        summary.upstream,
        summary.failed,
        summary.elapsed_seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_fingerprint_and_keeps_other_signatures() {
        let key = SecretKey::generate("me-1");
        let local = LocalPath {
            path: StorePath::parse("/nix/store/b3f3rwivll1609w9bk8r6r18s0fqlwgd-app-1.0").unwrap(),
            nar_hash: crate::nix::NarHash::digest(b"nar"),
            nar_size: 3,
            references: vec![StorePath::parse("/nix/store/56wl2m2q4pck0n6hclmqrsm3la18x1l9-dep").unwrap()],
            deriver: None,
            ca: None,
            signatures: vec!["other-1:xyz".into(), "me-1:stale".into()],
        };
        let upload = signed_upload(&local, &key);
        assert_eq!(upload.signatures.len(), 2);
        assert_eq!(upload.signatures[1], "other-1:xyz");
        let fp = signing::fingerprint(&local.path, &local.nar_hash, 3, &local.references);
        assert!(key.public_key().verifies(&fp, &upload.signatures[0]));
        assert_eq!(upload.references, vec!["56wl2m2q4pck0n6hclmqrsm3la18x1l9-dep"]);
    }
}
