//! A cache at its quota evicts by its policy (lru, lfu, oldest) instead of refusing pushes,
//! whole closures at a time: closures pushed with the CLI and downloaded with stock Nix,
//! then one more push past the quota. A closure that goes leaves nothing only it used, and
//! one that was used recently never loses a path because something it depends on is old.
//! Also: a push larger than the whole quota is refused with nothing stored, a lowered quota
//! evicts at once, and pins keep their closures.

#[macro_use]
mod support;

use std::time::Duration;

use support::{Backend, Cli, Closure, Keys, NixClient, Server, unique_tag};

on_every_backend!(
    eviction_follows_the_policy_and_keeps_closures,
    eviction_takes_the_closures_the_policy_names_whole,
    a_shared_dependency_goes_with_its_last_referrer,
    quota_decisions_read_the_current_settings,
    pins_keep_closures_and_lowered_quotas_evict,
    a_push_keeps_the_paths_it_references,
    nix_copy_evicts_too,
    retention_removes_unused_closures_whole,
);

/// Accesses are written every 5 s; waiting longer puts each group of downloads in its own.
const ACCESS_FLUSH: Duration = Duration::from_secs(6);
/// The server's EVICTION_MIN_AGE in these tests: the paths of a push in progress are younger.
const MIN_AGE: Duration = Duration::from_secs(3);

fn start(backend: Backend) -> (Server, Keys, String, Cli) {
    let server = Server::builder(backend).env(&[("EVICTION_MIN_AGE", "3s")]).start();
    let keys = Keys::generate("eviction-1");
    let token = server.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&server, &token);
    (server, keys, token, cli)
}

fn cache_info(server: &Server, token: &str, cache: &str) -> serde_json::Value {
    let response = server.get(&format!("/api/v1/caches/{cache}"), Some(token));
    assert_eq!(response.status(), 200);
    response.json().unwrap()
}

fn stored_bytes(server: &Server, token: &str, cache: &str) -> i64 {
    cache_info(server, token, cache)["stored_bytes"].as_i64().unwrap()
}

fn hash_part(path: &str) -> &str {
    &path["/nix/store/".len()..][..32]
}

/// The narinfo of `path` in `cache`, if the cache holds it.
fn narinfo(server: &Server, cache: &str, path: &str) -> Option<String> {
    let response = server.get(&format!("/api/nix/{cache}/{}.narinfo", hash_part(path)), None);
    match response.status().as_u16() {
        200 => Some(response.text().unwrap()),
        404 => None,
        other => panic!("narinfo of {path}: status {other}"),
    }
}

/// Every path of `closures` the cache still holds has all its references there too.
fn assert_closed(server: &Server, cache: &str, closures: &[&Closure]) {
    let paths: Vec<&str> = closures.iter().flat_map(|c| c.paths()).collect();
    assert_paths_closed(server, cache, &paths);
}

/// Every one of `paths` the cache still holds has all its references there too.
fn assert_paths_closed(server: &Server, cache: &str, paths: &[&str]) {
    for path in paths {
        let Some(info) = narinfo(server, cache, path) else { continue };
        let references = info.lines().find_map(|l| l.strip_prefix("References: ")).unwrap_or_default();
        for reference in references.split_whitespace() {
            let full = format!("/nix/store/{reference}");
            assert!(
                narinfo(server, cache, &full).is_some(),
                "{cache}: {path} is left without its reference {reference}"
            );
        }
    }
}

/// Builds the attribute `attr` of `body` (Nix bindings of a recursive attribute set, where
/// `mk name script deps` makes a derivation whose output references `deps`) and returns its
/// store path.
fn build(body: &str, attr: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let expr = format!(
        r#"let mk = name: script: deps: derivation ({{ inherit name; system = builtins.currentSystem;
  builder = "/bin/sh"; args = [ "-c" script ]; }} // deps);
in rec {{ {body} }}"#
    );
    let file = dir.path().join("paths.nix");
    std::fs::write(&file, expr).unwrap();
    support::nix::run_ok(support::nix::nix(&["nix-build", "--no-out-link", file.to_str().unwrap(), "-A", attr]))
}

