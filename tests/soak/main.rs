//! The soak: two server replicas on one PostgreSQL and one S3 server (`s3s-fs`) under 50
//! pushers (half the CLI, half stock `nix copy --to`, on overlapping closures so the same
//! paths race) and 200 readers (narinfo and NAR fetches, stock Nix substituting closures),
//! with garbage collection and eviction running, while faults are injected: a replica killed
//! with SIGKILL and restarted, PostgreSQL restarted, S3 stopped, S3's filesystem full.
//!
//! Afterwards: fsck finds nothing, every path a pusher was told is stored substitutes with
//! stock Nix and verifies, no answer was a 5xx other than 503 with Retry-After, every
//! operation that was retried succeeded, and memory stayed under its bound.
//!
//! `scripts/soak` runs it in release for 60 s and prints the table `RELIABILITY.md` records;
//! the test suite runs a short one. Knobs: SOAK_SECONDS (20), SOAK_PUSHERS (50),
//! SOAK_READERS (200), SOAK_ROOTS (60), SOAK_PAUSE_MS (pause between one client's operations,
//! 50), SOAK_RSS_BOUND_MIB (256), SOAK_REPORT (a file to write the table to).

#[path = "../support/mod.rs"]
mod support;

mod closures;
mod faults;
mod load;
mod record;
mod report;

use std::time::{Duration, Instant};

