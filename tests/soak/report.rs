//! The soak's findings as the Markdown `RELIABILITY.md` records.

use std::fmt::Write;
use std::time::Duration;

use crate::faults::{Fault, Watch};
use crate::record::Record;

pub struct Report<'a> {
    pub duration: Duration,
    /// How long the operations under way at the end took to finish.
    pub drained: Duration,
    pub pushers: usize,
    pub readers: usize,
    pub record: &'a Record,
    pub faults: &'a [Fault],
    pub watch: &'a Watch,
    pub fsck: &'a str,
    pub stored_roots: usize,
    pub closure_paths: usize,
    pub substituted: bool,
    pub rss_bound_mib: u64,
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Load: {} pushers and {} readers for {:.0} s over two replicas (then {:.0} s to finish the \
         operations under way, retries included). Latencies are of the successful attempt.\n",
        report.pushers,
        report.readers,
        report.duration.as_secs_f64(),
        report.drained.as_secs_f64()
    );
    let _ = writeln!(out, "| operation | succeeded | failed attempts (all retried) | p50 | p99 |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for [operation, succeeded, failures, p50, p99] in report.record.rows() {
        let _ = writeln!(out, "| {operation} | {succeeded} | {failures} | {p50} | {p99} |");
    }
    let _ = writeln!(out, "\nSome failed attempts, as their clients saw them:\n");
    for (operation, examples) in report.record.examples() {
        for example in examples {
            let shown: String = example.chars().take(300).collect();
            let _ = writeln!(out, "- {operation}: `{}`", shown.replace('`', "'"));
        }
    }
    let _ = writeln!(out, "\n| fault | what happened |");
    let _ = writeln!(out, "|---|---|");
    for fault in report.faults {
        let _ = writeln!(out, "| {} | {} |", fault.name, fault.outcome);
    }
    let answers = if report.watch.server_errors.is_empty() {
        "none".to_string()
    } else {
        report.watch.server_errors.iter().map(|(s, n)| format!("{n} x {s}")).collect::<Vec<_>>().join(", ")
    };
    let fsck = report.fsck.lines().last().unwrap_or("(no output)");
    let [first, second] = report.watch.peak_rss_kib.map(|k| k / 1024);
    let _ = writeln!(out, "\n| after the run | |");
    let _ = writeln!(out, "|---|---|");
    let _ = writeln!(out, "| 5xx answers by the servers (metrics) | {answers} |");
    let _ = writeln!(out, "| fsck | {fsck} |");
    let _ = writeln!(
        out,
        "| paths told stored, substituted with stock Nix and verified | {} roots, {} paths with their closures: {} |",
        report.stored_roots,
        report.closure_paths,
        if report.substituted { "all" } else { "FAILED" }
    );
    let _ = writeln!(out, "| peak RSS per replica (bound {} MiB) | {first} MiB, {second} MiB |", report.rss_bound_mib);
    out
}
