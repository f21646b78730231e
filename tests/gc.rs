//! Garbage collection (`hibernation-server admin gc`) on local disk and S3, SQLite and
//! PostgreSQL: a NAR no path uses is deleted only after GC_GRACE, a NAR a push took back
//! within the grace stays, objects no row owns are swept once older than the grace (younger
//! ones may be uploads in progress), a NAR upload whose narinfo never came goes, `--dry-run`
//! deletes nothing, and a second collector waits its turn (one process collects at a time).

#[macro_use]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Backend, Cli, Closure, Keys, NixClient, Server, output_text, unique_tag};

on_full_matrix!(collects_unused_nars_orphans_and_stale_uploads);

/// Garbage collection on one replica while pushes through another take back the NARs it is
/// collecting (PostgreSQL + S3): each push either completes or fails in a way a retry fixes,
/// and every path visible afterwards substitutes with stock Nix.
#[test]
fn collection_racing_pushes_on_two_replicas_loses_no_nar() {
    let first = Server::builder(Backend::PostgresS3).env(&[("GC_GRACE", "0s"), ("EVICTION_MIN_AGE", "0s")]).start();
    let second = first.sibling();
    let keys = Keys::generate("gc-race-1");
    let token = first.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&second, &token);
    let tag = unique_tag("gc-race");
    let closures: Vec<Closure> = (0..6).map(|i| Closure::build(&format!("{tag}-{i}"))).collect();
    let apps: Vec<&str> = closures.iter().map(|c| c.app.as_str()).collect();
    let push_all = |cli: &Cli| {
        let mut args = vec!["push", "main", "--jobs", "4", "--key", keys.secret_path()];
        args.extend(apps.iter().copied());
        cli.run(&args)
    };
    assert!(push_all(&cli).status.success());
    for round in 0..4 {
        // Everything is evicted: every NAR is unused, and due at once (GC_GRACE 0s).
        first.evict_everything("main");
        let collector = first.command(Some(&["admin", "gc"])).spawn().unwrap();
        let pushed = push_all(&cli);
        let collected = collector.wait_with_output().unwrap();
        assert!(collected.status.success(), "round {round}: {}", output_text(&collected));
        if !pushed.status.success() {
            // A push that lost the race fails retryably: the next one completes.
            let again = push_all(&cli);
            assert!(again.status.success(), "round {round}: {}\nthen: {}", output_text(&pushed), output_text(&again));
        }
        // The replica that took the pushes serves them at once, the other within seconds.
        for server in [&second, &first] {
            support::wait_until(Duration::from_secs(10), "the pushed paths on every replica", || {
                apps.iter().all(|app| {
                    let hash = &app["/nix/store/".len()..][..32];
                    server.get(&format!("/api/nix/main/{hash}.narinfo"), None).status() == 200
                })
            });
            let nix = NixClient::new();
            let out = nix.copy_from(&server.cache_url("main"), &nix.store("into"), &keys.public, &apps);
            assert!(out.status.success(), "round {round}, port {}: {}", server.port, output_text(&out));
        }
    }
    let fsck = first.command(Some(&["admin", "fsck"])).output().unwrap();
    assert!(fsck.status.success(), "{}", output_text(&fsck));
}

const GRACE: Duration = Duration::from_secs(4);

fn push(cli: &Cli, keys: &Keys, cache: &str, closure: &Closure) {
    cli.run_ok(&["push", cache, "--key", keys.secret_path(), &closure.app]);
}

