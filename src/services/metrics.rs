//! Prometheus metrics: every name, help text and recording call in one place. Without
//! METRICS_ENABLED no recorder is installed and the recording calls cost next to nothing.
//!
//! Requests are labelled by route template (`/api/nix/:cache/:file`), never by raw path, so
//! the number of series stays bounded. Cache metrics carry the cache name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;

const HTTP_REQUESTS: &str = "hibernation_http_requests_total";
const HTTP_DURATION: &str = "hibernation_http_request_duration_seconds";
const HTTP_IN_FLIGHT: &str = "hibernation_http_requests_in_flight";
const NARINFO_HITS: &str = "hibernation_cache_narinfo_hits_total";
const NARINFO_MISSES: &str = "hibernation_cache_narinfo_misses_total";
const NAR_BYTES_SERVED: &str = "hibernation_cache_nar_served_bytes_total";
const PUSHES: &str = "hibernation_cache_pushes_total";
const BYTES_RECEIVED: &str = "hibernation_cache_received_bytes_total";
const REJECTED: &str = "hibernation_cache_rejected_uploads_total";
const STORED_BYTES: &str = "hibernation_cache_stored_bytes";
const PATHS: &str = "hibernation_cache_paths";
const SHARED_BYTES: &str = "hibernation_cache_shared_bytes";
const DEDUP_SAVED: &str = "hibernation_dedup_saved_bytes";
const RECLAIMED_PATHS: &str = "hibernation_cache_reclaimed_paths_total";
const RECLAIMED_BYTES: &str = "hibernation_cache_reclaimed_bytes_total";
const GC_RUNS: &str = "hibernation_gc_runs_total";
const GC_DELETED_OBJECTS: &str = "hibernation_gc_deleted_objects_total";
const GC_DELETED_BYTES: &str = "hibernation_gc_deleted_bytes_total";
const FSCK_FINDINGS: &str = "hibernation_fsck_findings";
const FSCK_LAST_RUN: &str = "hibernation_fsck_last_run_timestamp_seconds";
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the global recorder; `service_name` labels every series.
pub fn install(service_name: &str) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .add_global_label("service_name", service_name)
        .set_buckets_for_metric(
            Matcher::Full(HTTP_DURATION.into()),
            &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
        )?
        // Gauges of a deleted or renamed cache disappear instead of lingering.
        .idle_timeout(MetricKindMask::GAUGE, Some(Duration::from_secs(600)))
        .install_recorder()?;
    // Histogram samples wait in memory until upkeep folds them in: without a scrape for a
    // while that is unbounded (8 bytes a request), so upkeep runs on its own too.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by method, route template and status.");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "Time to the response head, by method and route template.");
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now.");
    describe_counter!(NARINFO_HITS, "narinfo requests answered with a path, per cache.");
    describe_counter!(NARINFO_MISSES, "narinfo requests for paths the cache does not have, per cache.");
    describe_counter!(
        NAR_BYTES_SERVED,
        Unit::Bytes,
        "NAR bytes sent to clients (counted as downloads start), per cache."
    );
    describe_counter!(PUSHES, "Paths added by pushes (CLI or nix copy), per cache.");
    describe_counter!(BYTES_RECEIVED, Unit::Bytes, "Compressed NAR bytes received and stored, per cache.");
    describe_counter!(REJECTED, "Uploads refused, per cache and reason.");
    describe_counter!(RECLAIMED_PATHS, "Paths removed per cache by eviction (quota) or retention, by kind.");
    describe_counter!(RECLAIMED_BYTES, Unit::Bytes, "Bytes of NAR files of the paths removed per cache, by kind.");
    describe_counter!(GC_RUNS, "Garbage collection runs finished by this process.");
    describe_counter!(GC_DELETED_OBJECTS, "Stored objects deleted by garbage collection, by what they were.");
    describe_counter!(GC_DELETED_BYTES, Unit::Bytes, "Bytes of NAR files deleted by garbage collection.");
    describe_gauge!(
        FSCK_FINDINGS,
        "What the last full `admin fsck` found: missing, corrupt and orphan objects and missing references."
    );
    describe_gauge!(FSCK_LAST_RUN, Unit::Seconds, "When the last full `admin fsck` ran (Unix time).");
    describe_gauge!(STORED_BYTES, Unit::Bytes, "Bytes of the NAR files a cache's paths use.");
    describe_gauge!(PATHS, "Store paths in a cache.");
    describe_gauge!(SHARED_BYTES, Unit::Bytes, "Bytes of a cache's NAR files that other caches use too (stored once).");
    describe_gauge!(DEDUP_SAVED, Unit::Bytes, "Bytes saved by storing each NAR once across all caches.");
    Ok(handle)
}

/// Methods become labels as they are only when standard: a caller may send any name.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

