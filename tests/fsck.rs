//! `hibernation-server admin fsck` on local disk and S3, SQLite and PostgreSQL: it finds a
//! flipped byte, a deleted object, an orphan object and a path whose reference is gone;
//! `--repair` leaves a cache every path of which substitutes with stock Nix. A process killed
//! during eviction or garbage collection (an admin command, or the server itself) leaves
//! nothing fsck calls damage once a server runs again.

#[macro_use]
mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use support::nix::{nix, run_ok};
use support::{Backend, Cli, Closure, Keys, NixClient, Server, output_text, unique_tag};

on_full_matrix!(
    finds_and_repairs_damage,
    killed_eviction_and_gc_leave_no_damage,
    a_server_killed_mid_work_leaves_no_damage
);

fn push(cli: &Cli, keys: &Keys, cache: &str, path: &str) {
    cli.run_ok(&["push", cache, "--jobs", "8", "--key", keys.secret_path(), path]);
}

fn fsck(server: &Server, args: &[&str]) -> (i32, String) {
    let mut full = vec!["admin", "fsck"];
    full.extend_from_slice(args);
    let out: Output = server.command(Some(&full)).output().unwrap();
    (out.status.code().unwrap_or(-1), output_text(&out))
}

fn hash_part(path: &str) -> &str {
    &path["/nix/store/".len()..][..32]
}

/// The stored object of a path's NAR (its key starts with the NarHash).
fn object_of(server: &Server, cache: &str, path: &str) -> PathBuf {
    let info = server.get(&format!("/api/nix/{cache}/{}.narinfo", hash_part(path)), None).text().unwrap();
    let nar_hash = info.lines().find_map(|l| l.strip_prefix("NarHash: sha256:")).unwrap();
    std::fs::read_dir(server.object_dir().join("nar"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(&format!("{nar_hash}.")) && !name.ends_with(".ls")
        })
        .expect("the NAR object")
}

fn present(server: &Server, cache: &str, path: &str) -> bool {
    match server.get(&format!("/api/nix/{cache}/{}.narinfo", hash_part(path)), None).status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("narinfo of {path}: {other}"),
    }
}

fn substitutes(server: &Server, keys: &Keys, cache: &str, paths: &[&str]) {
    let nix = NixClient::new();
    let out = nix.copy_from(&server.cache_url(cache), &nix.store("into"), &keys.public, paths);
    assert!(out.status.success(), "substituting {paths:?}: {}", output_text(&out));
}

fn finds_and_repairs_damage(backend: Backend) {
    let mut server = Server::builder(backend).env(&[("GC_GRACE", "2s")]).start();
    let keys = Keys::generate("fsck-1");
    let token = server.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&server, &token);
    let tag = unique_tag("fsck");
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| Closure::build(&format!("{tag}-{n}")));
    for closure in [&a, &b, &c, &d] {
        push(&cli, &keys, "main", &closure.app);
    }
    let (code, out) = fsck(&server, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked 8 NARs") && out.contains("0 missing, 0 corrupt"), "{out}");
    let (code, out) = fsck(&server, &["--cache", "main"]);
    assert_eq!(code, 0, "{out}");

    // A flipped byte in b's top-level NAR, c's dependency's NAR deleted, an object no row
    // owns, and a's dependency's row gone (as if removed by hand).
    let flipped = object_of(&server, "main", &b.app);
    let mut bytes = std::fs::read(&flipped).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(&flipped, bytes).unwrap();
    std::fs::remove_file(object_of(&server, "main", &c.dep)).unwrap();
    let orphan = server.object_dir().join("nar").join("orphan.nar.zst");
    std::fs::write(&orphan, b"left behind").unwrap();
    assert!(std::process::Command::new("touch").args(["-d", "1 hour ago"]).arg(&orphan).status().unwrap().success());
    server.sql(&format!("DELETE FROM store_paths WHERE hash_part = '{}'", hash_part(&a.dep)));

    let (code, out) = fsck(&server, &[]);
    assert_eq!(code, 2, "damage found, not repaired: {out}");
    assert!(out.contains("1 missing, 1 corrupt, 1 paths with a missing reference, 1 objects no row owns"), "{out}");
    assert!(out.contains(&format!("{} in cache main references {}", a.app, a.dep)), "{out}");
    assert!(out.contains("corrupt: NAR") && out.contains("NarHash"), "{out}");
    assert!(orphan.exists(), "fsck without --repair changes nothing");

    let (code, out) = fsck(&server, &["--repair"]);
    assert_eq!(code, 1, "damage found and repaired: {out}");
    assert!(out.contains("removed 4 paths"), "b's top-level, c's closure, a's top-level: {out}");
    assert!(!orphan.exists(), "an orphan older than GC_GRACE is deleted");
    let (code, out) = fsck(&server, &[]);
    assert_eq!(code, 0, "nothing left to repair: {out}");

    // Every path left substitutes; the broken ones are gone, and pushing them again works.
    server.restart();
    for gone in [&a.app, &b.app, &c.app, &c.dep] {
        assert!(!present(&server, "main", gone), "{gone} should be removed");
    }
    substitutes(&server, &keys, "main", &[&b.dep, &d.app]);
    for closure in [&a, &b, &c] {
        push(&cli, &keys, "main", &closure.app);
    }
    substitutes(&server, &keys, "main", &[&a.app, &b.app, &c.app]);
    let (code, out) = fsck(&server, &[]);
    assert_eq!(code, 0, "{out}");
}