/// root -> mid -> leaf, the leaf `leaf_bytes` random (incompressible) bytes, the others a line.
struct Chain {
    root: String,
    mid: String,
    leaf: String,
}

impl Chain {
    fn build(tag: &str, leaf_bytes: usize) -> Self {
        let body = format!(
            r#"leaf = mk "leaf-{tag}" "/usr/bin/head -c {leaf_bytes} /dev/urandom > $out" {{}};
  mid = mk "mid-{tag}" "echo $leaf > $out" {{ inherit leaf; }};
  root = mk "root-{tag}" "echo $mid > $out" {{ inherit mid; }};"#
        );
        let [root, mid, leaf] = ["root", "mid", "leaf"].map(|attr| build(&body, attr));
        Self { root, mid, leaf }
    }

    fn paths(&self) -> [&str; 3] {
        [&self.root, &self.mid, &self.leaf]
    }
}

/// Two roots sharing one dependency of 300,000 random bytes.
struct Diamond {
    a: String,
    b: String,
    shared: String,
}

impl Diamond {
    fn build(tag: &str) -> Self {
        let body = format!(
            r#"shared = mk "shared-{tag}" "/usr/bin/head -c 300000 /dev/urandom > $out" {{}};
  a = mk "a-{tag}" "echo $shared > $out" {{ inherit shared; }};
  b = mk "b-{tag}" "echo $shared > $out" {{ inherit shared; }};"#
        );
        let [a, b, shared] = ["a", "b", "shared"].map(|attr| build(&body, attr));
        Self { a, b, shared }
    }
}

fn push_path(cli: &Cli, keys: &Keys, cache: &str, path: &str) {
    cli.run_ok(&["push", cache, "--key", keys.secret_path(), path]);
}

/// Stock Nix substitutes `path` and its closure from `cache` into a fresh store.
fn fetch(server: &Server, keys: &Keys, cache: &str, path: &str) {
    let nix = NixClient::new();
    let out = nix.copy_from(&server.cache_url(cache), &nix.store("into"), &keys.public, &[path]);
    assert!(out.status.success(), "substituting {path} from {cache}: {}", support::output_text(&out));
}

fn create_cache(server: &Server, keys: &Keys, name: &str, quota: i64, policy: &str) {
    let quota = gib(quota);
    let args = ["--public", "--no-upstream", "--public-key", &keys.public, "--quota-gib", &quota];
    server.admin(&[&["create-cache", name][..], &args[..], &["--quota-policy", policy][..]].concat());
}

fn paths_in(server: &Server, token: &str, cache: &str) -> i64 {
    cache_info(server, token, cache)["paths"].as_i64().unwrap()
}

fn push(cli: &Cli, keys: &Keys, cache: &str, closure: &Closure) {
    cli.run_ok(&["push", cache, "--key", keys.secret_path(), &closure.app]);
}

/// Stock Nix substitutes `closure` from `cache` into a fresh store (each time a download).
fn substitute(server: &Server, keys: &Keys, cache: &str, closure: &Closure) {
    let nix = NixClient::new();
    let out = nix.copy_from(&server.cache_url(cache), &nix.store("into"), &keys.public, &[&closure.app]);
    assert!(out.status.success(), "substituting {} from {cache}: {}", closure.app, support::output_text(&out));
}

/// A quota in GiB for the command line that is `bytes` to the byte.
fn gib(bytes: i64) -> String {
    format!("{:.12}", bytes as f64 / (1u64 << 30) as f64)
}

