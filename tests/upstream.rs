//! Upstream filtering: paths an upstream cache already serves are not pushed again (unless
//! the cache allows `--force`), Nix fetches them from the upstream, and the checks run in
//! parallel and are remembered.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hibernation::nix::{NarHash, NarInfo, SecretKey, StorePath, signing};
use support::{Backend, Cli, Closure, Keys, NixClient, Server, output_text, unique_tag};

fn push_json(cli: &Cli, keys: &Keys, args: &[&str]) -> (bool, serde_json::Value, String) {
    let mut full = vec!["push", "--json", "--key", keys.secret_path()];
    full.extend_from_slice(args);
    let out = cli.run(&full);
    let summary = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), summary, output_text(&out))
}

/// A second server whose public cache `up` holds `path` (only), signed by the returned keys.
fn upstream_holding(path: &str) -> (Server, Keys) {
    let upstream_keys = Keys::generate("upstream-1");
    let upstream = Server::start(Backend::Sqlite);
    upstream.admin(&["create-user", "admin", "--admin"]);
    upstream.admin(&["create-cache", "up", "--public", "--no-upstream", "--public-key", &upstream_keys.public]);
    let upstream_token = upstream.admin(&["create-token", "admin", "--name", "ci"]);
    let upstream_cli = Cli::new();
    upstream_cli.login(&upstream, &upstream_token);
    upstream_cli.run_ok(&["push", "up", "--no-deps", "--key", upstream_keys.secret_path(), path]);
    (upstream, upstream_keys)
}

#[test]
fn paths_an_upstream_serves_are_skipped_and_nix_fetches_them_there() {
    let closure = Closure::build(&unique_tag("upstream"));
    let (upstream, upstream_keys) = upstream_holding(&closure.dep);

    let keys = Keys::generate("main-1");
    let server = Server::start(Backend::Sqlite);
    server.admin(&["create-user", "admin", "--admin"]);
    let upstream_line = format!("{} {}", upstream.cache_url("up"), upstream_keys.public);
    server.admin(&["create-cache", "main", "--public-key", &keys.public, "--upstream", &upstream_line]);
    server.admin(&[
        "create-cache",
        "forced",
        "--allow-force-push",
        "--public-key",
        &keys.public,
        "--upstream",
        &upstream_line,
    ]);
    let token = server.admin(&["create-token", "admin", "--name", "ci"]);
    let cli = Cli::new();
    cli.login(&server, &token);

    let (ok, summary, text) = push_json(&cli, &keys, &["main", &closure.app]);
    assert!(ok, "{text}");
    assert_eq!((summary["pushed"].as_u64(), summary["upstream"].as_u64()), (Some(1), Some(1)), "{text}");
    assert!(text.contains("1 served by an upstream"), "{text}");
    let narinfo = |cache: &str, path: &str| {
        server.get(&format!("/api/nix/{cache}/{}.narinfo", &path[11..43]), Some(&token)).status().as_u16()
    };
    assert_eq!((narinfo("main", &closure.app), narinfo("main", &closure.dep)), (200, 404));

    // Nix takes the app from Hibernation and its dependency from the upstream.
    let client = NixClient::new();
    client.write_netrc("127.0.0.1", &token);
    let store = client.store("substituted");
    let substituters = format!("{} {}", server.cache_url("main"), upstream.cache_url("up"));
    let trusted = format!("{} {}", keys.public, upstream_keys.public);
    let out = client.run(&[
        "nix-store",
        "--store",
        store.to_str().unwrap(),
        "--realise",
        &closure.app,
        "--option",
        "substituters",
        &substituters,
        "--option",
        "trusted-public-keys",
        &trusted,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(store.join(&closure.dep[1..]).exists());

    // --force: refused where the cache does not allow it, nothing stored; accepted where it does.
    let (ok, _, text) = push_json(&cli, &keys, &["main", "--force", &closure.app]);
    assert!(!ok && text.contains("does not allow --force"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("error")).count(), 1, "{text}");
    assert_eq!(narinfo("main", &closure.dep), 404);
    let (ok, summary, text) = push_json(&cli, &keys, &["forced", "--force", &closure.app]);
    assert!(ok, "{text}");
    let stored = summary["pushed"].as_u64().unwrap() + summary["attached"].as_u64().unwrap();
    assert_eq!((stored, summary["upstream"].as_u64()), (2, Some(0)), "{text}");
    assert_eq!(narinfo("forced", &closure.dep), 200);

    // The cache info shows the upstream.
    let info: serde_json::Value = serde_json::from_str(&cli.run_ok(&["cache", "info", "main", "--json"])).unwrap();
    assert_eq!(info["upstreams"][0]["url"], upstream.cache_url("up"));
    assert_eq!(info["allow_force_push"], false);
}

#[test]
fn an_unreachable_upstream_makes_an_upload_wait_instead_of_failing_for_good() {
    let closure = Closure::build(&unique_tag("upstream-down"));
    let (mut upstream, upstream_keys) = upstream_holding(&closure.dep);
    let keys = Keys::generate("main-2");
    let mut server = Server::start(Backend::Sqlite);
    server.admin(&["create-user", "admin", "--admin"]);
    let upstream_line = format!("{} {}", upstream.cache_url("up"), upstream_keys.public);
    server.admin(&["create-cache", "main", "--public-key", &keys.public, "--upstream", &upstream_line]);
    let token = server.admin(&["create-token", "admin", "--name", "ci"]);

    // A fresh server process (nothing remembered) while the upstream is down.
    server.restart();
    upstream.stop();
    let app = support::RawUpload::of(&closure.app, keys.secret_path());
    let (status, message) = support::error_of(app.send(&server, "main", &token, app.compressed()));
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("cannot be reached; try again later"), "{message}");
    assert_eq!(server.get(&format!("/api/nix/main/{}.narinfo", app.hash_part()), Some(&token)).status(), 404);

    // Once the upstream answers again (it is left out for a few seconds), the same upload works.
    upstream.resume();
    support::wait_until(std::time::Duration::from_secs(30), "the upload to be accepted", || {
        app.send(&server, "main", &token, app.compressed()).status() == 200
    });
}

/// A fake upstream that answers every narinfo request after a delay, counting requests per
/// path and the most it served at once; `narinfos` are served, everything else is a 404.
struct FakeUpstream {
    port: u16,
    requests: Arc<Mutex<HashMap<String, usize>>>,
    most_at_once: Arc<AtomicUsize>,
}

impl FakeUpstream {
    fn start(narinfos: HashMap<String, String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let (at_once, most_at_once) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (seen, most) = (requests.clone(), most_at_once.clone());
        let narinfos = Arc::new(narinfos);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (seen, at_once, most, narinfos) = (seen.clone(), at_once.clone(), most.clone(), narinfos.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    let path = line.split_whitespace().nth(1).unwrap_or_default().trim_start_matches('/').to_string();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                    }
                    let now = at_once.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    *seen.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    at_once.fetch_sub(1, Ordering::SeqCst);
                    let mut stream = stream;
                    let response = match narinfos.get(&path) {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/x-nix-narinfo\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                    };
                    let _ = stream.write_all(response.as_bytes());
                });
            }
        });
        Self { port, requests, most_at_once }
    }

    fn total_requests(&self) -> usize {
        self.requests.lock().unwrap().values().sum()
    }
}

