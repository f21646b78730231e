//! What the load did: every operation with its outcome and latency, by kind.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// The kinds of operation the load runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Narinfo,
    NarinfoMiss,
    Nar,
    PushCli,
    PushNixCopy,
    Substitute,
}

impl Operation {
    pub fn label(self) -> &'static str {
        match self {
            Self::Narinfo => "narinfo (stored path)",
            Self::NarinfoMiss => "narinfo (absent path)",
            Self::Nar => "NAR download",
            Self::PushCli => "push, hibernation CLI",
            Self::PushNixCopy => "push, nix copy --to",
            Self::Substitute => "substitute a closure, nix copy --from",
        }
    }
}

/// One attempt's outcome: what went wrong, if anything.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The connection failed (a replica was down): retried elsewhere.
    Connection,
    /// 503 with Retry-After: the protocol's retryable answer.
    Unavailable,
    /// 503 without Retry-After, or any other 5xx: never allowed.
    ServerError(u16),
    /// An answer that contradicts what the soak knows (a stored path's narinfo 404, a wrong
    /// length): never allowed.
    Wrong(String),
    /// A client process (CLI, nix) failed; its last line.
    Client(String),
}

impl Failure {
    /// Allowed during faults, as long as a retry then succeeds.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connection | Self::Unavailable | Self::Client(_))
    }

    fn kind(&self) -> String {
        match self {
            Self::Connection => "connection failed".into(),
            Self::Unavailable => "503 + Retry-After".into(),
            Self::ServerError(status) => format!("{status} (not allowed)"),
            Self::Wrong(_) => "wrong answer (not allowed)".into(),
            Self::Client(_) => "client failed, retried".into(),
        }
    }
}

#[derive(Default)]
struct Tally {
    succeeded: u64,
    /// Operations that failed on every attempt until the deadline.
    gave_up: u64,
    latencies: Vec<Duration>,
    failures: BTreeMap<String, u64>,
    examples: Vec<String>,
}

#[derive(Default)]
pub struct Record {
    tallies: Mutex<BTreeMap<Operation, Tally>>,
}

impl Record {
    pub fn success(&self, operation: Operation, latency: Duration) {
        let mut tallies = self.tallies.lock().unwrap();
        let tally = tallies.entry(operation).or_default();
        tally.succeeded += 1;
        tally.latencies.push(latency);
    }

    pub fn failure(&self, operation: Operation, failure: &Failure) {
        let mut tallies = self.tallies.lock().unwrap();
        let tally = tallies.entry(operation).or_default();
        *tally.failures.entry(failure.kind()).or_default() += 1;
        // The first of each kind (a client's own message is its kind), and every one that is
        // never allowed.
        let example = format!("{failure:?}");
        let kind_seen = tally.examples.iter().any(|e| e.split('(').next() == example.split('(').next());
        if !failure.is_retryable() || !kind_seen || (matches!(failure, Failure::Client(_)) && tally.examples.len() < 6)
        {
            tally.examples.push(example);
        }
    }

    pub fn gave_up(&self, operation: Operation, last: &Failure) {
        let mut tallies = self.tallies.lock().unwrap();
        let tally = tallies.entry(operation).or_default();
        tally.gave_up += 1;
        tally.examples.push(format!("gave up after retries: {last:?}"));
    }

    /// Operations that never succeeded, and answers that are never allowed.
    pub fn violations(&self) -> Vec<String> {
        let tallies = self.tallies.lock().unwrap();
        let mut found = Vec::new();
        for (operation, tally) in tallies.iter() {
            if tally.gave_up > 0 {
                found.push(format!("{}: {} operations never succeeded", operation.label(), tally.gave_up));
            }
            for (kind, count) in &tally.failures {
                if kind.contains("not allowed") {
                    found.push(format!("{}: {count} x {kind}", operation.label()));
                }
            }
            if !found.is_empty() && !tally.examples.is_empty() {
                found.push(format!("  examples: {:?}", &tally.examples[..tally.examples.len().min(5)]));
            }
        }
        found
    }

    /// A few of the failed attempts of each operation, as their clients saw them.
    pub fn examples(&self) -> Vec<(&'static str, Vec<String>)> {
        let tallies = self.tallies.lock().unwrap();
        tallies
            .iter()
            .filter(|(_, t)| !t.examples.is_empty())
            .map(|(operation, t)| (operation.label(), t.examples.iter().take(4).cloned().collect()))
            .collect()
    }

    /// Markdown rows: operation, succeeded, failed attempts by kind, p50, p99.
    pub fn rows(&self) -> Vec<[String; 5]> {
        let mut tallies = self.tallies.lock().unwrap();
        tallies
            .iter_mut()
            .map(|(operation, tally)| {
                tally.latencies.sort();
                let failures = if tally.failures.is_empty() {
                    "none".to_string()
                } else {
                    tally.failures.iter().map(|(kind, n)| format!("{n} x {kind}")).collect::<Vec<_>>().join(", ")
                };
                [
                    operation.label().to_string(),
                    tally.succeeded.to_string(),
                    failures,
                    millis(percentile(&tally.latencies, 50)),
                    millis(percentile(&tally.latencies, 99)),
                ]
            })
            .collect()
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    (!sorted.is_empty()).then(|| sorted[(sorted.len() * p / 100).min(sorted.len() - 1)])
}

fn millis(latency: Option<Duration>) -> String {
    latency.map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
}
