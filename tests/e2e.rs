//! End to end with the real Nix client, on SQLite and on PostgreSQL: push with the CLI,
//! substitute with stock Nix, verify signatures; private caches; re-push uploads nothing.

#[macro_use]
mod support;

use support::{Backend, Cli, Closure, Keys, NixClient, Server, output_text};

on_full_matrix!(push_then_substitute_with_stock_nix, private_cache_needs_netrc, repush_uploads_nothing);

fn push_json(cli: &Cli, keys: &Keys, paths: &[&str]) -> serde_json::Value {
    let mut args = vec!["push", "main", "--key", keys.secret_path(), "--json"];
    args.extend_from_slice(paths);
    let out = cli.run(&args);
    assert!(out.status.success(), "push failed: {}", output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn push_then_substitute_with_stock_nix(backend: Backend) {
    let keys = Keys::generate("e2e-1");
    let closure = Closure::build("e2e");
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&server, &token);

    let summary = push_json(&cli, &keys, &[&closure.app]);
    assert_eq!(summary["pushed"], 2, "{summary}");
    assert_eq!(summary["failed"], 0);

    let nix = NixClient::new();
    let store = nix.store("copy");
    let out = nix.copy_from(&server.cache_url("main"), &store, &keys.public, &[&closure.app]);
    assert!(out.status.success(), "nix copy --from failed: {}", output_text(&out));
    let out = nix.verify(&store, &keys.public, &closure.app);
    assert!(out.status.success(), "nix store verify failed: {}", output_text(&out));
    // The substituted tree is the one that was built: executable, symlink, empty dir.
    let root = store.join(closure.app.trim_start_matches('/'));
    let app = root.join("bin/app");
    use std::os::unix::fs::PermissionsExt;
    assert!(std::fs::metadata(&app).unwrap().permissions().mode() & 0o100 != 0);
    assert_eq!(std::fs::read_link(root.join("share/link")).unwrap().to_str(), Some("../bin/app"));
    assert!(root.join("share/empty").is_dir());

    let realised = nix.store("realise");
    let out = nix.realise(&server.cache_url("main"), &realised, &keys.public, &closure.app);
    assert!(out.status.success(), "nix-store --realise failed: {}", output_text(&out));
    assert!(realised.join(closure.dep.trim_start_matches('/')).exists(), "the reference was substituted too");

    // A key the cache does not sign with is refused by Nix.
    let other = Keys::generate("other-1");
    let out = nix.copy_from(&server.cache_url("main"), &nix.store("untrusted"), &other.public, &[&closure.app]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("lacks a valid signature"), "{}", output_text(&out));
}

fn private_cache_needs_netrc(backend: Backend) {
    let keys = Keys::generate("private-1");
    let closure = Closure::build("private");
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    push_json(&cli, &keys, &[&closure.app]);

    // The protocol answers 401 with a Basic challenge, never 403 (Nix reads 403 as absent).
    for path in ["/api/nix/main/nix-cache-info", &format!("/api/nix/main/{}.narinfo", &closure.app[11..43])] {
        let response = server.get(path, None);
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Basic realm=\"hibernation\"");
        assert_eq!(server.get(path, Some("hib_wrong")).status(), 401);
        assert_eq!(server.get(path, Some(&token)).status(), 200);
    }

    let nix = NixClient::new();
    let anonymous = nix.store("anonymous");
    let out = nix.run(&[
        "nix",
        "copy",
        "--debug",
        "--from",
        &server.cache_url("main"),
        "--to",
        anonymous.to_str().unwrap(),
        &closure.app,
    ]);
    assert!(!out.status.success(), "substitution without credentials must fail");
    assert!(output_text(&out).contains("HTTP status = 401"), "{}", output_text(&out));
    assert!(!anonymous.join(closure.app.trim_start_matches('/')).exists());

    nix.write_netrc("127.0.0.1", &token);
    let store = nix.store("with-netrc");
    let out = nix.copy_from(&server.cache_url("main"), &store, &keys.public, &[&closure.app]);
    assert!(out.status.success(), "substitution with a netrc failed: {}", output_text(&out));
    let out = nix.verify(&store, &keys.public, &closure.app);
    assert!(out.status.success(), "{}", output_text(&out));
}

fn repush_uploads_nothing(backend: Backend) {
    let keys = Keys::generate("repush-1");
    let closure = Closure::build("repush");
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);

    let first = push_json(&cli, &keys, &[&closure.app]);
    assert_eq!(first["pushed"], 2);
    assert!(first["uploaded_bytes"].as_u64().unwrap() > 0);
    let files_before = server.stored_files();
    if let Some(s3) = &server.s3 {
        assert!(
            files_before.iter().all(|f| f.starts_with(s3.bucket_dir())),
            "NARs live in the bucket: {files_before:?}"
        );
        assert!(!files_before.is_empty());
    }

    let second = push_json(&cli, &keys, &[&closure.app]);
    assert_eq!(second["pushed"], 0, "{second}");
    assert_eq!(second["already_present"], 2);
    assert_eq!(second["uploaded_bytes"], 0);
    assert_eq!(server.stored_files(), files_before, "nothing new was stored");
}