fn nar_files(server: &Server) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(server.object_dir().join("nar"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// The nix32 NarHash of a path as the cache serves it: stored NAR keys start with it.
fn nar_hash(server: &Server, cache: &str, path: &str) -> String {
    let hash = &path["/nix/store/".len()..][..32];
    let info = server.get(&format!("/api/nix/{cache}/{hash}.narinfo"), None).text().unwrap();
    let value = info.lines().find_map(|l| l.strip_prefix("NarHash: sha256:")).expect("a NarHash");
    value.to_string()
}

fn stored(files: &[PathBuf], nar_hash: &str) -> bool {
    files.iter().any(|f| f.file_name().unwrap().to_string_lossy().starts_with(&format!("{nar_hash}.")))
}

/// An object file under `nar/` no row owns, last modified `age` ago.
fn orphan(server: &Server, name: &str, age: &str) -> PathBuf {
    let path = server.object_dir().join("nar").join(name);
    std::fs::write(&path, b"left behind by a crash").unwrap();
    let touched = std::process::Command::new("touch").arg("-d").arg(age).arg(&path).status().unwrap();
    assert!(touched.success());
    path
}

fn substitutes(server: &Server, keys: &Keys, cache: &str, path: &str) {
    let nix = NixClient::new();
    let out = nix.copy_from(&server.cache_url(cache), &nix.store("into"), &keys.public, &[path]);
    assert!(out.status.success(), "substituting {path}: {}", output_text(&out));
}

fn stored_bytes(server: &Server, token: &str, cache: &str) -> i64 {
    let info: serde_json::Value = server.get(&format!("/api/v1/caches/{cache}"), Some(token)).json().unwrap();
    info["stored_bytes"].as_i64().unwrap()
}

fn gib(bytes: i64) -> String {
    format!("{:.12}", bytes as f64 / (1u64 << 30) as f64)
}

fn collects_unused_nars_orphans_and_stale_uploads(backend: Backend) {
    let server = Server::builder(backend).env(&[("GC_GRACE", "4s"), ("EVICTION_MIN_AGE", "0s")]).start();
    let keys = Keys::generate("gc-1");
    let token = server.bootstrap(&keys, true);
    server.admin(&["create-cache", "other", "--public", "--no-upstream", "--public-key", &keys.public]);
    let cli = Cli::new();
    cli.login(&server, &token);
    let tag = unique_tag("gc");
    let [a, b, c] = ["a", "b", "c"].map(|n| Closure::build(&format!("{tag}-{n}")));
    push(&cli, &keys, "main", &a);
    push(&cli, &keys, "main", &b);
    push(&cli, &keys, "other", &c);
    let hashes = |cache: &str, closure: &Closure| [&closure.app, &closure.dep].map(|p| nar_hash(&server, cache, p));
    let (a_nars, b_nars, c_nars) = (hashes("main", &a), hashes("main", &b), hashes("other", &c));

    // A's closure is evicted (one byte over the quota, oldest first): its top-level path and
    // the dependency only it needs go together, and their two NARs wait (which NARs, below).
    let used = stored_bytes(&server, &token, "main");
    server.admin(&["update-cache", "main", "--quota-gib", &gib(used - 1), "--quota-policy", "oldest"]);
    let info: serde_json::Value = server.get("/api/v1/caches/main", Some(&token)).json().unwrap();
    assert_eq!(info["paths"], 2, "A's two paths went, B's two stay: {info}");
    // C's closure goes too, and is pushed again within the grace: its NARs are reused.
    let used = stored_bytes(&server, &token, "other");
    server.admin(&["update-cache", "other", "--quota-gib", &gib(used - 1), "--quota-policy", "oldest"]);
    server.admin(&["update-cache", "other", "--quota-gib", "none"]);
    push(&cli, &keys, "other", &c);

    // Leftovers of a crash, and a `nix copy` upload whose narinfo never came.
    let old_orphan = orphan(&server, "orphan.nar.zst", "2 hours ago");
    let old_listing = orphan(&server, "orphan.nar.zst.ls", "2 hours ago");
    let stale_upload = orphan(&server, "stale-upload.nar.zst", "2 days ago");
    server.sql(
        "INSERT INTO pending_nars (cache_id, user_id, file_hash, compression, file_size, nar_hash, nar_size, \
         storage_key, created_at) VALUES (1, 1, 'x', 'zstd', 22, 'y', 22, 'nar/stale-upload.nar.zst', \
         '2000-01-01 00:00:00')",
    );
    std::thread::sleep(GRACE + Duration::from_millis(500));

    // A dry run reports and deletes nothing.
    let before = nar_files(&server);
    let report = server.admin(&["gc", "--dry-run"]);
    assert!(report.contains("would delete 2 unused NARs"), "A's two: {report}");
    assert!(report.contains("1 uploads whose narinfo never came"), "{report}");
    assert_eq!(nar_files(&server), before, "a dry run deletes nothing");

    // Another process collecting: this one says so and deletes nothing.
    let elsewhere = server.hold_gc_lock();
    let out = server.command(Some(&["admin", "gc"])).output().unwrap();
    assert!(!out.status.success());
    assert!(output_text(&out).contains("another garbage collection is running"), "{}", output_text(&out));
    assert_eq!(nar_files(&server), before);
    drop(elsewhere);

    // An object stored a moment ago may be an upload between storing and recording: kept.
    let young_orphan = orphan(&server, "young.nar.zst", "now");
    let report = server.admin(&["gc"]);
    assert!(report.contains("deleted 2 unused NARs"), "A's two: {report}");
    assert!(report.contains("1 uploads whose narinfo never came"), "{report}");
    let after = nar_files(&server);
    for hash in &a_nars {
        assert!(!stored(&after, hash), "the evicted closure's NARs are deleted after the grace");
    }
    for hash in &b_nars {
        assert!(stored(&after, hash), "a NAR in use stays");
    }
    for hash in &c_nars {
        assert!(stored(&after, hash), "a NAR a push took back within the grace stays");
    }
    for gone in [&old_orphan, &old_listing, &stale_upload] {
        assert!(!Path::new(gone).exists(), "{} should be swept", gone.display());
    }
    assert!(young_orphan.exists(), "a young object is not swept");
    for (cache, path) in [("main", &b.app), ("other", &c.app)] {
        substitutes(&server, &keys, cache, path);
    }

    // Nothing more to collect; pushing the evicted closure again uploads its NARs anew.
    let report = server.admin(&["gc"]);
    assert!(report.contains("deleted 0 unused NARs"), "{report}");
    server.admin(&["update-cache", "main", "--quota-gib", "none"]);
    push(&cli, &keys, "main", &a);
    substitutes(&server, &keys, "main", &a.app);
}
