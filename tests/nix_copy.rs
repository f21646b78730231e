//! Uploads from stock Nix: `nix copy --to http://.../api/nix/<cache>` with every compression,
//! tampered uploads, credentials, build logs and NAR listings.

#[macro_use]
mod support;

use std::time::Duration;

use support::{Backend, Closure, Keys, NixClient, Server, output_text};

on_full_matrix!(nix_copy_to_then_substitute);
on_every_backend!(tampered_nar_is_refused, build_logs_and_listings);

fn copy_to(nix: &NixClient, server: &Server, cache: &str, query: &str, paths: &[&str]) -> std::process::Output {
    let url = format!("{}?{query}", server.cache_url(cache));
    let mut args = vec!["nix", "copy", "--to", url.as_str()];
    args.extend_from_slice(paths);
    nix.run(&args)
}

fn nix_copy_to_then_substitute(backend: Backend) {
    let keys = Keys::generate("copy-1");
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, false);
    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    for compression in ["xz", "zstd", "none", "bzip2", "br"] {
        let cache = format!("c-{compression}");
        server.admin(&["create-cache", &cache, "--public-key", &keys.public]);
        let closure = Closure::build(&format!("copy-{compression}"));
        let query = format!("compression={compression}&secret-key={}", keys.secret_path());
        let out = copy_to(&nix, &server, &cache, &query, &[&closure.app]);
        assert!(out.status.success(), "nix copy --to with {compression}: {}", output_text(&out));
        let narinfo = server.get(&format!("/api/nix/{cache}/{}.narinfo", &closure.app[11..43]), Some(&token));
        assert!(narinfo.text().unwrap().contains(&format!("Compression: {compression}\n")));

        let store = nix.store(&format!("from-{compression}"));
        let out = nix.copy_from(&server.cache_url(&cache), &store, &keys.public, &[&closure.app]);
        assert!(out.status.success(), "substituting {compression}: {}", output_text(&out));
        let out = nix.verify(&store, &keys.public, &closure.app);
        assert!(out.status.success(), "{}", output_text(&out));

        // A second copy finds everything present and uploads nothing.
        let before = server.stored_files();
        let out = copy_to(&nix, &server, &cache, &query, &[&closure.app]);
        assert!(out.status.success(), "{}", output_text(&out));
        assert_eq!(server.stored_files(), before);
    }

    // Without credentials, or unsigned, nothing is accepted.
    let anonymous = NixClient::new();
    let closure = Closure::build("copy-anonymous");
    let url = format!("{}?secret-key={}", server.cache_url("main"), keys.secret_path());
    let out = anonymous.run(&["nix", "copy", "--debug", "--to", &url, &closure.app]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("HTTP status = 401"), "{}", output_text(&out));
    let out = copy_to(&nix, &server, "main", "compression=zstd", &[&closure.dep]);
    assert!(!out.status.success(), "an unsigned path is refused");
    assert!(output_text(&out).contains("no signature"), "{}", output_text(&out));
    for path in closure.paths() {
        assert_eq!(server.get(&format!("/api/nix/main/{}.narinfo", &path[11..43]), Some(&token)).status(), 404);
    }
}

fn tampered_nar_is_refused(backend: Backend) {
    let keys = Keys::generate("tamper-1");
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, false);
    let closure = Closure::build("tamper");
    // Let Nix write a real signed upload to a local file cache, then tamper with it.
    let nix = NixClient::new();
    let files = nix.store("files");
    let url = format!("file://{}?compression=none&secret-key={}", files.display(), keys.secret_path());
    let out = nix.run(&["nix", "copy", "--to", &url, &closure.dep]);
    assert!(out.status.success(), "{}", output_text(&out));
    let hash = &closure.dep[11..43];
    let narinfo = std::fs::read_to_string(files.join(format!("{hash}.narinfo"))).unwrap();
    let info = hibernation::nix::NarInfo::parse(&narinfo).unwrap();
    let mut nar = std::fs::read(files.join(&info.url)).unwrap();
    // Same length and structure, different contents: only the NarHash check can notice.
    let at = nar.windows(10).position(|w| w == b"dependency").unwrap();
    nar[at] = b'D';
    let tampered_hash = hibernation::nix::NarHash::digest(&nar);
    let client = reqwest::blocking::Client::new();
    let put = |path: &str, body: Vec<u8>| {
        client
            .put(format!("{}/{path}", server.cache_url("main")))
            .basic_auth("nix", Some(&token))
            .body(body)
            .send()
            .unwrap()
    };
    let response = put(&format!("nar/{}.nar", tampered_hash.to_nix32()), nar.clone());
    assert_eq!(response.status(), 204, "the NAR itself is well formed");
    // Point URL and FileHash (which signatures do not cover) at the tampered file.
    let forged = narinfo
        .replace(&format!("URL: {}", info.url), &format!("URL: nar/{}.nar", tampered_hash.to_nix32()))
        .replace(&format!("FileHash: {}", info.file_hash.unwrap()), &format!("FileHash: {tampered_hash}"));
    assert_ne!(forged, narinfo);
    let (status, error) = support::error_of(put(&format!("{hash}.narinfo"), forged.into_bytes()));
    assert_eq!(status, 422, "{error}");
    assert!(error.contains("NarHash"), "{error}");
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), Some(&token)).status(), 404);

    // A NAR whose bytes do not match its file name is refused on arrival.
    let (status, error) = support::error_of(put(&format!("nar/{}.nar", info.file_hash.unwrap().to_nix32()), nar));
    assert_eq!(status, 422, "{error}");
    assert!(error.contains("its name says"), "{error}");
    // Without credentials: 401 with a challenge, nothing stored.
    let anonymous = client.put(format!("{}/{hash}.narinfo", server.cache_url("main"))).body(narinfo).send().unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), Some(&token)).status(), 404);
}

