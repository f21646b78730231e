//! `hibernation watch-store <cache>`: push every path that becomes valid in the Nix store.
//!
//! Nix creates `<path>.lock` while it builds or substitutes a path and deletes it once the
//! path is registered, so the watcher takes both a new store entry and a deleted lock as a
//! hint, then asks Nix which hinted paths are valid (a path still being built is asked again
//! later). Valid paths are pushed in batches with their closure; paths the cache already has
//! cost one plan request. When the server cannot be reached, the batch is kept and retried
//! with backoff. SIGINT or SIGTERM stops the watcher after the uploads in flight finish.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::http::{ApiClient, ClientError};
use super::push::{PushOptions, PushSummary, format_summary, push};
use super::store::{fs_path, query_paths};
use crate::nix::{STORE_DIR, StorePath};

/// New paths are gathered this long after the last one appeared, to push them in one batch.
const SETTLE: Duration = Duration::from_millis(500);
/// ...but a store that never goes quiet is looked at this often anyway.
const MAX_SETTLE: Duration = Duration::from_secs(5);
/// How often unfinished (not yet valid) paths are looked at again.
const RECHECK: Duration = Duration::from_secs(2);
/// A path that is still not valid after this long is given up (its build is stuck or gone).
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A path whose upload keeps failing with server errors is given up after this many tries.
const MAX_TRIES: u32 = 10;

/// The store path a watcher event hints at: a new entry, or the path whose lock was deleted.
/// Derivations, locks and build scratch directories are not pushed.
pub fn hinted_path(file_name: &str, kind: &EventKind) -> Option<StorePath> {
    let name = match kind {
        EventKind::Remove(_) => file_name.strip_suffix(".lock")?,
        EventKind::Create(_) | EventKind::Modify(notify::event::ModifyKind::Name(_)) => file_name,
        _ => return None,
    };
    if [".lock", ".drv", ".chroot", ".check", ".tmp"].iter().any(|suffix| name.ends_with(suffix)) {
        return None;
    }
    StorePath::from_base_name(name).ok()
}

