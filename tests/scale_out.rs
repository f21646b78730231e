//! Several server processes on one PostgreSQL database and one S3 bucket behave as one
//! service; S3 outages and crashes leave nothing half visible.

mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Backend, Cli, Closure, Keys, NixClient, RawUpload, Server, output_text};

fn nar_objects(server: &Server) -> Vec<std::path::PathBuf> {
    server.stored_files().into_iter().filter(|f| f.to_string_lossy().contains("/nar/")).collect()
}

#[test]
fn a_path_pushed_through_one_server_is_served_by_the_other() {
    let keys = Keys::generate("twin-1");
    let closure = Closure::build("twin");
    let first = Server::start(Backend::PostgresS3);
    let token = first.bootstrap(&keys, false);
    let second = first.sibling();
    let cli = Cli::new();
    cli.login(&first, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    // Served by the other process as soon as the push returned.
    let narinfo = format!("/api/nix/main/{}.narinfo", &closure.app[11..43]);
    assert_eq!(second.get(&narinfo, Some(&token)).status(), 200);

    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    let store = nix.store("via-second");
    let out = nix.copy_from(&second.cache_url("main"), &store, &keys.public, &[&closure.app]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(nix.verify(&store, &keys.public, &closure.app).status.success());
}

#[test]
fn concurrent_pushes_through_both_servers_store_each_nar_once() {
    let keys = Keys::generate("race-1");
    let first = Server::start(Backend::PostgresS3);
    let token = first.bootstrap(&keys, false);
    let second = first.sibling();
    for round in 0..3 {
        let closure = Closure::build(&format!("race-{round}"));
        let pushes: Vec<_> = [&first, &second]
            .into_iter()
            .map(|server| {
                let cli = Cli::new();
                let mut cmd = cli.command(&["--url", &server.url(), "--token", &token]);
                cmd.args(["push", "main", "--jobs", "2", "--key", keys.secret_path(), &closure.app]);
                (cli, cmd.spawn().unwrap())
            })
            .collect();
        for (_cli, child) in pushes {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", output_text(&out));
        }
    }
    // Three closures of two paths: six NARs, each stored exactly once, each with its listing.
    let objects = nar_objects(&first);
    let nars = objects.iter().filter(|f| !f.to_string_lossy().ends_with(".ls")).count();
    assert_eq!(nars, 6, "{objects:?}");
    assert_eq!(objects.len(), 12, "{objects:?}");
}

#[test]
fn an_s3_outage_is_a_clear_retryable_error_and_leaves_nothing_visible() {
    let keys = Keys::generate("outage-1");
    let closure = Closure::build("outage");
    let mut server = Server::start(Backend::SqliteS3);
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);

    server.s3.as_mut().unwrap().stop();
    let out = cli.run(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    assert!(!out.status.success(), "the push must fail while S3 is down");
    let text = output_text(&out);
    assert!(text.contains("HTTP 503") && text.contains("try again later"), "{text}");
    for path in closure.paths() {
        assert_eq!(server.get(&format!("/api/nix/main/{}.narinfo", &path[11..43]), Some(&token)).status(), 404);
    }
    let dep = RawUpload::of(&closure.dep, keys.secret_path());
    let direct = dep.send(&server, "main", &token, dep.compressed());
    assert_eq!(direct.status(), 503);
    assert_eq!(direct.headers()["retry-after"], "5");
    // The storage error's own text stays in the server log; the client gets an id for it.
    let (_, error) = support::error_of(direct);
    assert!(error.starts_with("storage is unavailable; try again later (request id "), "{error}");
    let id = error.rsplit("request id ").next().unwrap().trim_end_matches(')');
    let logged = server.log().lines().find(|l| l.contains(id)).map(str::to_string).unwrap_or_default();
    assert!(logged.contains("storage error"), "the log has the details under {id}: {}", server.log());

    server.s3.as_mut().unwrap().resume();
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    let out = nix.copy_from(&server.cache_url("main"), &nix.store("after"), &keys.public, &[&closure.app]);
    assert!(out.status.success(), "{}", output_text(&out));
}

#[test]
fn a_database_outage_is_a_clear_retryable_error_and_the_server_recovers_by_itself() {
    let keys = Keys::generate("pg-outage-1");
    let server = Server::start(Backend::Postgres);
    let token = server.bootstrap(&keys, false);
    let postgres = server.postgres.as_ref().unwrap();
    postgres.stop();
    // A token this process has not seen yet must be looked up in the database.
    let response = server.get("/api/v1/caches/main", Some(&token));
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let (_, error) = support::error_of(response);
    assert!(error.starts_with("the database is unavailable; try again later (request id "), "{error}");

    postgres.start_again();
    support::wait_until(Duration::from_secs(30), "the server answers again", || {
        server.get("/api/v1/caches/main", Some(&token)).status() == 200
    });
}

#[test]
fn a_server_killed_mid_upload_leaves_nothing_visible() {
    let keys = Keys::generate("crash-1");
    let closure = Closure::build("crash");
    let mut server = Server::start(Backend::PostgresS3);
    let token = server.bootstrap(&keys, false);
    let dep = RawUpload::of(&closure.dep, keys.secret_path());
    let body = dep.compressed();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let head = format!(
        "PUT /api/v1/caches/main/paths/{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{}: {}\r\nContent-Length: {}\r\n\r\n",
        dep.hash_part(),
        hibernation::api::PATH_INFO_HEADER,
        dep.header(),
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.restart();
    drop(stream);
    assert_eq!(server.get(&format!("/api/nix/main/{}.narinfo", dep.hash_part()), Some(&token)).status(), 404);
    assert!(nar_objects(&server).is_empty(), "no object reached the bucket");
    // The path can be pushed normally afterwards.
    assert_eq!(dep.send(&server, "main", &token, body).status(), 200);
}

#[test]
fn large_nars_use_multipart_uploads_and_ranged_reads_on_s3() {
    let keys = Keys::generate("large-1");
    let server = Server::start(Backend::SqliteS3);
    let token = server.bootstrap(&keys, false);
    // 40 MiB of random bytes: incompressible, so the upload needs three multipart parts.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("large-blob");
    let mut data = vec![0u8; 40 * 1024 * 1024];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&file, &data).unwrap();
    let path = support::nix::run_ok(support::nix::nix(&["nix-store", "--add", file.to_str().unwrap()]));
    let cli = Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &path]);

    let narinfo: String = server.get(&format!("/api/nix/main/{}.narinfo", &path[11..43]), Some(&token)).text().unwrap();
    let info = hibernation::nix::NarInfo::parse(&narinfo).unwrap();
    assert!(info.file_size.unwrap() > 32 * 1024 * 1024);
    let nar_url = format!("/api/nix/main/{}", info.url);
    let range = reqwest::blocking::Client::new()
        .get(format!("{}{nar_url}", server.url()))
        .bearer_auth(&token)
        .header("Range", "bytes=20000000-20000015")
        .send()
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(range.bytes().unwrap().len(), 16);

    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    let store = nix.store("large");
    let out = nix.copy_from(&server.cache_url("main"), &store, &keys.public, &[&path]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(std::fs::read(store.join(path.trim_start_matches('/'))).unwrap(), data);
}

/// Pushes random paths through `server` in a loop until `stop` is set; returns how many
/// pushes succeeded (each a commit the replicas must read while the test's own pushes wait).
fn keep_pushing(server: &Server, token: &str, keys: &Keys, stop: &AtomicBool, tag: &str) -> usize {
    let cli = Cli::new();
    let mut pushed = 0;
    for round in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let path = support::nix::add_random_file(4096, 0x9e37_79b9 + round, &format!("{tag}-{round}"));
        let mut cmd = cli.command(&["--url", &server.url(), "--token", token]);
        let out = cmd.args(["push", "main", "--key", keys.secret_path(), &path]).output().unwrap();
        assert!(out.status.success(), "a concurrent push failed: {}", output_text(&out));
        pushed += 1;
    }
    pushed
}