// Looking a labelled series up in the recorder's registry costs more than the rest of a
// narinfo answer, so each thread keeps the handles it used (counters and histograms never
// expire; their label sets are bounded: route templates, statuses, existing caches).
/// (method, route template, status) to the request counter and duration histogram.
type RequestSeries = HashMap<(&'static str, String, u16), (Counter, Histogram)>;

thread_local! {
    static REQUEST_SERIES: RefCell<RequestSeries> = RefCell::new(HashMap::new());
    static CACHE_COUNTERS: RefCell<HashMap<(&'static str, String), Counter>> = RefCell::new(HashMap::new());
}

pub fn http_request(method: &str, route: String, status: u16, elapsed: Duration) {
    let method = method_label(method);
    REQUEST_SERIES.with_borrow_mut(|series| {
        let (requests, duration) = series.entry((method, route, status)).or_insert_with_key(|(method, route, _)| {
            let (method, route) = (*method, route.clone());
            let requests =
                counter!(HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status.to_string());
            (requests, histogram!(HTTP_DURATION, "method" => method, "route" => route))
        });
        requests.increment(1);
        duration.record(elapsed.as_secs_f64());
    });
}

/// Adds to a per-cache counter through this thread's handle for it.
fn count_for_cache(name: &'static str, cache: &str, by: u64) {
    CACHE_COUNTERS.with_borrow_mut(|counters| {
        let counter =
            counters.entry((name, cache.to_string())).or_insert_with(|| counter!(name, "cache" => cache.to_string()));
        counter.increment(by);
    });
}

static IN_FLIGHT: AtomicI64 = AtomicI64::new(0);

/// Counts a request as in flight until dropped (also when the client goes away early). The
/// gauge is set from the count when metrics are scraped.
pub struct InFlight(());

impl InFlight {
    pub fn start() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

pub fn narinfo(cache: &str, hit: bool) {
    count_for_cache(if hit { NARINFO_HITS } else { NARINFO_MISSES }, cache, 1);
}

pub fn nar_served(cache: &str, bytes: u64) {
    count_for_cache(NAR_BYTES_SERVED, cache, bytes);
}

/// A path became visible; `bytes` of NAR were received for it (0 when an existing NAR was reused).
pub fn pushed(cache: &str, bytes: u64) {
    counter!(PUSHES, "cache" => cache.to_string()).increment(1);
    received(cache, bytes);
}

/// NAR bytes received and stored (a `nix copy` NAR arrives before its narinfo).
pub fn received(cache: &str, bytes: u64) {
    counter!(BYTES_RECEIVED, "cache" => cache.to_string()).increment(bytes);
}

/// Eviction or retention removed paths from a cache.
pub fn reclaimed(cache: &str, kind: &'static str, paths: u64, bytes: u64) {
    counter!(RECLAIMED_PATHS, "cache" => cache.to_string(), "kind" => kind).increment(paths);
    counter!(RECLAIMED_BYTES, "cache" => cache.to_string(), "kind" => kind).increment(bytes);
}

/// A garbage collection run finished; `objects` counts deletions by what they were.
pub fn collected(objects: &[(&'static str, u64)], nar_bytes: u64) {
    counter!(GC_RUNS).increment(1);
    for (what, count) in objects {
        counter!(GC_DELETED_OBJECTS, "what" => *what).increment(*count);
    }
    counter!(GC_DELETED_BYTES).increment(nar_bytes);
}

/// The last full fsck's findings and when it ran.
fn set_fsck(findings: i64, at_unix: i64) {
    gauge!(FSCK_FINDINGS).set(findings as f64);
    gauge!(FSCK_LAST_RUN).set(at_unix as f64);
}

/// An upload refused; `cache` is the name of an existing cache, or empty (callers choose
/// names freely, and a name that is no cache must not become a series).
pub fn rejected(cache: &str, reason: &'static str) {
    counter!(REJECTED, "cache" => cache.to_string(), "reason" => reason).increment(1);
}

/// Counts a refused upload under its cache, when `cache` names one that exists.
pub async fn count_rejection(db: &crate::db::Db, cache: &str, reason: &'static str) {
    let name = cache.to_string();
    let exists = reason != "cache_not_found"
        && db.read(move |c| crate::db::caches::find_by_name(c, &name)).await.is_ok_and(|found| found.is_some());
    rejected(if exists { cache } else { "" }, reason);
}

/// Sets the gauges the database holds the truth of, at scrape time: what every cache holds,
/// and the last fsck (it ran in an admin process).
pub async fn read_stored_gauges(db: &crate::db::Db) -> crate::db::DbResult<()> {
    use crate::db::browse;
    let (sizes, dedup_saved) = db
        .read(|c| {
            let mut sizes = Vec::new();
            for cache in browse::caches_by_ids(c, None)? {
                let (paths, stored_bytes) = browse::cache_sizes(c, cache.id)?;
                let shared_bytes = browse::shared_bytes(c, cache.id)?;
                sizes.push(CacheSize { name: cache.name, paths, stored_bytes, shared_bytes });
            }
            let totals = browse::totals(c, None)?;
            Ok((sizes, totals.logical_bytes - totals.stored_bytes))
        })
        .await?;
    set_sizes(&sizes, dedup_saved);
    let last_fsck = db.read(|c| crate::db::lifecycle::latest_reclaims(c, None)).await?;
    if let Some(fsck) = last_fsck.iter().find(|r| r.kind == "fsck") {
        set_fsck(fsck.objects, fsck.at.and_utc().timestamp());
    }
    Ok(())
}

/// What one cache holds, read from the database at scrape time.
struct CacheSize {
    name: String,
    paths: i64,
    stored_bytes: i64,
    shared_bytes: i64,
}

fn set_sizes(caches: &[CacheSize], dedup_saved_bytes: i64) {
    for cache in caches {
        gauge!(PATHS, "cache" => cache.name.clone()).set(cache.paths as f64);
        gauge!(STORED_BYTES, "cache" => cache.name.clone()).set(cache.stored_bytes as f64);
        gauge!(SHARED_BYTES, "cache" => cache.name.clone()).set(cache.shared_bytes as f64);
    }
    gauge!(DEDUP_SAVED).set(dedup_saved_bytes as f64);
    gauge!(HTTP_IN_FLIGHT).set(IN_FLIGHT.load(Ordering::Relaxed) as f64);
}