fn eviction_follows_the_policy_and_keeps_closures(backend: Backend) {
    let (server, keys, token, cli) = start(backend);
    let tag = unique_tag("evict");
    let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| Closure::build(&format!("{tag}-{n}")));
    // One closure's size, measured where nothing is evicted.
    push(&cli, &keys, "main", &a);
    let one = stored_bytes(&server, &token, "main");
    assert!(one > 0);

    // Three closures fit, four do not: the fourth needs about half a closure freed, which
    // the top-level path of one closure would give; its whole closure goes.
    let quota = gib(one * 7 / 2);
    for policy in ["lru", "lfu", "oldest"] {
        server.admin(&[
            "create-cache",
            policy,
            "--public",
            "--no-upstream",
            "--public-key",
            &keys.public,
            "--quota-gib",
            &quota,
            "--quota-policy",
            policy,
        ]);
    }
    for closure in [&a, &b, &c] {
        for policy in ["lru", "lfu", "oldest"] {
            push(&cli, &keys, policy, closure);
        }
    }
    // Downloads: b three times (first), then c once, then a twice (last). So the oldest push
    // is a, the least recently used b, and the least frequently used c.
    for (closure, times) in [(&b, 3), (&c, 1), (&a, 2)] {
        for _ in 0..times {
            for policy in ["lru", "lfu", "oldest"] {
                substitute(&server, &keys, policy, closure);
            }
        }
        std::thread::sleep(ACCESS_FLUSH);
    }
    std::thread::sleep(MIN_AGE);
    for (policy, victim) in [("lru", &b), ("lfu", &c), ("oldest", &a)] {
        push(&cli, &keys, policy, &d);
        assert!(stored_bytes(&server, &token, policy) <= one * 7 / 2, "{policy}: over its quota");
        assert_eq!(
            cache_info(&server, &token, policy)["paths"].as_i64().unwrap(),
            6,
            "{policy}: one closure evicted ({}), with the dependency only it used",
            victim.app
        );
    }
    // A process may answer narinfos from memory for a minute after a path goes elsewhere (its
    // NAR stays for GC_GRACE, so such answers still substitute): a fresh one reads the database.
    let mut server = server;
    server.restart();
    for (policy, victim) in [("lru", &b), ("lfu", &c), ("oldest", &a)] {
        assert!(narinfo(&server, policy, &victim.app).is_none(), "{policy}: {} should be evicted first", victim.app);
        assert!(narinfo(&server, policy, &victim.dep).is_none(), "{policy}: {} goes with it", victim.dep);
        for kept in [&a, &b, &c, &d].into_iter().filter(|x| x.app != victim.app) {
            assert!(narinfo(&server, policy, &kept.app).is_some(), "{policy}: {} should stay", kept.app);
        }
        assert_closed(&server, policy, &[&a, &b, &c, &d]);
        // The newest closure substitutes completely with stock Nix.
        substitute(&server, &keys, policy, &d);
    }

    // A push larger than the whole quota is refused, whatever the policy, and stores nothing.
    server.admin(&[
        "create-cache",
        "tiny",
        "--public",
        "--no-upstream",
        "--public-key",
        &keys.public,
        "--quota-gib",
        &gib(1),
        "--quota-policy",
        "lru",
    ]);
    let out = cli.run(&["push", "tiny", "--key", keys.secret_path(), &a.dep]);
    let text = support::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("larger than the whole quota"), "{text}");
    assert_eq!(cache_info(&server, &token, "tiny")["paths"].as_i64(), Some(0));
}