fn build_logs_and_listings(backend: Backend) {
    let keys = Keys::generate("logs-1");
    let server = Server::start(backend);
    let token = server.bootstrap(&keys, true);
    let closure = Closure::build("logs");
    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    let out = copy_to(&nix, &server, "main", &format!("secret-key={}", keys.secret_path()), &[&closure.app]);
    assert!(out.status.success(), "{}", output_text(&out));

    // The build printed "building <tag>"; copy its log and read it back with `nix log`.
    let out = nix.run(&["nix", "store", "copy-log", "--to", &server.cache_url("main"), &closure.app]);
    assert!(out.status.success(), "{}", output_text(&out));
    let out = nix.run(&["nix", "log", "--store", &server.cache_url("main"), &closure.app]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("building logs"), "{}", output_text(&out));

    // Every path has a listing, equal to the one Nix itself writes.
    let files = nix.store("files");
    let url = format!("file://{}?write-nar-listing=true", files.display());
    let out = nix.run(&["nix", "copy", "--to", &url, &closure.app]);
    assert!(out.status.success(), "{}", output_text(&out));
    for path in closure.paths() {
        let hash = &path[11..43];
        let ours: serde_json::Value = server.get(&format!("/api/nix/main/{hash}.ls"), None).json().unwrap();
        let theirs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(files.join(format!("{hash}.ls"))).unwrap()).unwrap();
        assert_eq!(ours, theirs, "listing of {path}");
    }
}

#[test]
fn the_cleanup_of_stale_uploads_never_deletes_a_live_nar() {
    let keys = Keys::generate("janitor-1");
    let mut server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, false);
    let closure = Closure::build(&support::unique_tag("janitor"));
    let nix = NixClient::new();
    nix.write_netrc("127.0.0.1", &token);
    let out = copy_to(&nix, &server, "main", &format!("secret-key={}", keys.secret_path()), &[&closure.dep]);
    assert!(out.status.success(), "{}", output_text(&out));

    // A day-old upload whose narinfo never came, with its own object: the cleanup removes it.
    let leftover = server.storage_path().join("nar/leftover.nar");
    std::fs::write(&leftover, b"an upload nobody committed").unwrap();
    server.sql(
        "INSERT INTO pending_nars (cache_id, user_id, file_hash, compression, file_size, nar_hash, nar_size, storage_key, created_at) \
         VALUES (1, 1, 'leftover', 'none', 26, 'leftover', 26, 'nar/leftover.nar', '2000-01-01 00:00:00')",
    );
    // A stale row naming the live NAR's object (as no commit leaves one: it hands objects over
    // in its transaction): the cleanup must not delete that object.
    server.sql(
        "INSERT INTO pending_nars (cache_id, user_id, file_hash, compression, file_size, nar_hash, nar_size, storage_key, created_at) \
         SELECT 1, 1, 'stale', compression, file_size, nar_hash, nar_size, storage_key, '2000-01-01 00:00:00' FROM nars",
    );
    server.restart(); // The cleanup runs at start, then hourly.
    support::wait_until(Duration::from_secs(20), "the cleanup removes the leftover upload", || !leftover.exists());

    let store = nix.store("after-cleanup");
    let out = nix.copy_from(&server.cache_url("main"), &store, &keys.public, &[&closure.dep]);
    assert!(out.status.success(), "the live NAR is still served: {}", output_text(&out));
}