/// Sets the flag when dropped: background pushes stop when the test ends, failed or not
/// (a scope waits for its threads before it hands on a panic).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Once a push has returned success, every replica serves the path: a push through one
/// followed at once by substitution through the other, 50 times (alternating the CLI and
/// `nix copy --to`), while other pushes go on through both. Stock Nix keeps a 404 in its
/// narinfo cache for an hour, so a single early miss would fail a deploy for that long.
#[test]
fn a_push_is_served_by_every_replica_the_moment_it_returns() {
    let keys = Keys::generate("one-truth-1");
    let first = Server::start(Backend::PostgresS3);
    let token = first.bootstrap(&keys, false);
    let second = first.sibling();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let background: Vec<_> = [(&first, "bg-first"), (&second, "bg-second")]
            .into_iter()
            .map(|(server, tag)| {
                let (token, keys, stop) = (&token, &keys, &stop);
                let tag = support::unique_tag(tag);
                scope.spawn(move || keep_pushing(server, token, keys, stop, &tag))
            })
            .collect();
        let stop_when_done = StopOnDrop(&stop);
        let cli = Cli::new();
        cli.login(&first, &token);
        let nix = NixClient::new();
        nix.write_netrc("127.0.0.1", &token);
        let copy_to = format!("{}?compression=zstd&secret-key={}", first.cache_url("main"), keys.secret_path());
        for round in 0..50 {
            let closure = Closure::build(&support::unique_tag(&format!("truth-{round}")));
            let pushed = if round % 2 == 0 {
                cli.run(&["push", "main", "--key", keys.secret_path(), &closure.app])
            } else {
                nix.run(&["nix", "copy", "--to", &copy_to, &closure.app])
            };
            assert!(pushed.status.success(), "round {round}: {}", output_text(&pushed));
            let store = nix.store(&format!("round-{round}"));
            let out = nix.copy_from(&second.cache_url("main"), &store, &keys.public, &[&closure.app]);
            assert!(out.status.success(), "round {round}: the other replica missed the push: {}", output_text(&out));
        }
        drop(stop_when_done);
        let concurrent: usize = background.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(concurrent > 0, "pushes ran alongside");
    });
}