/// Three closures of root -> mid -> 300 KB leaf fill the quota; a fourth of about half their
/// size needs room. Each policy takes the one closure it names, whole, and nothing of the
/// others (which used to lose their roots and mids, the only paths nothing referenced, before
/// the victim's leaf was reached).
fn eviction_takes_the_closures_the_policy_names_whole(backend: Backend) {
    let (server, keys, token, cli) = start(backend);
    let tag = unique_tag("whole");
    let chains: Vec<Chain> = (1..=3).map(|i| Chain::build(&format!("{tag}-{i}"), 300_000)).collect();
    let fourth = Chain::build(&format!("{tag}-4"), 140_000);
    // One closure's size, measured where nothing is evicted.
    push_path(&cli, &keys, "main", &chains[0].root);
    let one = stored_bytes(&server, &token, "main");
    // Three closures fit with a tenth of one to spare; the fourth needs more than that.
    let quota = one * 3 + one / 10;
    for policy in ["lru", "lfu", "oldest"] {
        create_cache(&server, &keys, policy, quota, policy);
    }
    for chain in &chains {
        for policy in ["lru", "lfu", "oldest"] {
            push_path(&cli, &keys, policy, &chain.root);
        }
    }
    // lru and oldest: closures 1 and 3 are downloaded, so 2 is the least recently used and 1,
    // just downloaded, is still the oldest. lfu: 1 and 3 twice, then 2 once, last: 2 is the
    // least downloaded though the most recently used.
    for (cache, chain) in [("lru", 0), ("lru", 2), ("oldest", 0), ("oldest", 2), ("lfu", 0), ("lfu", 2)] {
        fetch(&server, &keys, cache, &chains[chain].root);
    }
    fetch(&server, &keys, "lfu", &chains[0].root);
    fetch(&server, &keys, "lfu", &chains[2].root);
    std::thread::sleep(ACCESS_FLUSH);
    fetch(&server, &keys, "lfu", &chains[1].root);
    std::thread::sleep(ACCESS_FLUSH);
    for policy in ["lru", "lfu", "oldest"] {
        push_path(&cli, &keys, policy, &fourth.root);
    }
    let log = server.log();
    let evictions: Vec<&str> = log.lines().filter(|l| l.contains("eviction removed")).collect();
    assert_eq!(evictions.len(), 3, "one eviction per cache: {evictions:#?}");
    assert!(evictions.iter().all(|l| l.contains("eviction removed 3 paths")), "one closure each: {evictions:#?}");
    // A process may answer narinfos from memory for a minute after a path goes elsewhere: a
    // fresh one reads the database.
    let mut server = server;
    server.restart();
    for (policy, victim) in [("lru", 1), ("lfu", 1), ("oldest", 0)] {
        for (i, chain) in chains.iter().enumerate() {
            for path in chain.paths() {
                let held = narinfo(&server, policy, path).is_some();
                if i == victim {
                    assert!(!held, "{policy}: closure {} goes whole, {path} is left", i + 1);
                } else {
                    assert!(held, "{policy}: closure {} stays whole, {path} was evicted", i + 1);
                }
            }
        }
        for path in fourth.paths() {
            assert!(narinfo(&server, policy, path).is_some(), "{policy}: {path} was pushed");
        }
        assert_eq!(paths_in(&server, &token, policy), 9, "{policy}: one closure of three paths went");
        assert!(stored_bytes(&server, &token, policy) <= quota, "{policy}: over its quota");
        let all: Vec<&str> = chains.iter().chain([&fourth]).flat_map(|c| c.paths()).collect();
        assert_paths_closed(&server, policy, &all);
        fetch(&server, &keys, policy, &fourth.root);
    }
}

