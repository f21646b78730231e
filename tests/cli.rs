//! The `hibernation` CLI: login, stdin, --no-deps, and errors a person can act on.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

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
    let out = cli.run(&["cache", "info", "nope"]);
    assert!(output_text(&out).contains("cache \"nope\" does not exist"), "{}", output_text(&out));
    // A revoked token says so, on every command: within a second when revoked through
    // another process, as the admin command is.
    server.admin(&["revoke-token", "admin", "--name", "ci"]);
    support::wait_until(Duration::from_secs(7), "the server refuses the revoked token", || {
        !cli.run(&["whoami"]).status.success()
    });
    for args in [vec!["whoami"], vec!["push", "main", "--key", keys.secret_path(), &closure.dep], vec!["cache", "list"]]
    {
        let out = cli.run(&args);
        let text = output_text(&out);
        assert!(!out.status.success() && text.contains("the token was revoked"), "{args:?}: {text}");
        assert_eq!(text.lines().filter(|l| l.starts_with("error")).count(), 1, "one error line: {text}");
    }
}

#[test]
fn every_command_has_help_and_shell_completions() {
    let cli = Cli::new();
    let commands: [&[&str]; 10] = [
        &[],
        &["login"],
        &["whoami"],
        &["push"],
        &["watch-store"],
        &["use"],
        &["cache"],
        &["cache", "list"],
        &["cache", "info"],
        &["completions"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let text = cli.run_ok(&args);
        assert!(text.contains("Usage: hibernation"), "{args:?}: {text}");
        let about = text.lines().next().unwrap_or_default();
        assert!(about.len() > 10 && !about.starts_with("Usage"), "{args:?} explains itself: {text}");
    }
    let bash = cli.run_ok(&["completions", "bash"]);
    for word in ["watch-store", "push", "use", "cache", "--no-deps", "--force"] {
        assert!(bash.contains(word), "bash completion knows {word}");
    }
    for shell in ["zsh", "fish"] {
        assert!(cli.run_ok(&["completions", shell]).contains("watch-store"), "{shell}");
    }
    let out = cli.run(&["completions", "tcsh"]);
    assert!(!out.status.success() && output_text(&out).contains("possible values"), "{}", output_text(&out));
}

#[test]
fn cache_list_and_info_show_what_the_caller_can_use() {
    let keys = Keys::generate("list-1");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    server.admin(&["create-cache", "open", "--public", "--public-key", &keys.public]);
    server.admin(&["create-user", "reader"]);
    server.admin(&["grant", "reader", "main"]);
    let reader_token = server.admin(&["create-token", "reader", "--name", "laptop"]);
    let cli = Cli::new();
    cli.login(&server, &reader_token);
    let list = cli.run_ok(&["cache", "list"]);
    assert!(list.contains("main") && list.contains("private") && list.contains("read"), "{list}");
    assert!(list.contains("open") && list.contains("public"), "{list}");
    let info: serde_json::Value = serde_json::from_str(&cli.run_ok(&["cache", "info", "main", "--json"])).unwrap();
    assert_eq!(info["substituter"], server.cache_url("main"));
    assert_eq!(info["public_keys"][0], keys.public.as_str());
    assert_eq!(info["can_push"], false);
    assert_eq!(info["upstreams"], serde_json::json!([]), "created with --no-upstream");
    let open: serde_json::Value = serde_json::from_str(&cli.run_ok(&["cache", "info", "open", "--json"])).unwrap();
    assert_eq!(open["upstreams"][0]["url"], "https://cache.nixos.org", "the default upstream");
    let text = cli.run_ok(&["cache", "info", "main"]);
    assert!(text.contains(&server.cache_url("main")) && text.contains("read"), "{text}");
    // Anonymous callers see public caches only.
    let anonymous = Cli::new().run_ok(&["--url", &server.url(), "cache", "list"]);
    assert!(anonymous.contains("open") && !anonymous.contains("main"), "{anonymous}");
    let _ = token;
}

#[test]
fn use_makes_nix_substitute_from_a_private_cache_and_is_idempotent() {
    let keys = Keys::generate("use-1");
    let closure = Closure::build("use");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);

    let home = tempfile::tempdir().unwrap();
    let use_main = || {
        let out = cli.command(&["use", "main"]).env("XDG_CONFIG_HOME", home.path()).output().unwrap();
        assert!(out.status.success(), "{}", output_text(&out));
        output_text(&out)
    };
    assert!(use_main().contains("now uses main"));
    let conf_path = home.path().join("nix/nix.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let netrc_path = home.path().join("nix/netrc");
    assert!(conf.contains(&format!("extra-substituters = {}", server.cache_url("main"))), "{conf}");
    assert!(conf.contains(&format!("extra-trusted-public-keys = {}", keys.public)), "{conf}");
    assert!(conf.contains(&format!("netrc-file = {}", netrc_path.display())), "{conf}");
    assert!(
        std::fs::read_to_string(&netrc_path)
            .unwrap()
            .contains(&format!("machine 127.0.0.1 login hibernation password {token}"))
    );
    assert_eq!(std::fs::metadata(&netrc_path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(use_main().contains("already uses main"));
    assert_eq!(std::fs::read_to_string(&conf_path).unwrap(), conf, "running it again changes nothing");

    // Nix, with no other configuration, now substitutes from the cache.
    let system_conf = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let out = std::process::Command::new("nix-store")
        .args(["--store", store.to_str().unwrap(), "--realise", &closure.app])
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_CACHE_HOME", home.path().join("cache"))
        .env("NIX_CONF_DIR", system_conf.path())
        .env("NIX_CONFIG", "experimental-features = nix-command")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(store.join(&closure.app[1..]).join("bin/app").exists());

    // Where it cannot write, it prints the lines to add and fails.
    let out = cli.run(&["use", "main", "--nix-conf", "/proc/hibernation/nix.conf"]);
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("cannot write") && text.contains("extra-substituters"), "{text}");
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
