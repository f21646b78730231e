//! Bad pushes get a clear error, and nothing becomes visible or stays stored.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::{Backend, Cli, Closure, Keys, RawUpload, Server, error_of, output_text};

on_every_backend!(
    rejected_uploads_leave_nothing_behind,
    tokens_are_checked,
    token_scopes_limit_caches_and_pushing,
    nars_are_attached_only_with_proof_of_possession
);

struct Setup {
    server: Server,
    keys: Keys,
    closure: Closure,
    token: String,
}

fn setup(backend: Backend, tag: &str) -> Setup {
    let keys = Keys::generate("reject-1");
    let closure = Closure::build(tag);
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, false);
    Setup { server, keys, closure, token }
}

impl Setup {
    fn assert_not_visible(&self, upload: &RawUpload) {
        let response = self.server.get(&format!("/api/nix/main/{}.narinfo", upload.hash_part()), Some(&self.token));
        assert_eq!(response.status(), 404, "{} must not be visible", upload.info.store_path);
        let stored = self.server.stored_files();
        assert!(stored.iter().all(|f| !f.to_string_lossy().contains("/nar/")), "no NAR may be stored: {stored:?}");
        assert!(stored.is_empty(), "no partial upload may be left: {stored:?}");
    }

    fn expect_rejection(&self, upload: &RawUpload, body: Vec<u8>, status: u16, message: &str) {
        let (got, error) = error_of(upload.send(&self.server, "main", &self.token, body));
        assert_eq!(got, status, "{error}");
        assert!(error.contains(message), "expected {message:?} in {error:?}");
        self.assert_not_visible(upload);
    }
}

fn rejected_uploads_leave_nothing_behind(backend: Backend) {
    let s = setup(backend, "reject");
    let dep = RawUpload::of(&s.closure.dep, s.keys.secret_path());

    // NarHash that does not match the bytes (validly signed, so only the NAR check can catch it).
    let mut wrong_hash = RawUpload::of(&s.closure.dep, s.keys.secret_path());
    wrong_hash.info.nar_hash = hibernation::nix::NarHash::digest(b"something else");
    wrong_hash.resign(s.keys.secret_path());
    s.expect_rejection(&wrong_hash, dep.compressed(), 422, "NarHash is");

    // NarSize smaller than the NAR.
    let mut wrong_size = RawUpload::of(&s.closure.dep, s.keys.secret_path());
    wrong_size.info.nar_size -= 8;
    wrong_size.resign(s.keys.secret_path());
    s.expect_rejection(&wrong_size, dep.compressed(), 422, "larger than its declared NarSize");

    // A truncated NAR, a malformed NAR, a body that is not zstd, trailing garbage.
    let truncated = zstd::encode_all(&dep.nar[..dep.nar.len() / 2], 3).unwrap();
    s.expect_rejection(&dep, truncated, 422, "ended");
    let mut unsorted = dep.nar.clone();
    let pos = unsorted.windows(13).position(|w| w == b"nix-archive-1").unwrap();
    unsorted[pos + 12] = b'2';
    s.expect_rejection(&dep, zstd::encode_all(unsorted.as_slice(), 3).unwrap(), 422, "malformed");
    s.expect_rejection(&dep, b"definitely not zstd".to_vec(), 422, "not a valid compressed stream");
    let mut trailing = dep.compressed();
    trailing.extend_from_slice(&zstd::encode_all(&b"extra"[..], 3).unwrap());
    s.expect_rejection(&dep, trailing, 422, "");

    // A CA that would inject narinfo lines (signatures do not cover CA), and one that is not
    // a content address at all.
    let mut injected = RawUpload::of(&s.closure.dep, s.keys.secret_path());
    injected.info.ca = Some(format!(
        "fixed:r:sha256:{}\nURL: nar/evil.nar\nSig: evil:AAAA",
        hibernation::nix::NarHash::digest(b"x").to_nix32()
    ));
    s.expect_rejection(&injected, dep.compressed(), 400, "is not a Nix content address");
    injected.info.ca = Some("sha256:whatever".into());
    s.expect_rejection(&injected, dep.compressed(), 400, "must start with text: or fixed:");

    // Signed with a key the cache does not trust.
    let stranger = Keys::generate("stranger-1");
    let foreign = RawUpload::of(&s.closure.dep, stranger.secret_path());
    s.expect_rejection(&foreign, foreign.compressed(), 422, "no signature");

    // A reference that is not in the cache yet.
    let app = RawUpload::of(&s.closure.app, s.keys.secret_path());
    s.expect_rejection(&app, app.compressed(), 409, "references paths that are not in the cache");

    // Invalid cache names.
    let (status, error) = error_of(dep.send(&s.server, "Bad_Name", &s.token, dep.compressed()));
    assert_eq!(status, 400);
    assert!(error.contains("invalid cache name"), "{error}");
    let cli = Cli::new();
    cli.login(&s.server, &s.token);
    let out = cli.run(&["push", "Bad_Name", "--key", s.keys.secret_path(), &s.closure.dep]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("invalid cache name \"Bad_Name\""), "{}", output_text(&out));

    // The connection drops in the middle of the body.
    let body = dep.compressed();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", s.server.port)).unwrap();
    let head = format!(
        "PUT /api/v1/caches/main/paths/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n{}: {}\r\nContent-Length: {}\r\n\r\n",
        dep.hash_part(),
        s.token,
        hibernation::api::PATH_INFO_HEADER,
        dep.header(),
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!reply.starts_with("HTTP/1.1 200"), "{reply}");
    s.assert_not_visible(&dep);

    // After all that, the real upload still works.
    let response = dep.send(&s.server, "main", &s.token, dep.compressed());
    assert_eq!(response.status(), 200);
    assert_eq!(s.server.get(&format!("/api/nix/main/{}.narinfo", dep.hash_part()), Some(&s.token)).status(), 200);
}

