//! The binary-cache protocol details Nix relies on: nix-cache-info, narinfo text, HEAD,
//! byte ranges, 404s; and the server's startup configuration errors.

#[macro_use]
mod support;

use support::{Backend, Cli, Closure, Keys, Server, output_text};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

on_every_backend!(serves_cache_info_narinfo_and_nar_ranges);

fn serves_cache_info_narinfo_and_nar_ranges(backend: Backend) {
    let keys = Keys::generate("proto-1");
    let closure = Closure::build("proto");
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, true);
    let cli = Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);

    let info = server.get("/api/nix/main/nix-cache-info", None);
    assert_eq!(info.headers()["content-type"], "text/x-nix-cache-info");
    assert_eq!(info.text().unwrap(), "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 41\n");

    let hash = &closure.app[11..43];
    let narinfo_path = format!("/api/nix/main/{hash}.narinfo");
    let response = server.get(&narinfo_path, None);
    assert_eq!(response.headers()["content-type"], "text/x-nix-narinfo");
    let text = response.text().unwrap();
    let narinfo = hibernation::nix::NarInfo::parse(&text).unwrap();
    assert_eq!(narinfo.store_path.to_string(), closure.app);
    assert_eq!(narinfo.compression, "zstd");
    assert_eq!(narinfo.references.len(), 1);
    assert_eq!(narinfo.references[0].to_string(), closure.dep);
    assert!(narinfo.is_signed_by_any(&[hibernation::nix::PublicKey::parse(&keys.public).unwrap()]));
    assert!(text.contains("\nCompression: zstd\n"), "Compression is always written");

    // Nothing is sniffed; protocol answers may be cached, dashboard pages and API answers not.
    let narinfo_answer = client().get(format!("{}{narinfo_path}", server.url())).send().unwrap();
    assert_eq!(narinfo_answer.headers()["x-content-type-options"], "nosniff");
    assert!(narinfo_answer.headers().get("cache-control").is_none());
    for page in ["/sign-in", "/api/v1/whoami", "/api/v1/caches"] {
        let answer = client().get(format!("{}{page}", server.url())).bearer_auth(&token).send().unwrap();
        assert_eq!(answer.headers()["x-content-type-options"], "nosniff", "{page}");
        assert_eq!(answer.headers()["cache-control"], "no-store", "{page}");
    }

    // Anonymous callers list public caches without sizes (counting scans the cache); callers
    // with a token get them.
    let anonymous: serde_json::Value =
        client().get(format!("{}/api/v1/caches", server.url())).send().unwrap().json().unwrap();
    assert_eq!(anonymous[0]["name"], "main");
    assert!(anonymous[0]["paths"].is_null() && anonymous[0]["stored_bytes"].is_null(), "{anonymous}");
    let signed_in: serde_json::Value =
        client().get(format!("{}/api/v1/caches", server.url())).bearer_auth(&token).send().unwrap().json().unwrap();
    assert!(signed_in[0]["paths"].as_i64().unwrap() > 0, "{signed_in}");

    // HEAD answers like GET, without a body.
    let head = client().head(format!("{}{narinfo_path}", server.url())).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], text.len().to_string().as_str());

    // The NAR: whole, HEAD, ranges, unsatisfiable ranges.
    let nar_url = format!("{}/api/nix/main/{}", server.url(), narinfo.url);
    let whole = client().get(&nar_url).send().unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert!(whole.headers().get("content-encoding").is_none());
    let size = narinfo.file_size.unwrap();
    assert_eq!(whole.headers()["content-length"], size.to_string().as_str());
    let bytes = whole.bytes().unwrap();
    assert_eq!(hibernation::nix::NarHash::digest(&bytes), narinfo.file_hash.unwrap());
    let decompressed = zstd::decode_all(&bytes[..]).unwrap();
    assert_eq!(hibernation::nix::NarHash::digest(&decompressed), narinfo.nar_hash);

    let head = client().head(&nar_url).send().unwrap();
    assert_eq!(head.headers()["content-length"], size.to_string().as_str());

    let partial = client().get(&nar_url).header("Range", "bytes=10-19").send().unwrap();
    assert_eq!(partial.status(), 206);
    assert_eq!(partial.headers()["content-range"], format!("bytes 10-19/{size}").as_str());
    assert_eq!(&partial.bytes().unwrap()[..], &bytes[10..20]);
    let tail = client().get(&nar_url).header("Range", "bytes=-5").send().unwrap();
    assert_eq!(&tail.bytes().unwrap()[..], &bytes[bytes.len() - 5..]);
    let open = client().get(&nar_url).header("Range", format!("bytes={}-", size - 3)).send().unwrap();
    assert_eq!(open.bytes().unwrap().len(), 3);
    // A last position past the end (even the largest number) means "to the end".
    let huge = client().get(&nar_url).header("Range", "bytes=0-18446744073709551615").send().unwrap();
    assert_eq!(huge.status(), 206);
    assert_eq!(huge.headers()["content-range"], format!("bytes 0-{}/{size}", size - 1).as_str());
    assert_eq!(huge.bytes().unwrap().len() as u64, size);
    let beyond = client().get(&nar_url).header("Range", format!("bytes={size}-")).send().unwrap();
    assert_eq!(beyond.status(), 416);
    assert_eq!(beyond.headers()["content-range"], format!("bytes */{size}").as_str());

    // A missing cache answers as a private one the caller may not read would (401, which
    // makes Nix fail rather than build), so nobody can probe which private caches exist:
    // neither anonymous callers nor token holders, on the protocol or the API.
    let anonymous = server.get("/api/nix/nope/nix-cache-info", None);
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    server.admin(&["create-cache", "secret"]);
    let private = server.get("/api/nix/secret/nix-cache-info", None);
    assert_eq!(private.status(), 401);
    assert_eq!(private.text().unwrap(), anonymous.text().unwrap().replace("nope", "secret"));
    server.admin(&["create-user", "outsider"]);
    let outsider = server.admin(&["create-token", "outsider", "--name", "t"]);
    for path in ["/api/nix/{}/nix-cache-info", "/api/v1/caches/{}", "/api/v1/caches/{}/pins"] {
        let answer = |cache: &str| {
            let response = server.get(&path.replace("{}", cache), Some(&outsider));
            (response.status().as_u16(), response.text().unwrap().replace(cache, "<cache>"))
        };
        let (missing, hidden) = (answer("nope"), answer("secret"));
        assert_eq!(missing, hidden, "{path}: a private cache looks missing to a token without access");
        assert_eq!(missing.0, if path.starts_with("/api/nix") { 401 } else { 404 }, "{path}: {missing:?}");
    }
    assert_eq!(server.get("/api/nix/secret/nix-cache-info", Some(&token)).status(), 200);

    // Unknown things are 404s, never 5xx.
    for missing in [
        "/api/nix/main/00000000000000000000000000000000.narinfo".to_string(),
        "/api/nix/main/not-a-hash.narinfo".to_string(),
        "/api/nix/main/nar/0000000000000000000000000000000000000000000000000000.nar.zst".to_string(),
        "/api/nix/main/nar/garbage".to_string(),
    ] {
        assert_eq!(server.get(&missing, None).status(), 404, "{missing}");
    }
    // A NAR of one cache is not served through another.
    server.admin(&["create-cache", "empty", "--public"]);
    assert_eq!(server.get(&format!("/api/nix/empty/{}", narinfo.url), None).status(), 404);
}

