//! `hibernation watch-store` with the real Nix store: new builds reach the cache within
//! seconds, an outage is waited out, and SIGTERM stops it after the uploads in flight.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use support::nix::{nix, run_ok};
use support::{Backend, Cli, Closure, Keys, NixClient, Server, unique_tag, wait_until};

struct Watcher {
    child: Child,
    log: std::path::PathBuf,
}

impl Watcher {
    fn start(cli: &Cli, keys: &Keys) -> Self {
        let log = cli.dir.path().join("watch.log");
        let child = cli
            .command(&["watch-store", "main", "--key", keys.secret_path()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let watcher = Self { child, log };
        wait_until(Duration::from_secs(20), "the watcher to start", || watcher.log().contains("watching"));
        watcher
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status once it stopped.
    fn stop(self) -> (std::process::ExitStatus, String) {
        self.stop_with("TERM")
    }

    fn stop_with(mut self, signal: &str) -> (std::process::ExitStatus, String) {
        support::signal(&self.child, signal);
        let mut status = None;
        wait_until(Duration::from_secs(60), "the watcher to stop", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        (status.unwrap(), self.log())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn narinfo_status(server: &Server, token: &str, path: &str) -> u16 {
    server.get(&format!("/api/nix/main/{}.narinfo", &path[11..43]), Some(token)).status().as_u16()
}

#[test]
fn pushes_a_path_built_after_it_started_and_nix_substitutes_it() {
    let keys = Keys::generate("watch-1");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    let watcher = Watcher::start(&cli, &keys);

    let closure = Closure::build(&unique_tag("watch"));
    wait_until(Duration::from_secs(30), "the build to reach the cache", || {
        closure.paths().iter().all(|p| narinfo_status(&server, &token, p) == 200)
    });

    let client = NixClient::new();
    client.write_netrc("127.0.0.1", &token);
    let store = client.store("substituted");
    let out = client.realise(&server.cache_url("main"), &store, &keys.public, &closure.app);
    assert!(out.status.success(), "{}", support::output_text(&out));
    assert!(store.join(&closure.app[1..]).join("bin/app").exists(), "substituted from the cache");

    let (status, log) = watcher.stop();
    assert!(status.success(), "clean exit on SIGTERM: {log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains(".drv"), "derivations are not pushed: {log}");
}

#[test]
fn waits_out_a_server_outage() {
    let keys = Keys::generate("watch-2");
    let mut server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    let watcher = Watcher::start(&cli, &keys);

    server.stop();
    let closure = Closure::build(&unique_tag("outage"));
    wait_until(Duration::from_secs(30), "the watcher to notice the outage", || {
        watcher.log().contains("cannot reach the server")
    });
    server.resume();
    wait_until(Duration::from_secs(60), "the queued paths to be pushed after the outage", || {
        closure.paths().iter().all(|p| narinfo_status(&server, &token, p) == 200)
    });
    let (status, log) = watcher.stop_with("INT");
    assert!(status.success(), "Ctrl-C stops it cleanly too: {log}");
    assert!(log.contains("stopped"), "{log}");
}

/// A path big enough that its upload is still running when SIGTERM arrives.
fn build_big_path(tag: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.nix");
    std::fs::write(
        &file,
        format!(
            r#"derivation {{ name = "big-{tag}"; system = builtins.currentSystem; builder = "/bin/sh";
  args = ["-c" "/usr/bin/head -c 100000000 /dev/urandom > $out"]; }}"#
        ),
    )
    .unwrap();
    run_ok(nix(&["nix-build", "--no-out-link", file.to_str().unwrap()]))
}

#[test]
fn sigterm_finishes_the_upload_in_flight() {
    let keys = Keys::generate("watch-3");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    let watcher = Watcher::start(&cli, &keys);

    let big = build_big_path(&unique_tag("inflight"));
    // Other tests build in parallel; wait for the batch with this path.
    wait_until(Duration::from_secs(30), "the upload to start", || {
        watcher.log().lines().any(|l| l.starts_with("pushing") && l.contains(&big))
    });
    let (status, log) = watcher.stop();
    assert!(status.success(), "{log}");
    assert_eq!(narinfo_status(&server, &token, &big), 200, "the upload in flight was finished: {log}");
    assert!(log.contains(&format!("pushed {big}")), "{log}");
}

#[test]
fn a_revoked_token_stops_the_watcher_with_a_clear_error() {
    let keys = Keys::generate("watch-4");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    let mut watcher = Watcher::start(&cli, &keys);
    server.admin(&["revoke-token", "admin", "--name", "ci"]);
    // Revoked through another process (the admin command): refused within a second.
    wait_until(Duration::from_secs(7), "the server refuses the revoked token", || {
        server.get("/api/v1/whoami", Some(&token)).status() == 401
    });
    let closure = Closure::build(&unique_tag("revoked"));
    let mut status = None;
    wait_until(Duration::from_secs(30), "the watcher to give up", || {
        status = watcher.child.try_wait().unwrap();
        status.is_some()
    });
    let log = watcher.log();
    assert!(!status.unwrap().success(), "{log}");
    assert!(log.contains("error: the server rejected the token: the token was revoked"), "{log}");
    let fresh = server.admin(&["create-token", "admin", "--name", "check"]);
    assert_eq!(narinfo_status(&server, &fresh, &closure.app), 404, "nothing was stored");
}