/// The paths of `candidates` that Nix reports valid (registered in its database).
fn valid_paths(candidates: &[StorePath]) -> anyhow::Result<Vec<StorePath>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let output = Command::new("nix-store")
        .args(["--check-validity", "--print-invalid"])
        .args(candidates.iter().map(StorePath::full_path))
        .output()
        .context("cannot run `nix-store`: is Nix installed and on PATH?")?;
    if !output.status.success() {
        anyhow::bail!("nix-store --check-validity failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let invalid: HashSet<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect();
    Ok(candidates.iter().filter(|p| !invalid.contains(&p.full_path())).cloned().collect())
}

/// Paths seen but not yet valid, and valid paths waiting to be pushed.
#[derive(Default)]
struct Queue {
    /// Hinted, validity unknown: when first seen.
    hinted: BTreeMap<StorePath, Instant>,
    last_hint: Option<Instant>,
    last_check: Option<Instant>,
    /// When the first path since the last check was hinted.
    fresh_since: Option<Instant>,
    ready: BTreeSet<StorePath>,
}

impl Queue {
    fn hint(&mut self, path: StorePath) {
        self.hinted.entry(path).or_insert_with(Instant::now);
        self.last_hint = Some(Instant::now());
        self.fresh_since.get_or_insert_with(Instant::now);
    }

    /// Whether the hinted paths should be checked now: new ones have settled, or unfinished
    /// ones are due for another look.
    fn due(&self) -> bool {
        let settled = self.last_hint.is_some_and(|t| t.elapsed() >= SETTLE)
            || self.fresh_since.is_some_and(|t| t.elapsed() >= MAX_SETTLE);
        let recheck = self.last_check.is_none_or(|t| t.elapsed() >= RECHECK);
        !self.hinted.is_empty() && settled && (self.fresh_since.is_some() || recheck)
    }

    /// Moves valid hinted paths to `ready`; forgets paths that vanished or never finished.
    fn check(&mut self) -> anyhow::Result<()> {
        self.last_check = Some(Instant::now());
        self.fresh_since = None;
        let candidates: Vec<StorePath> = self.hinted.keys().cloned().collect();
        for path in valid_paths(&candidates)? {
            self.hinted.remove(&path);
            self.ready.insert(path);
        }
        self.hinted.retain(|path, seen| fs_path(path).exists() && seen.elapsed() < GIVE_UP_AFTER);
        Ok(())
    }
}

pub struct WatchOptions {
    pub push: PushOptions,
}

/// Totals over the whole run.
#[derive(Debug, Default)]
pub struct WatchTotals {
    pub pushed: usize,
    pub failed: usize,
}

impl WatchTotals {
    /// Prints a batch's summary and errors, and counts what it pushed.
    fn add(&mut self, summary: &PushSummary) {
        eprintln!("{}", format_summary(summary));
        for error in &summary.errors {
            eprintln!("error: {error}");
        }
        self.pushed += summary.pushed + summary.attached;
    }
}

type Batch = (Vec<StorePath>, anyhow::Result<PushSummary>);

fn start_batch(client: &ApiClient, options: &WatchOptions, batch: Vec<StorePath>) -> JoinHandle<Batch> {
    let client = client.clone();
    let push_options = options.push.clone();
    tokio::spawn(async move {
        let roots = batch.clone();
        let result = async {
            let local = tokio::task::spawn_blocking(move || query_paths(&roots, true)).await??;
            Ok(push(&client, &push_options, local).await?)
        }
        .await;
        (batch, result)
    })
}

/// Watches the store until SIGINT or SIGTERM.
pub async fn watch_store(client: &ApiClient, options: WatchOptions) -> anyhow::Result<WatchTotals> {
    let (tx, mut hints) = mpsc::unbounded_channel::<StorePath>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        for path in &event.paths {
            if let Some(hinted) = path.file_name().and_then(|n| n.to_str()).and_then(|n| hinted_path(n, &event.kind)) {
                let _ = tx.send(hinted);
            }
        }
    })
    .context("cannot watch the Nix store")?;
    watcher
        .watch(Path::new(STORE_DIR), RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {STORE_DIR}: is Nix installed, and may this user read it?"))?;
    eprintln!("watching {STORE_DIR}: new paths are pushed to cache {:?} (Ctrl-C or SIGTERM stops)", options.push.cache);

    use tokio::signal::unix::{SignalKind, signal};
    // Listening from the start, so a signal that arrives while the loop is busy is not lost.
    let (mut sigint, mut sigterm) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let mut queue = Queue::default();
    let mut tries: HashMap<StorePath, u32> = HashMap::new();
    let mut totals = WatchTotals::default();
    let mut running: Option<JoinHandle<Batch>> = None;
    let mut backoff: Option<(Instant, Duration)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut stopping = false;
    loop {
        tokio::select! {
            Some(path) = hints.recv(), if !stopping => queue.hint(path),
            _ = sigint.recv(), if !stopping => stopping = true,
            _ = sigterm.recv(), if !stopping => stopping = true,
            finished = async { running.as_mut().expect("guarded").await }, if running.is_some() => {
                running = None;
                let (batch, result) = finished.context("push task failed")?;
                match result {
                    Ok(summary) => {
                        totals.add(&summary);
                        totals.failed += summary.failed - summary.retryable.len();
                        backoff = if summary.retryable.is_empty() { None } else { Some(next_backoff(backoff)) };
                        for path in summary.retryable {
                            let count = tries.entry(path.clone()).or_default();
                            *count += 1;
                            if *count >= MAX_TRIES {
                                eprintln!("error: giving up on {path} after {MAX_TRIES} failed uploads");
                                totals.failed += 1;
                            } else {
                                queue.ready.insert(path);
                            }
                        }
                    }
                    Err(e) => match e.downcast_ref::<ClientError>() {
                        // A wrong token, URL or cache does not fix itself: stop and say so.
                        Some(client_error) if !client_error.is_transient() => return Err(e),
                        _ => {
                            let next = next_backoff(backoff);
                            eprintln!("error: {e:#}; trying again in {}s", next.1.as_secs());
                            backoff = Some(next);
                            // Checked again first: a path collected meanwhile is dropped.
                            batch.into_iter().for_each(|path| queue.hint(path));
                        }
                    },
                }
            }
            _ = tick.tick() => {}
        }
        if stopping {
            if let Some(handle) = running.take() {
                eprintln!("stopping: finishing the uploads in flight (signal again to abort them)...");
                let finished = tokio::select! {
                    finished = handle => finished.context("push task failed")?,
                    _ = sigint.recv() => anyhow::bail!("stopped; the uploads in flight were aborted"),
                    _ = sigterm.recv() => anyhow::bail!("stopped; the uploads in flight were aborted"),
                };
                match finished.1 {
                    Ok(summary) => {
                        totals.add(&summary);
                        totals.failed += summary.failed;
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        totals.failed += finished.0.len();
                    }
                }
            }
            let waiting = queue.ready.len() + queue.hinted.len();
            if waiting > 0 {
                eprintln!("stopped; {waiting} paths seen were not pushed (run `hibernation push` for them)");
            } else {
                eprintln!("stopped");
            }
            return Ok(totals);
        }
        if queue.due()
            && let Err(e) = queue.check()
        {
            eprintln!("error: {e:#}");
        }
        let backing_off = backoff.is_some_and(|(since, wait)| since.elapsed() < wait);
        if running.is_none() && !queue.ready.is_empty() && !backing_off {
            let batch: Vec<StorePath> = std::mem::take(&mut queue.ready).into_iter().collect();
            eprintln!("pushing {} with their closure", describe_batch(&batch));
            running = Some(start_batch(client, &options, batch));
        }
    }
}