/// Two roots a and b share a 300 KB dependency. In one cache neither is used: the push that
/// needs room takes a, then b with the dependency (only b needed it by then), and keeps the
/// closure downloaded since. In another a was downloaded last: b goes alone (a still needs the
/// dependency), and then the closure used before a, whole, not a.
fn a_shared_dependency_goes_with_its_last_referrer(backend: Backend) {
    let (server, keys, token, cli) = start(backend);
    let tag = unique_tag("diamond");
    let diamond = Diamond::build(&tag);
    let chain = Chain::build(&format!("{tag}-c"), 300_000);
    let fourth = Chain::build(&format!("{tag}-4"), 140_000);
    push_path(&cli, &keys, "main", &diamond.a);
    push_path(&cli, &keys, "main", &diamond.b);
    push_path(&cli, &keys, "main", &chain.root);
    let full = stored_bytes(&server, &token, "main");
    let quota = full + full / 30;
    for cache in ["unused", "used"] {
        create_cache(&server, &keys, cache, quota, "lru");
        push_path(&cli, &keys, cache, &diamond.a);
        push_path(&cli, &keys, cache, &diamond.b);
        push_path(&cli, &keys, cache, &chain.root);
        fetch(&server, &keys, cache, &chain.root);
    }
    std::thread::sleep(ACCESS_FLUSH);
    fetch(&server, &keys, "used", &diamond.a);
    std::thread::sleep(ACCESS_FLUSH);
    for cache in ["unused", "used"] {
        push_path(&cli, &keys, cache, &fourth.root);
    }
    let mut server = server;
    server.restart();
    let held = |cache: &str, path: &str| narinfo(&server, cache, path).is_some();
    // Unused: both roots go, and the dependency with the last of them.
    assert!(!held("unused", &diamond.a) && !held("unused", &diamond.b), "unused: both roots go");
    assert!(!held("unused", &diamond.shared), "unused: the dependency goes with the last root that needed it");
    for path in chain.paths().into_iter().chain(fourth.paths()) {
        assert!(held("unused", path), "unused: {path} stays (the closure downloaded is used more recently)");
    }
    assert_eq!(paths_in(&server, &token, "unused"), 6);
    // Used: b goes alone, then the closure downloaded before a; a keeps its dependency.
    assert!(!held("used", &diamond.b), "used: b, never downloaded, goes first");
    assert!(held("used", &diamond.a) && held("used", &diamond.shared), "used: a, downloaded last, stays whole");
    for path in chain.paths() {
        assert!(!held("used", path), "used: the closure downloaded before a goes whole, {path} is left");
    }
    assert_eq!(paths_in(&server, &token, "used"), 5);
    let all: Vec<&str> = [diamond.a.as_str(), &diamond.b, &diamond.shared]
        .into_iter()
        .chain(chain.paths())
        .chain(fourth.paths())
        .collect();
    for cache in ["unused", "used"] {
        assert!(stored_bytes(&server, &token, cache) <= quota, "{cache}: over its quota");
        assert_paths_closed(&server, cache, &all);
        fetch(&server, &keys, cache, &fourth.root);
    }
    fetch(&server, &keys, "used", &diamond.a);
}

/// A process reuses a cache row for a few seconds; a quota changed through another process
/// (an admin command) counts at once all the same: lowered, it refuses a push larger than the
/// whole new quota; raised, it accepts one larger than the old.
fn quota_decisions_read_the_current_settings(backend: Backend) {
    let (server, keys, token, cli) = start(backend);
    let tag = unique_tag("current");
    let file = |n: u64, size: usize| support::nix::add_random_file(size, 7 + n, &format!("{tag}-{n}"));
    let [first, second, third] = [1, 2, 3].map(|n| file(n, 20_000));
    // Larger than the whole quota "raised" starts with.
    let fourth = file(4, 40_000);
    create_cache(&server, &keys, "lowered", 1 << 30, "lru");
    create_cache(&server, &keys, "raised", 30_000, "lru");
    // Each push makes the server remember the cache row; the change follows at once.
    push_path(&cli, &keys, "lowered", &first);
    server.admin(&["update-cache", "lowered", "--quota-gib", &gib(5_000)]);
    let out = cli.run(&["push", "lowered", "--key", keys.secret_path(), &second]);
    let text = support::output_text(&out);
    assert!(!out.status.success(), "accepted by the quota before it was lowered: {text}");
    assert!(text.contains("larger than the whole quota"), "{text}");
    assert!(narinfo(&server, "lowered", &second).is_none());
    push_path(&cli, &keys, "raised", &third);
    server.admin(&["update-cache", "raised", "--quota-gib", &gib(1 << 30)]);
    push_path(&cli, &keys, "raised", &fourth);
    assert_eq!(paths_in(&server, &token, "raised"), 2);
}