fn fake_path(i: usize) -> StorePath {
    let hash: String = format!("{i:032}").chars().map(|c| if c == '0' { 'a' } else { c }).collect();
    StorePath::from_base_name(&format!("{hash}-fake-{i}")).unwrap()
}

fn narinfo_signed_by(path: &StorePath, key: &SecretKey) -> String {
    let nar_hash = NarHash::digest(path.base_name().as_bytes());
    let mut info = NarInfo {
        store_path: path.clone(),
        url: format!("nar/{}.nar", path.hash_part()),
        compression: "none".into(),
        file_hash: None,
        file_size: None,
        nar_hash,
        nar_size: 10,
        references: vec![],
        deriver: None,
        signatures: vec![],
        ca: None,
    };
    info.signatures.push(key.sign(&signing::fingerprint(path, &info.nar_hash, info.nar_size, &[])));
    info.render().unwrap()
}

#[test]
fn upstream_checks_run_in_parallel_are_remembered_and_need_a_valid_signature() {
    let trusted = SecretKey::generate("trusted-upstream-1");
    let stranger = SecretKey::generate("stranger-1");
    let paths: Vec<StorePath> = (1..=64).map(fake_path).collect();
    let narinfos = HashMap::from([
        (format!("{}.narinfo", paths[0].hash_part()), narinfo_signed_by(&paths[0], &trusted)),
        (format!("{}.narinfo", paths[1].hash_part()), narinfo_signed_by(&paths[1], &stranger)),
    ]);
    let fake = FakeUpstream::start(narinfos);

    let keys = Keys::generate("plan-1");
    let server = Server::start(Backend::Sqlite);
    server.admin(&["create-user", "admin", "--admin"]);
    let upstream_line = format!("http://127.0.0.1:{} {}", fake.port, trusted.public_key().to_text());
    server.admin(&["create-cache", "main", "--public-key", &keys.public, "--upstream", &upstream_line]);
    let token = server.admin(&["create-token", "admin", "--name", "ci"]);

    let plan = || -> Vec<String> {
        let request = serde_json::json!({
            "paths": paths.iter().map(|p| serde_json::json!({
                "store_path": p.full_path(),
                "nar_hash": NarHash::digest(p.base_name().as_bytes()).to_string(),
                "nar_size": 10,
            })).collect::<Vec<_>>(),
        });
        let response = reqwest::blocking::Client::new()
            .post(format!("{}/api/v1/caches/main/push-plan", server.url()))
            .bearer_auth(&token)
            .json(&request)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().unwrap();
        body["actions"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    let actions = plan();
    assert_eq!(actions[0], "upstream", "signed by the upstream's key");
    assert_eq!(actions[1], "upload", "a narinfo signed by another key does not count");
    assert!(actions[2..].iter().all(|a| a == "upload"));
    assert_eq!(fake.total_requests(), 64, "one request per path");
    assert!(fake.requests.lock().unwrap().values().all(|n| *n == 1));
    assert!(fake.most_at_once.load(Ordering::SeqCst) >= 8, "checks run in parallel, not one after another");

    // The answers are remembered: a second plan asks the upstream nothing.
    assert_eq!(plan(), actions);
    assert_eq!(fake.total_requests(), 64);
}
