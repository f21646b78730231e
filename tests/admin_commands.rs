//! `hibernation-server admin ...` keeps the dashboard's rules (they go through the same
//! services): bad input gets a clear error and stores nothing, and what the commands create
//! works over HTTP at once.

mod support;

use std::io::Write;
use std::time::Duration;

use support::{Backend, Keys, Server, output_text};

/// Runs `admin <args>` (with `stdin` on its standard input), expects it to fail, and returns
/// what it said.
fn refused(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let mut full = vec!["admin"];
    full.extend_from_slice(args);
    let mut command = server.command(Some(&full));
    command.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    command.stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    if let Some(text) = stdin {
        writeln!(child.stdin.take().unwrap(), "{text}").unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "admin {args:?} should fail: {}", output_text(&out));
    output_text(&out)
}

fn assert_says(text: &str, expected: &str) {
    assert!(text.contains(expected), "expected {expected:?} in {text:?}");
}

#[test]
fn users_and_tokens_from_the_host_keep_the_dashboards_rules() {
    let server = Server::start(Backend::Sqlite);
    server.admin(&["create-user", "admin", "--admin"]);
    server.admin(&["create-cache", "main"]);
    let admin_token = server.admin(&["create-token", "admin", "--name", "ci"]);

    // Users: the login, name, email and password rules, and nothing stored when refused.
    assert_says(&refused(&server, &["create-user", "has space"], None), "a login is 1 to 254 characters");
    assert_says(&refused(&server, &["create-user", "dave", "--name", "a\u{7}b"], None), "cannot contain line breaks");
    let email = ["create-user", "carol", "--email", "not-an-address", "--password-stdin"];
    assert_says(&refused(&server, &email, Some("a long password")), "Enter a valid email address.");
    let short = ["create-user", "carol", "--email", "carol@example.com", "--password-stdin"];
    assert_says(&refused(&server, &short, Some("short")), "at least 8 characters");
    for login in ["has space", "dave", "carol"] {
        let missing = refused(&server, &["create-token", login, "--name", "t"], None);
        assert_says(&missing, &format!("user {login:?} does not exist"));
    }
    server.admin(&["create-user", "bob"]);
    assert_says(
        &refused(&server, &["create-user", "bob"], None),
        "user \"bob\" (or that name or email address) already exists",
    );

    // Tokens: the name rule, the user and caches must exist, one name per user.
    assert_says(
        &refused(&server, &["create-token", "bob", "--name", " "], None),
        "Enter a name of 1 to 100 characters.",
    );
    let scoped = ["create-token", "bob", "--name", "t", "--cache", "main", "--cache", "nope"];
    assert_says(&refused(&server, &scoped, None), "cache \"nope\" does not exist");
    assert_says(
        &refused(&server, &["revoke-token", "bob", "--name", "t"], None),
        "user \"bob\" has no token named \"t\"",
    );
    assert_says(&refused(&server, &["revoke-token", "nobody", "--name", "t"], None), "user \"nobody\" does not exist");
    server.admin(&["grant", "bob", "main"]);
    let token = server.admin(&["create-token", "bob", "--name", "t", "--cache", "main", "--read-only"]);
    assert_says(&refused(&server, &["create-token", "bob", "--name", "t"], None), "already has a token named \"t\"");
    assert_eq!(server.get("/api/nix/main/nix-cache-info", Some(&token)).status(), 200);
    // Revoked through another process (this command), it is refused within a second.
    server.admin(&["revoke-token", "bob", "--name", "t"]);
    support::wait_until(Duration::from_secs(7), "the server refuses the revoked token", || {
        server.get("/api/nix/main/nix-cache-info", Some(&token)).status() == 401
    });
    assert_eq!(server.get("/api/nix/main/nix-cache-info", Some(&admin_token)).status(), 200);
}

#[test]
fn caches_from_the_host_keep_the_dashboards_rules() {
    let server = Server::start(Backend::Sqlite);
    server.admin(&["create-user", "admin", "--admin"]);
    let token = server.admin(&["create-token", "admin", "--name", "ci"]);
    let keys = Keys::generate("admin-commands-1");
    assert_says(&refused(&server, &["create-cache", "Bad Name"], None), "cache name");
    assert_says(&refused(&server, &["create-cache", "main", "--public-key", "garbage"], None), "Invalid public key");
    server.admin(&["create-cache", "main", "--no-upstream"]);
    assert_says(&refused(&server, &["create-cache", "main"], None), "a cache named \"main\" exists");

    assert_says(&refused(&server, &["add-key", "main", "garbage"], None), "Invalid public key garbage");
    assert_says(&refused(&server, &["add-key", "main", " "], None), "Give a public key");
    assert_says(&refused(&server, &["add-key", "nope", &keys.public], None), "cache \"nope\" does not exist");
    server.admin(&["add-key", "main", &keys.public]);
    assert_says(&refused(&server, &["add-key", "main", &keys.public], None), "cache \"main\" already has this key");
    let info: serde_json::Value = server.get("/api/v1/caches/main", Some(&token)).json().unwrap();
    assert_eq!(info["public_keys"], serde_json::json!([keys.public]), "one key, stored once");

    let update = ["update-cache", "nope", "--quota-gib", "1"];
    assert_says(&refused(&server, &update, None), "cache \"nope\" does not exist");
    let retention = ["update-cache", "main", "--retention", "0s"];
    assert_says(&refused(&server, &retention, None), "--retention must be above zero");
    assert_says(&refused(&server, &["update-cache", "main", "--quota-gib", "lots"], None), "GiB");
    let info: serde_json::Value = server.get("/api/v1/caches/main", Some(&token)).json().unwrap();
    assert_eq!(info["quota_bytes"], serde_json::Value::Null, "nothing refused was saved");
    server.admin(&["update-cache", "main", "--quota-gib", "2"]);
    let info: serde_json::Value = server.get("/api/v1/caches/main", Some(&token)).json().unwrap();
    assert_eq!(info["quota_bytes"], serde_json::json!(2u64 << 30));

    assert_says(&refused(&server, &["fsck", "--cache", "nope"], None), "cache \"nope\" does not exist");
    assert_says(&refused(&server, &["untrust", "main", "7"], None), "cache \"main\" has no rule 7");
}