fn pins_keep_closures_and_lowered_quotas_evict(backend: Backend) {
    let (mut server, keys, token, cli) = start(backend);
    let tag = unique_tag("pin");
    let [a, b, c] = ["a", "b", "c"].map(|n| Closure::build(&format!("{tag}-{n}")));
    for closure in [&a, &b, &c] {
        push(&cli, &keys, "main", closure);
    }
    let used = stored_bytes(&server, &token, "main");
    // The oldest closure is pinned: eviction by age takes the next one.
    cli.run_ok(&["pin", "main", "release", &a.app]);
    let listed = cli.run_ok(&["pin", "list", "main"]);
    assert!(listed.contains("release") && listed.contains(&a.app), "{listed}");
    std::thread::sleep(MIN_AGE);
    // Lowering the quota under an evicting policy evicts at once, oldest first, pins kept.
    // Room for two and a half closures of three: one closure goes, whole.
    let quota = used * 5 / 6;
    let out = server.admin(&["update-cache", "main", "--quota-gib", &gib(quota), "--quota-policy", "oldest"]);
    assert!(out.contains("evicted"), "{out}");
    server.restart();
    assert!(narinfo(&server, "main", &a.app).is_some(), "the pinned closure stays");
    assert!(narinfo(&server, "main", &a.dep).is_some(), "the pinned closure's dependency stays");
    assert!(narinfo(&server, "main", &b.app).is_none(), "the oldest unpinned closure goes first");
    assert!(narinfo(&server, "main", &b.dep).is_none(), "with the dependency only it used");
    assert!(narinfo(&server, "main", &c.app).is_some(), "no more than needed goes");
    assert!(stored_bytes(&server, &token, "main") <= quota);
    assert_closed(&server, "main", &[&a, &b, &c]);
    substitute(&server, &keys, "main", &a);

    // Re-pinning a name moves it; once the pin is gone, its closure may be evicted too.
    cli.run_ok(&["pin", "main", "release", &c.app]);
    let listed = cli.run_ok(&["pin", "list", "main"]);
    assert!(listed.contains(&c.app) && !listed.contains(&a.app), "{listed}");
    cli.run_ok(&["pin", "remove", "main", "release"]);
    assert!(!cli.run_ok(&["pin", "list", "main"]).contains("release"));
    let out = server.admin(&["update-cache", "main", "--quota-gib", &gib(1)]);
    assert!(out.contains("evicted"), "{out}");
    server.restart();
    assert!(narinfo(&server, "main", &a.app).is_none(), "unpinned, the oldest closure goes");
    assert_closed(&server, "main", &[&a, &b, &c]);

    // Pinning a path the cache does not hold is refused.
    let out = cli.run(&["pin", "main", "missing", &a.app]);
    assert!(!out.status.success());
    assert!(support::output_text(&out).contains("does not hold"), "{}", support::output_text(&out));
}

/// The dependency a push references may be the first in eviction order (old, never used,
/// nothing else references it): eviction takes something else, and the push completes.
fn a_push_keeps_the_paths_it_references(backend: Backend) {
    let (server, keys, token, cli) = start(backend);
    let tag = unique_tag("needs");
    let [x, y] = ["x", "y"].map(|n| Closure::build(&format!("{tag}-{n}")));
    server.admin(&["update-cache", "main", "--quota-policy", "lru"]);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &x.dep]);
    push(&cli, &keys, "main", &y);
    let before_app = stored_bytes(&server, &token, "main");
    std::thread::sleep(MIN_AGE);
    substitute(&server, &keys, "main", &y);
    std::thread::sleep(ACCESS_FLUSH);
    // y's top-level path is about as large as x's: a quota a little short of both makes the
    // push of x's top-level path evict one closure, y's (x's dependency is the older path).
    let info = narinfo(&server, "main", &y.app).unwrap();
    let y_app: i64 = info.lines().find_map(|l| l.strip_prefix("FileSize: ")).unwrap().parse().unwrap();
    server.admin(&["update-cache", "main", "--quota-gib", &gib(before_app + y_app - 100)]);
    std::thread::sleep(Duration::from_secs(5)); // the server's cached cache row expires
    push(&cli, &keys, "main", &x);
    let mut server = server;
    server.restart();
    assert!(narinfo(&server, "main", &x.dep).is_some(), "the pushed path's dependency stays");
    assert!(narinfo(&server, "main", &y.app).is_none(), "the next closure in LRU order goes instead");
    assert!(narinfo(&server, "main", &y.dep).is_none(), "whole");
    assert_closed(&server, "main", &[&x, &y]);
    substitute(&server, &keys, "main", &x);
}

