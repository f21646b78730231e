//! Prometheus metrics: the exposition passes `promtool check metrics`, cache counters move
//! with a push, a substitution, a miss and a rejected upload, requests are labelled by route
//! template, the exposition is only for an administrator on the main port, and evictions,
//! garbage collection and fsck are counted.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Backend, Cli, Closure, Keys, NixClient, RawUpload, Server, free_port, output_text};

/// The value of the series named `name` whose labels include every one of `labels`.
fn value(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn promtool_check(exposition: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (apt package prometheus)");
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool check metrics: {}\n{exposition}", output_text(&out));
}

#[test]
fn cache_counters_move_with_pushes_substitutions_and_rejections() {
    let keys = Keys::generate("metrics-1");
    let stranger = Keys::generate("stranger-1");
    let closure = Closure::build("metrics");
    let metrics_port = free_port();
    let port_text = metrics_port.to_string();
    let server = Server::builder(Backend::Sqlite)
        .env(&[("METRICS_ENABLED", "true"), ("METRICS_NAME", "team-cache"), ("METRICS_PORT", &port_text)])
        .start();
    let token = server.bootstrap(&keys, false);
    let scrape = || reqwest::blocking::get(format!("http://127.0.0.1:{metrics_port}/metrics")).unwrap().text().unwrap();
    let before = scrape();
    promtool_check(&before);

    let cli = Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    let client = NixClient::new();
    client.write_netrc("127.0.0.1", &token);
    let out = client.realise(&server.cache_url("main"), &client.store("s"), &keys.public, &closure.app);
    assert!(out.status.success(), "{}", output_text(&out));
    let missing = "/api/nix/main/00000000000000000000000000000000.narinfo";
    assert_eq!(server.get(missing, Some(&token)).status(), 404);
    let other = Closure::build("metrics-rejected");
    let forged = RawUpload::of(&other.dep, stranger.secret_path());
    assert_eq!(forged.send(&server, "main", &token, forged.compressed()).status(), 422);

    // Names a caller makes up never become labels: a cache that does not exist, a method.
    let made_up = reqwest::blocking::Client::new()
        .put(format!("{}/api/nix/madeupcache/nar/notanar", server.url()))
        .bearer_auth(&token)
        .body("x")
        .send()
        .unwrap();
    assert!(made_up.status().is_client_error());
    let odd_method = reqwest::Method::from_bytes(b"FROBNICATE").unwrap();
    reqwest::blocking::Client::new().request(odd_method, format!("{}/", server.url())).send().unwrap();

    let after = scrape();
    promtool_check(&after);
    assert!(!after.contains("madeupcache") && !after.contains("FROBNICATE"), "{after}");
    assert!(value(&after, "hibernation_http_requests_total", &["method=\"other\""]).is_some());
    let unknown_cache = ["cache=\"\"", "reason=\"cache_not_found\""];
    assert!(value(&after, "hibernation_cache_rejected_uploads_total", &unknown_cache).is_some(), "{after}");
    let cache = "cache=\"main\"";
    let service = "service_name=\"team-cache\"";
    assert_eq!(value(&after, "hibernation_cache_pushes_total", &[cache, service]), Some(2.0), "{after}");
    let received = value(&after, "hibernation_cache_received_bytes_total", &[cache]).unwrap();
    assert!(received > 100.0, "{received}");
    assert!(value(&after, "hibernation_cache_narinfo_hits_total", &[cache]).unwrap() >= 2.0);
    assert!(value(&after, "hibernation_cache_narinfo_misses_total", &[cache]).unwrap() >= 1.0);
    assert!(value(&after, "hibernation_cache_nar_served_bytes_total", &[cache]).unwrap() > 100.0);
    assert_eq!(
        value(&after, "hibernation_cache_rejected_uploads_total", &[cache, "reason=\"bad_signature\""]),
        Some(1.0)
    );
    assert_eq!(value(&after, "hibernation_cache_paths", &[cache]), Some(2.0));
    assert!(value(&after, "hibernation_cache_stored_bytes", &[cache]).unwrap() >= received);
    assert!(value(&after, "hibernation_dedup_saved_bytes", &[service]).is_some());

    // Requests are labelled by route template, never by the raw path.
    let narinfo_route = "route=\"/api/nix/:cache/:file\"";
    assert!(value(&after, "hibernation_http_requests_total", &[narinfo_route, "status=\"404\""]).unwrap() >= 1.0);
    assert!(
        value(&after, "hibernation_http_requests_total", &["route=\"/api/v1/caches/:cache/paths/:hash\""]).is_some()
    );
    assert!(!after.contains("00000000000000000000000000000000"), "no raw paths in labels");
    assert!(!after.contains(&closure.app[11..43]), "no store path hashes in labels");
    grafana_queries_use_only_exported_metrics(&after);
}

/// Every metric the Grafana dashboard in the repository queries is one the server exports.
fn grafana_queries_use_only_exported_metrics(exposition: &str) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/hibernation-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("hibernation_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                queried.push(name);
            }
        }
    }
    assert!(queried.len() >= 10, "{queried:?}");
    for name in queried {
        assert!(
            exposition.lines().any(|l| l.starts_with(&format!("{name}{{"))),
            "the dashboard queries {name}, which is not exported"
        );
    }
}