/// Runs the server binary with `env` and expects it to exit with `message`.
fn startup_fails(env: &[(&str, &str)], message: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(support::binary("hibernation-server"));
    cmd.env_clear().env("PORT", support::free_port().to_string()).current_dir(dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A server that starts anyway would run forever: give it a deadline.
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started with {env:?} instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the server must refuse to start with {env:?}");
    assert!(output_text(&out).contains(message), "expected {message:?} in {}", output_text(&out));
    dir
}

#[test]
fn bad_configuration_is_a_clear_startup_error() {
    let dir = startup_fails(&[("DB_URL", "nonsense")], "DB_URL must start with sqlite: or postgres://");
    assert!(!dir.path().join("nonsense").exists(), "no stray SQLite file");
    startup_fails(&[("DB_URL", "sqlite:/nonexistent/dir/x.db?mode=rwc")], "/nonexistent/dir does not exist");
    startup_fails(&[("DB_URL", "postgres://nobody@127.0.0.1:1/none")], "cannot connect to PostgreSQL");
    let data = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}/x.db?mode=rwc", data.path().display());
    startup_fails(&[("DB_URL", &db), ("STORAGE_PATH", "/proc/hibernation")], "STORAGE_PATH /proc/hibernation");
    startup_fails(&[("PORT", "eighty")], "PORT must be a port number");
    startup_fails(&[("SITE_URL", "cache.example.com")], "SITE_URL must be the URL people open");
    startup_fails(&[("VIRTUAL_HOST_ROUTING", "maybe")], "VIRTUAL_HOST_ROUTING must be true or false");
    startup_fails(&[("TRUSTED_PROXIES", "10.0.0.0/8,proxy")], "TRUSTED_PROXIES: \"proxy\" is not an address");
    startup_fails(
        &[("METRICS_ENABLED", "true"), ("PORT", "8123"), ("METRICS_PORT", "8123")],
        "METRICS_PORT must differ from PORT",
    );
    startup_fails(&[("SMTP_PORT", "25")], "SMTP_PORT is set but SMTP_HOST is not");
    startup_fails(&[("SMTP_HOST", "mail.example.com")], "SMTP_FROM is required with SMTP_HOST");
    startup_fails(
        &[("SMTP_HOST", "mail.example.com"), ("SMTP_FROM", "a@b.c"), ("SMTP_SECURITY", "ssl3")],
        "SMTP_SECURITY must be none, starttls or tls",
    );
    startup_fails(&[("S3_HOST", "http://127.0.0.1:1")], "set S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY as well");
    startup_fails(&[("S3_BUCKET", "b"), ("S3_REGION", "x")], "set S3_HOST, S3_ACCESS_KEY, S3_SECRET_KEY as well");
    let unreachable = [
        ("DB_URL", db.as_str()),
        ("S3_HOST", "http://127.0.0.1:1"),
        ("S3_BUCKET", "b"),
        ("S3_ACCESS_KEY", "a"),
        ("S3_SECRET_KEY", "s"),
    ];
    startup_fails(&unreachable, "cannot use S3 bucket \"b\" at http://127.0.0.1:1");
}