use support::{Backend, Keys, NixClient, S3Server, Server, output_text};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[test]
fn soak() {
    let duration = Duration::from_secs(knob("SOAK_SECONDS", 20));
    let (pushers, readers) = (knob("SOAK_PUSHERS", 50) as usize, knob("SOAK_READERS", 200) as usize);
    let rss_bound_mib = knob("SOAK_RSS_BOUND_MIB", 256);

    let keys = Keys::generate("soak-1");
    let roots = closures::build(&support::unique_tag("soak"), knob("SOAK_ROOTS", 60) as usize);
    // Declared first, so it is unmounted after the servers are gone.
    let small_filesystem = faults::SmallFilesystem::mount(256);
    let s3 = match &small_filesystem {
        Ok((_, dir)) => S3Server::start_in(tempfile::TempDir::new_in(dir.path()).unwrap()),
        Err(_) => S3Server::start(),
    };
    let env = [
        ("METRICS_ENABLED", "true"),
        ("GC_INTERVAL", "3s"),
        ("GC_GRACE", "20s"),
        ("EVICTION_MIN_AGE", "5s"),
        ("LOG_LEVEL", "info,poem=warn"),
        // Nix 2.8 retries a failed upload with the body it already sent (empty): the server
        // waits CLIENT_TIMEOUT for bytes that never come. Shorter than the default 60 s, so
        // the retries of this run fit in an operation's deadline.
        ("CLIENT_TIMEOUT", "15s"),
    ];
    let mut first = Server::builder(Backend::PostgresS3).env(&env).storage(Some(s3)).start();
    let token = first.bootstrap(&keys, false);
    first.admin(&["create-cache", "soak", "--no-upstream", "--public-key", &keys.public]);
    // About a third of what the pushers send: eviction runs all the time.
    first.admin(&[
        "create-cache",
        "churn",
        "--no-upstream",
        "--public-key",
        &keys.public,
        "--quota-gib",
        "0.002",
        "--quota-policy",
        "lru",
    ]);
    let mut second = first.sibling();

    let record = record::Record::default();
    let load = load::Load {
        replicas: vec![first.url(), second.url()],
        token: token.clone(),
        secret_key_file: keys.secret_path().to_string(),
        public_key: keys.public.clone(),
        roots: roots.clone(),
        until: Instant::now() + duration,
        pause: Duration::from_millis(knob("SOAK_PAUSE_MS", 50)),
        record: &record,
        stored: load::Stored::default(),
    };
    let mut watch = faults::Watch::new(&token);
    let started = Instant::now();
    let injected = std::thread::scope(|scope| {
        for index in 0..pushers {
            let load = &load;
            scope.spawn(move || load.pusher(index));
        }
        for index in 0..readers {
            let load = &load;
            scope.spawn(move || load.reader(index, 10.min(readers / 10)));
        }
        let small = small_filesystem.as_ref().map(|(fs, _)| fs).map_err(String::as_str);
        faults::supervise(&mut first, &mut second, small, duration, &mut watch)
    });
    let drained = started.elapsed().saturating_sub(duration);
    watch.finish([&first, &second]);

    // fsck over every cache: nothing missing, corrupt or dangling.
    let fsck = first.command(Some(&["admin", "fsck"])).output().unwrap();
    let fsck_text = output_text(&fsck);

    // Every root a pusher was told is stored, with its closure, substitutes and verifies.
    let stored = load.stored.all();
    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    let store = nix.store("after");
    let stored_paths: Vec<&str> = stored.iter().map(|r| roots[*r].path.as_str()).collect();
    let copied = nix.copy_from(&first.cache_url(load::STORED_CACHE), &store, &keys.public, &stored_paths);
    let verified = stored_paths.iter().all(|p| nix.verify(&store, &keys.public, p).status.success());
    let closure_paths: usize = stored.iter().map(|r| roots[*r].closure.len()).sum();

    let table = report::render(&report::Report {
        duration,
        drained,
        pushers,
        readers,
        record: &record,
        faults: &injected,
        watch: &watch,
        fsck: &fsck_text,
        stored_roots: stored.len(),
        closure_paths,
        substituted: copied.status.success() && verified,
        rss_bound_mib,
    });
    println!("{table}");
    if let Ok(file) = std::env::var("SOAK_REPORT") {
        std::fs::write(file, &table).unwrap();
    }

    let mut problems = record.violations();
    if std::env::var_os("SOAK_DIAGNOSE").is_some() {
        diagnose(&first.db_url, &fsck_text);
    }
    if !fsck.status.success() || !fsck_text.contains("0 missing, 0 corrupt, 0 paths with a missing reference") {
        problems.push(format!("fsck: {fsck_text}"));
    }
    if !copied.status.success() || !verified {
        problems.push(format!("stored paths do not all substitute and verify: {}", output_text(&copied)));
    }
    if stored.is_empty() {
        problems.push("no push into the soak cache succeeded".into());
    }
    let unexpected: u64 = watch.server_errors.iter().filter(|(s, _)| **s != 503).map(|(_, n)| n).sum();
    if watch.scrapes < 4 {
        problems.push(format!("the servers' metrics could be read only {} times", watch.scrapes));
    }
    if unexpected > 0 {
        problems.push(format!("answers with a 5xx other than 503: {:?}", watch.server_errors));
    }
    for (replica, kib) in watch.peak_rss_kib.iter().enumerate() {
        if kib / 1024 > rss_bound_mib {
            problems.push(format!("replica {} peaked at {} MiB (bound {rss_bound_mib})", replica + 1, kib / 1024));
        }
    }
    assert!(
        problems.is_empty(),
        "the soak found problems:\n{}\n\nreplica 1 log:\n{}\nreplica 2 log:\n{}{}",
        problems.join("\n"),
        tail(&first.log()),
        watch.earlier_logs.iter().map(|l| tail(l)).collect::<Vec<_>>().join("\n-- restarted --\n"),
        tail(&second.log())
    );
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let shown: Vec<String> =
        lines[lines.len().saturating_sub(20)..].iter().map(|l| l.chars().take(400).collect()).collect();
    shown.join("\n")
}

/// With SOAK_DIAGNOSE set: the rows behind the NARs fsck found missing.
fn diagnose(db_url: &str, fsck: &str) {
    let keys: Vec<&str> =
        fsck.lines().filter_map(|l| l.split(" (").nth(1)).filter_map(|l| l.split(')').next()).collect();
    for key in keys {
        let hash = key.trim_start_matches("nar/").split('.').next().unwrap_or_default();
        let query = format!(
            "SELECT n.id, n.created_at, n.unreferenced_since, n.storage_key, p.cache_id, p.created_at AS path_created \
             FROM nars n LEFT JOIN store_paths p ON p.nar_id = n.id WHERE n.storage_key = '{key}'; \
             SELECT id, cache_id, created_at, storage_key FROM pending_nars WHERE file_hash LIKE '%{hash}%';"
        );
        let out = std::process::Command::new("/usr/lib/postgresql/15/bin/psql")
            .args([db_url, "-c", &query])
            .output()
            .unwrap();
        println!("{key}:\n{}", output_text(&out));
    }
}