#[test]
fn on_the_main_port_metrics_need_an_administrator() {
    let keys = Keys::generate("metrics-2");
    let server = Server::builder(Backend::Sqlite).env(&[("METRICS_ENABLED", "true")]).start();
    let token = server.bootstrap(&keys, false);
    server.admin(&["create-user", "reader"]);
    server.admin(&["grant", "reader", "main"]);
    let reader = server.admin(&["create-token", "reader", "--name", "laptop"]);
    assert_eq!(server.get("/metrics", None).status(), 401);
    assert_eq!(server.get("/metrics", Some(&reader)).status(), 403);
    // Metrics name every cache: an administrator's token narrowed to one cache, or to reading,
    // does not read them.
    let scoped = server.admin(&["create-token", "admin", "--name", "main-only", "--cache", "main"]);
    let read_only = server.admin(&["create-token", "admin", "--name", "reads", "--read-only"]);
    assert_eq!(server.get("/metrics", Some(&scoped)).status(), 403);
    assert_eq!(server.get("/metrics", Some(&read_only)).status(), 403);
    let response = server.get("/metrics", Some(&token));
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().unwrap();
    promtool_check(&text);
    assert!(text.contains("service_name=\"hibernation\""), "METRICS_NAME defaults to hibernation");

    let off = Server::start(Backend::Sqlite);
    assert_eq!(off.get("/metrics", None).status(), 404, "off unless METRICS_ENABLED");
}

#[test]
fn evictions_collections_and_fsck_are_measured() {
    let keys = Keys::generate("metrics-2");
    let metrics_port = free_port();
    let port_text = metrics_port.to_string();
    let server = Server::builder(Backend::Sqlite)
        .env(&[
            ("METRICS_ENABLED", "true"),
            ("METRICS_PORT", &port_text),
            ("GC_INTERVAL", "1s"),
            ("GC_GRACE", "0s"),
            ("EVICTION_MIN_AGE", "0s"),
        ])
        .start();
    let token = server.bootstrap(&keys, true);
    let scrape = || reqwest::blocking::get(format!("http://127.0.0.1:{metrics_port}/metrics")).unwrap().text().unwrap();
    let cli = Cli::new();
    cli.login(&server, &token);
    let [a, b] = ["a", "b"].map(|n| Closure::build(&format!("metrics-lifecycle-{n}")));
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &a.app]);
    // Room for one closure and a half: pushing the second evicts the first one whole, its
    // top-level path and the dependency only it needs (two paths).
    let info: serde_json::Value = server.get("/api/v1/caches/main", Some(&token)).json().unwrap();
    let one = info["stored_bytes"].as_i64().unwrap();
    let quota = format!("{:.12}", (one * 3 / 2) as f64 / (1u64 << 30) as f64);
    server.admin(&["update-cache", "main", "--quota-gib", &quota, "--quota-policy", "lru"]);
    std::thread::sleep(std::time::Duration::from_secs(5)); // the server's cached cache row expires
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &b.app]);
    let cache = "cache=\"main\"";
    support::wait_until(std::time::Duration::from_secs(20), "a background collection of the evicted NARs", || {
        value(&scrape(), "hibernation_gc_deleted_objects_total", &["what=\"nar\""]).unwrap_or(0.0) >= 2.0
    });
    let after = scrape();
    promtool_check(&after);
    assert_eq!(value(&after, "hibernation_cache_reclaimed_paths_total", &[cache, "kind=\"eviction\""]), Some(2.0));
    assert!(value(&after, "hibernation_cache_reclaimed_bytes_total", &[cache, "kind=\"eviction\""]).unwrap() > 0.0);
    assert!(value(&after, "hibernation_gc_runs_total", &[]).unwrap() >= 1.0);
    assert!(value(&after, "hibernation_gc_deleted_bytes_total", &[]).unwrap() > 0.0);
    // An fsck run by an administrator shows up in the next scrape.
    assert_eq!(value(&after, "hibernation_fsck_findings", &[]), None);
    let fsck = server.command(Some(&["admin", "fsck"])).output().unwrap();
    assert!(fsck.status.success(), "{}", output_text(&fsck));
    let after = scrape();
    assert_eq!(value(&after, "hibernation_fsck_findings", &[]), Some(0.0));
    assert!(value(&after, "hibernation_fsck_last_run_timestamp_seconds", &[]).unwrap() > 1.7e9);
}