/// A data directory the server's user may not write in (a host directory bind-mounted into
/// the container, most often) says which directory, which user, and the fix.
#[test]
fn a_data_directory_the_server_cannot_write_says_whose_it_is() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let db_url = format!("sqlite:{}/hibernation.db?mode=rwc", data.path().display());
    let mut cmd = std::process::Command::new(support::binary("hibernation-server"));
    // Root writes anywhere: as root, run it as nobody (uid 65534), as a container's user would.
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    let as_root = me == 0;
    // A copy of the binary where that user can reach it (the checkout may not be).
    let bin = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = bin.path().join("hibernation-server");
    std::fs::copy(support::binary("hibernation-server"), &server).unwrap();
    if as_root {
        cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(&server);
    }
    let uid = if as_root { 65534 } else { me };
    let out = cmd
        .env_clear()
        .env("PORT", support::free_port().to_string())
        .env("DB_URL", &db_url)
        .env("STORAGE_PATH", data.path().join("storage"))
        .current_dir(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = output_text(&out);
    let dir = data.path().display();
    assert!(text.contains(&format!("the server runs as uid {uid} and cannot write in {dir}")), "{text}");
    assert!(text.contains(&format!("`chown {uid} {dir}`")), "{text}");
    assert!(!data.path().join("hibernation.db").exists(), "nothing was created");
}

#[test]
fn starts_with_no_configuration_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // PORT is the one variable set, so that tests do not fight over 8000.
    let mut child = std::process::Command::new(support::binary("hibernation-server"))
        .env_clear()
        .env("PORT", port.to_string())
        .current_dir(dir.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut up = false;
    while std::time::Instant::now() < deadline && !up {
        up = reqwest::blocking::get(format!("http://127.0.0.1:{port}/health")).is_ok_and(|r| r.status() == 200);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let page = reqwest::blocking::get(format!("http://127.0.0.1:{port}/")).map(|r| r.status().as_u16());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(up, "the server did not start on its defaults");
    assert_eq!(page.unwrap(), 200);
    assert!(dir.path().join("data/hibernation.db").is_file(), "SQLite database under ./data");
    assert!(dir.path().join("data/storage").is_dir(), "storage under ./data");
}