/// Independent closures, each a top-level path referencing `LEAVES` small paths of its own.
const CLOSURES: usize = 5;
const LEAVES: usize = 260;
/// The paths of one closure: more than half of what an eviction removes in one transaction
/// (500 paths), so that each closure goes in a transaction of its own.
const CLOSURE_PATHS: i64 = LEAVES as i64 + 1;

/// `CLOSURES` closures of `CLOSURE_PATHS` small paths; returns their top-level paths. Built
/// once per machine (the tag is fixed).
fn many_closures(tag: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let expr = format!(
        r#"builtins.genList (k: let leaves = builtins.genList (i: derivation {{ name = "leaf-${{toString k}}-${{toString i}}-{tag}"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo ${{toString k}} ${{toString i}} {tag} > $out"]; }}) {LEAVES};
in derivation {{ name = "top-${{toString k}}-{tag}"; system = builtins.currentSystem; builder = "/bin/sh"; inherit leaves; args = ["-c" "echo $leaves > $out"]; }}) {CLOSURES}"#
    );
    let file = dir.path().join("many.nix");
    std::fs::write(&file, expr).unwrap();
    let tops: Vec<String> =
        run_ok(nix(&["nix-build", "--no-out-link", file.to_str().unwrap()])).lines().map(str::to_string).collect();
    assert_eq!(tops.len(), CLOSURES);
    tops
}

/// Pushes every closure at once.
fn push_all(cli: &Cli, keys: &Keys, cache: &str, tops: &[String]) {
    let mut args = vec!["push", cache, "--jobs", "8", "--key", keys.secret_path()];
    args.extend(tops.iter().map(String::as_str));
    cli.run_ok(&args);
}