fn tokens_are_checked(backend: Backend) {
    let s = setup(backend, "tokens");
    let dep = RawUpload::of(&s.closure.dep, s.keys.secret_path());
    for bad in ["hib_not_a_real_token", ""] {
        let (status, error) = error_of(dep.send(&s.server, "main", bad, dep.compressed()));
        assert_eq!(status, 401, "{error}");
    }
    s.assert_not_visible(&dep);

    s.server.admin(&["create-user", "temp"]);
    s.server.admin(&["grant", "temp", "main", "--push"]);
    let short = s.server.admin(&["create-token", "temp", "--name", "short", "--expires-in", "1s"]);
    let revoked = s.server.admin(&["create-token", "temp", "--name", "gone"]);
    s.server.admin(&["revoke-token", "temp", "--name", "gone"]);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, error) = error_of(dep.send(&s.server, "main", &short, dep.compressed()));
    assert_eq!((status, error.contains("expired")), (401, true), "{error}");
    let (status, error) = error_of(dep.send(&s.server, "main", &revoked, dep.compressed()));
    assert_eq!((status, error.contains("revoked")), (401, true), "{error}");
    // A revoked token no longer reads the private cache either.
    assert_eq!(s.server.get("/api/nix/main/nix-cache-info", Some(&revoked)).status(), 401);
    // The server remembers tokens for a few seconds (ACCESS_TTL), yet one stops at its expiry.
    let brief = s.server.admin(&["create-token", "temp", "--name", "brief", "--expires-in", "3s"]);
    assert_eq!(s.server.get("/api/nix/main/nix-cache-info", Some(&brief)).status(), 200);
    std::thread::sleep(Duration::from_millis(3300));
    assert_eq!(s.server.get("/api/nix/main/nix-cache-info", Some(&brief)).status(), 401);

    // Read access is not push access.
    s.server.admin(&["create-user", "reader"]);
    s.server.admin(&["grant", "reader", "main"]);
    let reader = s.server.admin(&["create-token", "reader", "--name", "r"]);
    let (status, error) = error_of(dep.send(&s.server, "main", &reader, dep.compressed()));
    assert_eq!(status, 403, "{error}");
    assert_eq!(s.server.get("/api/nix/main/nix-cache-info", Some(&reader)).status(), 200);
    s.assert_not_visible(&dep);

    // The CLI says what went wrong with a bad token.
    let cli = Cli::new();
    let out = cli.run(&["login", &s.server.url(), "--token", "hib_wrong"]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("the server rejected the token"), "{}", output_text(&out));
}