/// A revoked token is refused by every replica within a second, though both remembered it
/// (which is what saves a database query per request).
#[test]
fn a_revocation_reaches_every_replica_within_a_second() {
    let keys = Keys::generate("revoke-1");
    let closure = Closure::build(&support::unique_tag("revoke"));
    let first = Server::start(Backend::PostgresS3);
    let token = first.bootstrap(&keys, false);
    let second = first.sibling();
    let cli = Cli::new();
    cli.login(&first, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    let narinfo = format!("/api/nix/main/{}.narinfo", &closure.app[11..43]);
    for server in [&first, &second] {
        assert_eq!(server.get(&narinfo, Some(&token)).status(), 200, "both serve the path and remember the token");
    }
    // A NAR a cache lacks is answered from memory too (the presence filter), and never for
    // a NAR whose narinfo was served.
    let absent_nar = format!("/api/nix/main/nar/{}.nar.zst", "1".repeat(52));
    assert_eq!(second.get(&absent_nar, Some(&token)).status(), 404);

    // Revoked by the admin command, a process of its own: every server learns it from the
    // database.
    first.admin(&["revoke-token", "admin", "--name", "ci"]);
    let revoked = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(1).saturating_sub(revoked.elapsed()));
    for server in [&first, &second] {
        assert_eq!(server.get(&narinfo, Some(&token)).status(), 401, "refused by every replica within a second");
    }
}