/// `3 new paths: a, b, c` (at most five names).
fn describe_batch(batch: &[StorePath]) -> String {
    let names: Vec<String> = batch.iter().take(5).map(StorePath::full_path).collect();
    let more = if batch.len() > 5 { format!(" and {} more", batch.len() - 5) } else { String::new() };
    format!("{} new paths: {}{more}", batch.len(), names.join(", "))
}

/// Doubles the wait after each failure, from one second up to a minute.
fn next_backoff(previous: Option<(Instant, Duration)>) -> (Instant, Duration) {
    let wait = previous.map(|(_, wait)| (wait * 2).min(MAX_BACKOFF)).unwrap_or(Duration::from_secs(1));
    (Instant::now(), wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RemoveKind};

    #[test]
    fn hints_come_from_new_entries_and_deleted_locks() {
        let create = EventKind::Create(CreateKind::Any);
        let remove = EventKind::Remove(RemoveKind::Any);
        let base = "bvcjnxfssvl8imbbv3mybix8mv7xh009-hello-1.0";
        assert_eq!(hinted_path(base, &create).unwrap().base_name(), base);
        assert_eq!(hinted_path(&format!("{base}.lock"), &remove).unwrap().base_name(), base);
        assert!(hinted_path(&format!("{base}.lock"), &create).is_none());
        assert!(hinted_path(base, &remove).is_none(), "a deleted path is not pushed");
        assert!(hinted_path("jvdvm85wmp33x12alhlsknz3kpcdva1n-hello-1.0.drv", &create).is_none());
        assert!(hinted_path("jvdvm85wmp33x12alhlsknz3kpcdva1n-hello-1.0.drv.lock", &remove).is_none());
        assert!(hinted_path(".links", &create).is_none());
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let mut wait = next_backoff(None);
        assert_eq!(wait.1, Duration::from_secs(1));
        for _ in 0..10 {
            wait = next_backoff(Some(wait));
        }
        assert_eq!(wait.1, MAX_BACKOFF);
    }
}