fn nars_are_attached_only_with_proof_of_possession(backend: Backend) {
    let s = setup(backend, "possession");
    let admin = Cli::new();
    admin.login(&s.server, &s.token);
    admin.run_ok(&["push", "main", "--key", s.keys.secret_path(), &s.closure.app]);
    let nars_before = s.server.stored_files();
    assert_eq!(nars_before.len(), 4, "two NARs and their listings: {nars_before:?}");

    // Bob may push to "other" but cannot read "main": he must upload the NAR himself.
    s.server.admin(&["create-cache", "other", "--public-key", &s.keys.public]);
    s.server.admin(&["create-user", "bob"]);
    s.server.admin(&["grant", "bob", "other", "--push"]);
    let bob = s.server.admin(&["create-token", "bob", "--name", "b"]);
    let dep = RawUpload::of(&s.closure.dep, s.keys.secret_path());
    let plan: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/caches/other/push-plan", s.server.url()))
        .bearer_auth(&bob)
        .json(&serde_json::json!({"paths": [{"store_path": dep.info.store_path, "nar_hash": dep.info.nar_hash, "nar_size": dep.info.nar_size}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(plan["actions"], serde_json::json!(["upload"]));
    let (status, error) = error_of(dep.send(&s.server, "other", &bob, Vec::new()));
    assert_eq!(status, 409, "{error}");
    assert!(error.contains("must be uploaded"), "{error}");
    assert_eq!(s.server.get(&format!("/api/nix/other/{}.narinfo", dep.hash_part()), Some(&bob)).status(), 404);

    // With the bytes he succeeds, and the NAR is still stored once.
    assert_eq!(dep.send(&s.server, "other", &bob, dep.compressed()).status(), 200);
    assert_eq!(s.server.get(&format!("/api/nix/other/{}.narinfo", dep.hash_part()), Some(&bob)).status(), 200);
    assert_eq!(s.server.stored_files(), nars_before, "the duplicate upload was not kept");

    // The administrator can read "main", so her push to a third cache uploads nothing.
    s.server.admin(&["create-cache", "third", "--public-key", &s.keys.public]);
    let out = admin.run_ok(&["push", "third", "--key", s.keys.secret_path(), "--json", &s.closure.app]);
    let summary: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(summary["attached"], 2, "{summary}");
    assert_eq!(summary["uploaded_bytes"], 0);
    assert_eq!(s.server.stored_files(), nars_before);
}

fn token_scopes_limit_caches_and_pushing(backend: Backend) {
    let s = setup(backend, "scopes");
    s.server.admin(&["create-cache", "other", "--public-key", &s.keys.public]);
    let only_main = s.server.admin(&["create-token", "admin", "--name", "only-main", "--cache", "main"]);
    let read_only = s.server.admin(&["create-token", "admin", "--name", "reader", "--read-only"]);
    let dep = RawUpload::of(&s.closure.dep, s.keys.secret_path());

    // Limited to "main": the other private cache is invisible to it.
    assert_eq!(s.server.get("/api/nix/main/nix-cache-info", Some(&only_main)).status(), 200);
    assert_eq!(s.server.get("/api/nix/other/nix-cache-info", Some(&only_main)).status(), 401);
    let (status, error) = error_of(dep.send(&s.server, "other", &only_main, dep.compressed()));
    assert_eq!(status, 404, "{error}");
    assert_eq!(s.server.get(&format!("/api/nix/other/{}.narinfo", dep.hash_part()), Some(&s.token)).status(), 404);

    // Read-only: reads everything its user can, pushes nothing.
    assert_eq!(s.server.get("/api/nix/other/nix-cache-info", Some(&read_only)).status(), 200);
    let (status, error) = error_of(dep.send(&s.server, "main", &read_only, dep.compressed()));
    assert_eq!(status, 403, "{error}");
    s.assert_not_visible(&dep);

    // The scoped token pushes where it may.
    assert_eq!(dep.send(&s.server, "main", &only_main, dep.compressed()).status(), 200);
    let unknown =
        s.server.command(Some(&["admin", "create-token", "admin", "--name", "x", "--cache", "nope"])).output().unwrap();
    assert!(!unknown.status.success());
    assert!(output_text(&unknown).contains("cache \"nope\" does not exist"));
}