/// A grant removed and a user deleted through one replica's dashboard are refused by the
/// other replica within a second, though it remembered the user's token and access.
#[test]
fn removed_grants_and_deleted_users_reach_every_replica_within_a_second() {
    let keys = Keys::generate("grants-1");
    let first = Server::start(Backend::PostgresS3);
    let admin = support::web::WebClient::new(&first);
    admin.setup_admin();
    first.admin(&["create-cache", "main", "--no-upstream", "--public-key", &keys.public]);
    first.create_user_with_password("bob", "bob@example.com", "bob password");
    first.admin(&["grant", "bob", "main"]);
    let token = first.admin(&["create-token", "bob", "--name", "laptop"]);
    let second = first.sibling();
    let bob = first.count("SELECT id AS n FROM users WHERE login = 'bob'");
    let main = first.count("SELECT id AS n FROM caches WHERE name = 'main'");
    let info = "/api/nix/main/nix-cache-info";
    let refused_within_a_second = |what: &str, change: &dyn Fn()| {
        assert_eq!(second.get(info, Some(&token)).status(), 200, "before {what}: the other replica remembers access");
        change();
        let changed = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(1).saturating_sub(changed.elapsed()));
        assert_eq!(
            second.get(info, Some(&token)).status(),
            401,
            "{what}: refused by the other replica within a second"
        );
    };
    let csrf = support::web::csrf_in(&admin.get("/users").text().unwrap());
    refused_within_a_second("a removed grant", &|| {
        let removed = admin.post(&format!("/users/{bob}/access/{main}/revoke"), &[("csrf", &csrf)]);
        assert!(removed.status().is_success() || removed.status().is_redirection(), "{}", removed.status());
    });
    first.admin(&["grant", "bob", "main"]);
    support::wait_until(Duration::from_secs(3), "the grant is back", || second.get(info, Some(&token)).status() == 200);
    refused_within_a_second("a deleted user", &|| {
        let deleted = admin.post(&format!("/users/{bob}/delete"), &[("csrf", &csrf)]);
        assert!(deleted.status().is_success() || deleted.status().is_redirection(), "{}", deleted.status());
    });
}

/// A process started later loads every stored path into its presence filter (which answers
/// misses without a query) and serves them at once.
#[test]
fn a_replica_started_later_serves_every_stored_path() {
    let keys = Keys::generate("later-1");
    let closure = Closure::build(&support::unique_tag("later"));
    let first = Server::start(Backend::PostgresS3);
    let token = first.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&first, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    let third = first.sibling();
    let narinfo = format!("/api/nix/main/{}.narinfo", &closure.app[11..43]);
    assert_eq!(third.get(&narinfo, Some(&token)).status(), 200, "a new replica serves stored paths");
    let absent = format!("/api/nix/main/{}.narinfo", "0".repeat(32));
    assert_eq!(third.get(&absent, Some(&token)).status(), 404);
}

/// A process remembers where it found a NAR; when the path is deleted, its NAR collected and
/// the path pushed again through another process (a new object), the first process serves
/// the new object: the remembered one is gone, so it asks the database again.
#[test]
fn a_nar_pushed_again_through_another_replica_is_served_from_its_new_object() {
    let first = Server::builder(Backend::PostgresS3).env(&[("GC_GRACE", "0s"), ("EVICTION_MIN_AGE", "0s")]).start();
    let second = first.sibling();
    let keys = Keys::generate("moved-1");
    let token = first.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&second, &token);
    // Larger than the NARs kept in memory (8 KiB), so serving it reads the object.
    let path = support::nix::add_random_file(64 * 1024, 0x5851_f42d_4c95_7f2d, &support::unique_tag("moved"));
    let push = || cli.run(&["push", "main", "--key", keys.secret_path(), &path]);
    assert!(push().status.success());
    let hash = &path["/nix/store/".len()..][..32];
    let narinfo_url = format!("/api/nix/main/{hash}.narinfo");
    // The first process serves a path pushed through the second once the push returned.
    assert_eq!(first.get(&narinfo_url, Some(&token)).status(), 200);
    let narinfo = first.get(&narinfo_url, Some(&token)).text().unwrap();
    let url = narinfo.lines().find_map(|l| l.strip_prefix("URL: ")).expect("a URL line").to_string();
    let nar = format!("/api/nix/main/{url}");
    let served = first.get(&nar, Some(&token));
    assert_eq!(served.status(), 200);
    let served = served.bytes().unwrap();
    let objects_before = nar_objects(&first);

    // Evicted, then collected at once (GC_GRACE 0s).
    first.evict_everything("main");
    first.admin(&["gc"]);
    assert_eq!(second.get(&nar, Some(&token)).status(), 404, "the NAR is gone");
    assert!(push().status.success(), "pushed again through the other process");
    assert_ne!(nar_objects(&first), objects_before, "a new object");

    let again = first.get(&nar, Some(&token));
    assert_eq!(again.status(), 200, "served from the new object by the process that remembered the old one");
    assert_eq!(again.bytes().unwrap(), served);
}