/// `nix copy --to` a cache at its quota, under each policy: room is made when each narinfo
/// commits (the NAR arrives before anything says what it needs), and the copied closure is
/// complete.
fn nix_copy_evicts_too(backend: Backend) {
    let (server, keys, token, cli) = start(backend);
    let tag = unique_tag("copy");
    let [a, b, c] = ["a", "b", "c"].map(|n| Closure::build(&format!("{tag}-{n}")));
    push(&cli, &keys, "main", &a);
    let one = stored_bytes(&server, &token, "main");
    let quota = gib(one * 5 / 2);
    for policy in ["lru", "lfu", "oldest"] {
        let args = ["--public", "--no-upstream", "--public-key", &keys.public, "--quota-gib", &quota];
        server.admin(&[&["create-cache", policy][..], &args[..], &["--quota-policy", policy][..]].concat());
        push(&cli, &keys, policy, &a);
        push(&cli, &keys, policy, &b);
    }
    std::thread::sleep(MIN_AGE);
    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    for policy in ["lru", "lfu", "oldest"] {
        let url = format!("{}?compression=zstd&secret-key={}", server.cache_url(policy), keys.secret_path());
        let out = nix.run(&["nix", "copy", "--to", &url, &c.app]);
        assert!(out.status.success(), "{policy}: {}", support::output_text(&out));
    }
    let mut server = server;
    server.restart();
    for policy in ["lru", "lfu", "oldest"] {
        // Nothing was downloaded: every policy takes the path pushed first.
        assert!(narinfo(&server, policy, &a.app).is_none(), "{policy}: the first closure goes");
        assert!(narinfo(&server, policy, &a.dep).is_none(), "{policy}: whole");
        assert!(narinfo(&server, policy, &b.app).is_some(), "{policy}");
        assert!(stored_bytes(&server, &token, policy) <= one * 5 / 2, "{policy}");
        assert_closed(&server, policy, &[&a, &b, &c]);
        substitute(&server, &keys, policy, &c);
    }
}

/// Retention removes what nobody used for longer than the cache keeps it, top-level paths
/// first, and never a path something younger (or pinned) needs.
fn retention_removes_unused_closures_whole(backend: Backend) {
    let server = Server::builder(backend).env(&[("EVICTION_MIN_AGE", "0s"), ("GC_INTERVAL", "1s")]).start();
    let keys = Keys::generate("retention-1");
    let token = server.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&server, &token);
    let tag = unique_tag("retention");
    let [x, y, z] = ["x", "y", "z"].map(|n| Closure::build(&format!("{tag}-{n}")));
    push(&cli, &keys, "main", &x);
    push(&cli, &keys, "main", &y);
    // Pushed and pinned at once.
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), "--pin", "keep", &z.app]);
    assert!(cli.run_ok(&["pin", "list", "main"]).contains(&z.app));
    // x, y's dependency and z were pushed long ago and never downloaded; y's top path is new.
    let old: Vec<String> =
        [&x.app, &x.dep, &y.dep, &z.app, &z.dep].iter().map(|p| format!("'{}'", hash_part(p))).collect();
    server.sql(&format!(
        "UPDATE store_paths SET created_at = '2000-01-01 00:00:00' WHERE hash_part IN ({})",
        old.join(", ")
    ));
    // A pin with a lifetime ends on its own.
    cli.run_ok(&["pin", "main", "short", &y.app, "--keep", "1s"]);
    server.admin(&["update-cache", "main", "--retention", "1d"]);
    let paths = || -> i64 { cache_info(&server, &token, "main")["paths"].as_i64().unwrap() };
    support::wait_until(Duration::from_secs(30), "retention to remove x's closure", || paths() == 4);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(paths(), 4, "nothing else goes");
    let mut server = server;
    server.restart();
    assert!(narinfo(&server, "main", &x.app).is_none() && narinfo(&server, "main", &x.dep).is_none());
    assert!(narinfo(&server, "main", &y.dep).is_some(), "an old path a new one needs stays");
    assert!(narinfo(&server, "main", &z.app).is_some(), "a pinned closure stays");
    assert_closed(&server, "main", &[&x, &y, &z]);
    let pins = cli.run_ok(&["pin", "list", "main"]);
    assert!(pins.contains("keep") && !pins.contains("short"), "an expired pin is gone: {pins}");
    substitute(&server, &keys, "main", &y);
}
