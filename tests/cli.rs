//! The `hibernation` CLI: login, stdin, --no-deps, and errors a person can act on.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use support::{Backend, Cli, Closure, Keys, Server, output_text};

#[test]
fn login_saves_a_private_config_and_whoami_reads_it() {
    let keys = Keys::generate("cli-1");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    let config = cli.dir.path().join("config.json");
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(saved["token"], token.as_str());
    assert!(cli.run_ok(&["whoami"]).contains("admin"));
}

#[test]
fn pushes_paths_from_stdin_and_signing_key_from_env() {
    let keys = Keys::generate("stdin-1");
    let closure = Closure::build("stdin");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    let mut child = cli
        .command(&["push", "main", "--stdin", "--json"])
        .env("HIBERNATION_SIGNING_KEY", std::fs::read_to_string(&keys.secret_file).unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{}\n\n", closure.app).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["pushed"], 2, "{summary}");
    for path in closure.paths() {
        let hash = &path[11..43];
        assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), Some(&token)).status(), 200);
    }
}

#[test]
fn no_deps_pushes_only_the_given_path() {
    let keys = Keys::generate("nodeps-1");
    let closure = Closure::build("nodeps");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    // The dependency alone works; the app alone is refused because its reference is missing.
    cli.run_ok(&["push", "main", "--no-deps", "--key", keys.secret_path(), &closure.dep]);
    let out = cli.run(&["push", "main", "--no-deps", "--key", keys.secret_path(), "--json", &closure.dep]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["pushed"].as_u64(), summary["already_present"].as_u64()), (Some(0), Some(1)));

    let other = Closure::build("nodeps-other");
    let out = cli.run(&["push", "main", "--no-deps", "--key", keys.secret_path(), &other.app]);
    assert!(!out.status.success(), "a path with a missing reference must fail");
    let text = output_text(&out);
    assert!(text.contains("references paths that are not in the cache yet") && text.contains(&other.dep), "{text}");
    assert_eq!(server.get(&format!("/api/nix/main/{}.narinfo", &other.app[11..43]), Some(&token)).status(), 404);
}

#[test]
fn errors_say_what_to_do() {
    let keys = Keys::generate("errors-1");
    let closure = Closure::build("errors");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();

    let out = cli.run(&["push", "main", "--key", keys.secret_path(), &closure.dep]);
    assert!(output_text(&out).contains("hibernation login"), "no URL yet: {}", output_text(&out));

    cli.login(&server, &token);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["push", "main", &closure.dep], "no signing key"),
        (vec!["push", "main", "--key", "/nonexistent/key", &closure.dep], "cannot read signing key"),
        (vec!["push", "main", "--key", keys.secret_path(), "/tmp"], "is not in the Nix store"),
        (vec!["push", "main", "--key", keys.secret_path(), "/nonexistent/x"], "does not exist"),
        (
            vec!["push", "main", "--key", keys.secret_path(), "/nix/store/00000000000000000000000000000000-missing"],
            "is not valid",
        ),
        (vec!["push", "main", "--key", keys.secret_path()], "nothing to push"),
        (vec!["push", "nope", "--key", keys.secret_path(), &closure.dep], "cache \"nope\" does not exist"),
        (vec!["--url", "http://127.0.0.1:1", "whoami"], "cannot reach the server"),
        (vec!["--url", "not a url", "whoami"], "invalid server URL"),
        (vec!["--token", "hib_wrong", "whoami"], "the server rejected the token"),
    ];
    for (args, expected) in cases {
        let out = cli.run(&args);
        assert!(!out.status.success(), "{args:?} must fail");
        let text = output_text(&out);
        assert!(text.contains(expected), "{args:?}: expected {expected:?} in {text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("error")).count(), 1, "one error line: {text}");
    }
    let bad_key = cli.dir.path().join("bad-key");
    std::fs::write(&bad_key, "not a key").unwrap();
    let out = cli.run(&["push", "main", "--key", bad_key.to_str().unwrap(), &closure.dep]);
    assert!(output_text(&out).contains("invalid signing key"), "{}", output_text(&out));
    // A server URL that is not Hibernation.
    let out = cli.run(&["--url", &format!("{}/api/nix/main", server.url()), "whoami"]);
    assert!(output_text(&out).contains("is not a Hibernation server"), "{}", output_text(&out));
}

#[test]
fn push_retries_transient_failures() {
    let keys = Keys::generate("retry-1");
    let closure = Closure::build("retry");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let proxy = support::FlakyProxy::start(server.port, 2);
    let cli = Cli::new();
    let out = cli.run(&[
        "--url",
        &proxy.url(),
        "--token",
        &token,
        "push",
        "main",
        "--key",
        keys.secret_path(),
        "--json",
        &closure.app,
    ]);
    assert!(out.status.success(), "{}", output_text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["pushed"], 2, "{summary}");
    assert_eq!(proxy.dropped.load(std::sync::atomic::Ordering::SeqCst), 2, "the first two connections failed");
}