/// Kills `child` (SIGKILL) as soon as `progressed` holds, which must happen before it ends.
fn kill_when(mut child: std::process::Child, what: &str, progressed: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !progressed() {
        assert!(child.try_wait().unwrap().is_none(), "{what} ended before any progress was seen");
        assert!(std::time::Instant::now() < deadline, "{what} made no progress");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(child.try_wait().unwrap().is_none(), "{what} ended before it could be killed part way");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A path of `bytes` random (incompressible) bytes.
fn random_path(tag: &str, bytes: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let expr = format!(
        r#"derivation {{ name = "random-{tag}"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "/usr/bin/head -c {bytes} /dev/urandom > $out"]; }}"#
    );
    let file = dir.path().join("random.nix");
    std::fs::write(&file, expr).unwrap();
    run_ok(nix(&["nix-build", "--no-out-link", file.to_str().unwrap()]))
}

fn killed_eviction_and_gc_leave_no_damage(backend: Backend) {
    let mut server = Server::builder(backend).env(&[("GC_GRACE", "0s"), ("EVICTION_MIN_AGE", "0s")]).start();
    let keys = Keys::generate("fsck-2");
    let token = server.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&server, &token);
    let tops = many_closures("fsck-closures-v1");
    push_all(&cli, &keys, "main", &tops);

    // Eviction of everything (a one-byte quota) removes closure after closure, each in a
    // transaction of its own: killed once the first one committed.
    let paths_in_cache = || -> i64 {
        let info: serde_json::Value = server.get("/api/v1/caches/main", Some(&token)).json().unwrap();
        info["paths"].as_i64().unwrap()
    };
    let all = paths_in_cache();
    assert_eq!(all, CLOSURES as i64 * CLOSURE_PATHS);
    let evict = server
        .command(Some(&["admin", "update-cache", "main", "--quota-gib", "0.000000001", "--quota-policy", "oldest"]))
        .spawn()
        .unwrap();
    kill_when(evict, "eviction", || paths_in_cache() < all);
    let left = paths_in_cache();
    assert!(left > 0, "the eviction was killed before its last closure went");
    assert_eq!(left % CLOSURE_PATHS, 0, "closures go whole, never a part of one: {left} of {all} paths left");
    let (code, out) = fsck(&server, &[]);
    assert_eq!(code, 0, "a killed eviction leaves every closure whole: {out}");

    // Whatever the eviction left goes now, then garbage collection is killed part way.
    server.admin(&["update-cache", "main", "--quota-gib", "0.000000001"]);
    let nar_files = || std::fs::read_dir(server.object_dir().join("nar")).unwrap().count();
    let stored = nar_files();
    let gc = server.command(Some(&["admin", "gc"])).spawn().unwrap();
    kill_when(gc, "garbage collection", || nar_files() < stored);
    // The lock ended with the process: a server started now collects what is left at once.
    server.restart();
    support::wait_until(Duration::from_secs(60), "the restarted server's garbage collection", || {
        let (code, out) = fsck(&server, &[]);
        code == 0 && out.contains("0 objects no row owns")
    });
    let (code, out) = fsck(&server, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checked 0 NARs"), "everything was collected: {out}");

    // The cache works as before.
    server.admin(&["update-cache", "main", "--quota-gib", "none"]);
    push(&cli, &keys, "main", &tops[0]);
    substitutes(&server, &keys, "main", &[&tops[0]]);
}

/// The server itself killed while a push makes room (eviction in the request), and while it
/// collects garbage (the collection every server runs as it starts): once it runs again,
/// fsck finds nothing.
fn a_server_killed_mid_work_leaves_no_damage(backend: Backend) {
    let mut server = Server::builder(backend).env(&[("GC_GRACE", "0s"), ("EVICTION_MIN_AGE", "0s")]).start();
    let keys = Keys::generate("fsck-3");
    let token = server.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&server, &token);
    let tops = many_closures("fsck-closures-v1");
    push_all(&cli, &keys, "main", &tops);
    let info =
        |server: &Server| -> serde_json::Value { server.get("/api/v1/caches/main", Some(&token)).json().unwrap() };
    let (all, used) = (info(&server)["paths"].as_i64().unwrap(), info(&server)["stored_bytes"].as_i64().unwrap());
    assert_eq!(all, CLOSURES as i64 * CLOSURE_PATHS);
    // Room for a tiny path more. The closures are about a fifth of what is stored each: a
    // path of three tenths of it needs two of them evicted (oldest first), each in a
    // transaction of its own, and leaves three for the collection below.
    let quota = format!("{:.12}", (used + 200) as f64 / (1u64 << 30) as f64);
    server.admin(&["update-cache", "main", "--quota-gib", &quota, "--quota-policy", "oldest"]);
    std::thread::sleep(Duration::from_secs(5)); // the server's cached cache row expires
    let big_bytes = used as usize * 3 / 10;
    // Built once per machine too: what the cache stores, hence this size, is the same each run.
    let big = random_path("server-kill-big-v2", big_bytes);
    // It fails when the server dies under it.
    let mut pushing = cli
        .command(&["push", "main", "--key", keys.secret_path(), &big])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while info(&server)["paths"].as_i64().unwrap() >= all {
        assert!(pushing.try_wait().unwrap().is_none(), "the push ended before eviction was seen");
        assert!(std::time::Instant::now() < deadline, "no eviction");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(pushing.try_wait().unwrap().is_none(), "the push ended before the server could be killed");
    server.stop();
    let _ = pushing.wait();
    server.resume();
    let (code, out) = fsck(&server, &[]);
    assert_eq!(code, 0, "a server killed during eviction leaves every closure whole: {out}");
    assert!(out.contains("0 objects no row owns"), "{out}");
    // One closure or two went, whole, and no more (the push may have committed before the
    // server died).
    let left = info(&server)["paths"].as_i64().unwrap() - i64::from(present(&server, "main", &big));
    let closures_left = [all - CLOSURE_PATHS, all - 2 * CLOSURE_PATHS];
    assert!(closures_left.contains(&left), "{left} of {all} paths left, expected {closures_left:?}");

    // Everything is evicted (all NARs due at once), then the collection the server runs as it
    // starts is killed part way.
    server.admin(&["update-cache", "main", "--quota-gib", "0.000000001"]);
    let nar_files = |server: &Server| std::fs::read_dir(server.object_dir().join("nar")).unwrap().count();
    server.stop();
    let stored = nar_files(&server);
    server.resume();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while nar_files(&server) == stored {
        assert!(std::time::Instant::now() < deadline, "no collection");
        std::thread::sleep(Duration::from_millis(2));
    }
    server.stop();
    assert!(nar_files(&server) > 0, "killed part way");
    server.resume();
    support::wait_until(Duration::from_secs(60), "the restarted server's garbage collection", || {
        let (code, out) = fsck(&server, &[]);
        code == 0 && out.contains("checked 0 NARs") && out.contains("0 objects no row owns")
    });
}
