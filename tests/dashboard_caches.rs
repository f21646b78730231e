//! Caches on the dashboard: upstreams and every way to use a cache, settings, clearing,
//! deleting and renaming, quotas in GiB, the storage lifecycle, and the overview's traffic.

#[macro_use]
mod support;

use support::web::{ADMIN_EMAIL, WebClient, csrf_in, location};
use support::{Backend, Keys, Server};

#[test]
fn upstreams_are_edited_in_settings_and_the_cache_page_shows_every_way_to_use_it() {
    let keys = Keys::generate("upstreams-1");
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let create_form = web.get("/caches").text().unwrap();
    assert!(
        create_form.contains("https://cache.nixos.org cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFnspcDShjY="),
        "new caches start with cache.nixos.org as upstream"
    );
    let csrf = csrf_in(&create_form);
    let fields = |upstreams: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("priority", "41".to_string()),
            ("keys", keys.public.clone()),
            ("upstreams", upstreams.to_string()),
        ]
    };
    let mut create = fields("https://cache.nixos.org cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFnspcDShjY=");
    create.push(("name", "main".into()));
    let form: Vec<(&str, &str)> = create.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(web.post("/caches", &form).status(), 303);
    let token = server.admin(&["create-token", ADMIN_EMAIL, "--name", "ci"]);
    let info = || -> serde_json::Value { server.get("/api/v1/caches/main", Some(&token)).json().unwrap() };
    assert_eq!(info()["upstreams"][0]["url"], "https://cache.nixos.org");

    for (bad, expected) in [
        ("ftp://mirror.example key-1:AAAA", "must start with http"),
        ("https://mirror.example", "public key after its URL"),
        ("https://mirror.example not-a-key", "not-a-key"),
    ] {
        let settings = fields(bad);
        let form: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let response = web.post("/caches/main/settings", &form);
        assert_eq!(response.status(), 422, "{bad}");
        let html = response.text().unwrap();
        assert!(html.contains("id=\"upstreams-error\"") && html.contains(expected), "{bad}: {html}");
        assert_eq!(info()["upstreams"][0]["url"], "https://cache.nixos.org", "nothing changed");
    }
    let mut settings = fields("http://mirror.example/ mirror-1:0Rz0AyLGLvrdLvDn5cBEn6TLgSpTtEZcuV0cqiqoZHs=");
    settings.push(("allow_force", "on".into()));
    let form: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(location(&web.post("/caches/main/settings", &form)), "/caches/main");
    let now = info();
    assert_eq!(now["upstreams"].as_array().unwrap().len(), 1);
    assert_eq!(now["upstreams"][0]["url"], "http://mirror.example", "trailing slash dropped");
    assert_eq!(now["allow_force_push"], true);
    let settings_page = web.get("/caches/main/settings").text().unwrap();
    assert!(settings_page.contains("http://mirror.example mirror-1:") && settings_page.contains("checked"));

    server.create_user_with_password("bob", "bob@example.com", "bob's password");
    server.admin(&["grant", "bob", "main", "--push"]);
    let bob = WebClient::new(&server);
    assert_eq!(bob.sign_in("bob@example.com", "bob's password").status(), 303);

    // Push is not control: a pusher cannot make the cache public, replace its keys, lift its
    // quota, grant access, clear or delete it.
    assert_eq!(bob.get("/caches/main/settings").status(), 403);
    assert!(!bob.get("/caches/main").text().unwrap().contains("id=\"settings-link\""));
    let bob_csrf = bob.csrf("/caches/main");
    let evil_key = "evil-1:0Rz0AyLGLvrdLvDn5cBEn6TLgSpTtEZcuV0cqiqoZHs=";
    let takeover = [("csrf", bob_csrf.as_str()), ("public", "on"), ("priority", "1"), ("keys", evil_key)];
    for (path, form) in [
        ("/caches/main/settings", takeover.to_vec()),
        ("/caches/main/access", vec![("csrf", bob_csrf.as_str()), ("user_id", "1"), ("permission", "manage")]),
        ("/caches/main/clear", vec![("csrf", bob_csrf.as_str()), ("confirm", "main")]),
        ("/caches/main/delete", vec![("csrf", bob_csrf.as_str()), ("confirm", "main")]),
        ("/caches/main/paths/00000000000000000000000000000000/delete", vec![("csrf", bob_csrf.as_str())]),
    ] {
        assert_eq!(bob.post(path, &form).status(), 403, "{path}");
    }
    let untouched = info();
    assert_eq!((&untouched["public"], &untouched["public_keys"]), (&now["public"], &now["public_keys"]));
    assert_eq!(untouched["priority"], now["priority"]);

    // With the manage right bob changes the settings, but never the upstreams (the server
    // would fetch from them) nor --force.
    server.admin(&["grant", "bob", "main", "--manage"]);
    let bob_page = bob.get("/caches/main/settings").text().unwrap();
    assert!(bob_page.contains("manage: push, and change settings"), "the form says what each right means");
    assert!(bob_page.contains("Only administrators change upstreams"), "{bob_page}");
    let bob_csrf = csrf_in(&bob_page);
    let sneaky = [
        ("csrf", bob_csrf.as_str()),
        ("priority", "42"),
        ("keys", keys.public.as_str()),
        ("upstreams", "http://169.254.169.254 mirror-1:0Rz0AyLGLvrdLvDn5cBEn6TLgSpTtEZcuV0cqiqoZHs="),
    ];
    assert_eq!(location(&bob.post("/caches/main/settings", &sneaky)), "/caches/main");
    let after = info();
    assert_eq!(after["priority"], 42, "the other settings were saved");
    assert_eq!(after["upstreams"], now["upstreams"], "the upstreams were not");
    assert_eq!(after["allow_force_push"], true, "--force stays as the administrator set it");

    // The cache page: nix.conf, flake, netrc, push, watch mode (beside a build and as a
    // service) and `hibernation use`.
    let page = web.get("/caches/main").text().unwrap();
    for snippet in [
        format!("extra-substituters = {}", server.cache_url("main")),
        "nixConfig".to_string(),
        "machine 127.0.0.1 login hibernation password".to_string(),
        "hibernation push main".to_string(),
        "hibernation watch-store main &amp;".to_string(),
        "ExecStart=/usr/local/bin/hibernation watch-store main".to_string(),
        "hibernation use main".to_string(),
    ] {
        assert!(page.contains(&snippet), "the cache page shows {snippet:?}");
    }
}

#[test]
fn cache_settings_clear_and_delete() {
    let keys = Keys::generate("settings-1");
    let other = Keys::generate("settings-2");
    let closure = support::Closure::build("settings");
    // Unused NARs are collected at once.
    let server = Server::builder(Backend::Sqlite).env(&[("GC_GRACE", "0s")]).start();
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    web.post("/caches", &[("csrf", &csrf), ("name", "main"), ("priority", "41"), ("keys", &keys.public)]);
    assert!(server.get("/api/nix/main/nix-cache-info", None).status() == 401, "private at first");

    // Settings: bad input is shown at its field and changes nothing; good input applies at once.
    let bad = web.post("/caches/main/settings", &[("csrf", &csrf), ("priority", "soon"), ("keys", &keys.public)]);
    assert_eq!(bad.status(), 422);
    assert!(bad.text().unwrap().contains("id=\"priority-error\""));
    let both = format!("{}\n{}", keys.public, other.public);
    let saved =
        web.post("/caches/main/settings", &[("csrf", &csrf), ("public", "on"), ("priority", "30"), ("keys", &both)]);
    assert_eq!(location(&saved), "/caches/main");
    let info = server.get("/api/nix/main/nix-cache-info", None);
    assert_eq!(info.status(), 200, "public now");
    assert!(info.text().unwrap().contains("Priority: 30"));
    assert!(web.get("/caches/main").text().unwrap().contains(&other.public));

    // Push, then clear: the paths and their NAR files are gone.
    let token = server.admin(&["create-token", ADMIN_EMAIL, "--name", "ci"]);
    let cli = support::Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", other.secret_path(), &closure.app]);
    let hash = &closure.app[11..43];
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), None).status(), 200);
    // The dependency cannot go while the app needs it; the answer names the app, escaped.
    let needed = web.post(&format!("/caches/main/paths/{}/delete", &closure.dep[11..43]), &[("csrf", &csrf)]);
    assert_eq!(needed.status(), 409);
    let row = needed.text().unwrap();
    assert!(row.contains("Other paths need this one (app-settings)"), "{row}");
    assert_eq!(server.get(&format!("/api/nix/main/{}.narinfo", &closure.dep[11..43]), None).status(), 200);
    let unconfirmed = web.post("/caches/main/clear", &[("csrf", &csrf), ("confirm", "mian")]);
    assert_eq!(unconfirmed.status(), 422);
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), None).status(), 200, "nothing changed");
    assert_eq!(location(&web.post("/caches/main/clear", &[("csrf", &csrf), ("confirm", "main")])), "/caches/main");
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), None).status(), 404);
    // The NARs wait for garbage collection (a push may take them back within GC_GRACE).
    assert!(server.stored_files().iter().any(|f| f.to_string_lossy().contains("/nar/")));
    assert!(server.admin(&["gc"]).contains("deleted 2 unused NARs"));
    assert!(
        server.stored_files().iter().all(|f| !f.to_string_lossy().contains("/nar/")),
        "{:?}",
        server.stored_files()
    );

    // A token limited to this cache, beside a private cache it must never reach.
    server.admin(&["create-cache", "vault"]);
    let scoped = server.admin(&["create-token", ADMIN_EMAIL, "--name", "main-only", "--cache", "main"]);
    assert_eq!(server.get("/api/nix/vault/nix-cache-info", Some(&scoped)).status(), 401);
    assert!(web.get("/tokens").text().unwrap().contains("<td>main</td>"), "the tokens page shows the scope");

    // Delete the cache itself.
    assert_eq!(location(&web.post("/caches/main/delete", &[("csrf", &csrf), ("confirm", "main")])), "/caches");
    // The scoped token did not become unlimited: it reaches nothing now.
    assert_eq!(server.get("/api/nix/vault/nix-cache-info", Some(&scoped)).status(), 401);
    assert!(web.get("/tokens").text().unwrap().contains("none (its caches were deleted)"));
    // Anonymous callers cannot tell a deleted (or renamed) cache from a private one.
    assert_eq!(server.get("/api/nix/main/nix-cache-info", None).status(), 401);
    assert_eq!(web.get("/caches/main").status(), 404);
    let missing = web.get("/no/such/page");
    assert_eq!(missing.status(), 404);
    assert!(missing.text().unwrap().contains("Page not found"));
}

fn quotas_are_enforced_and_shown_in_gib(backend: Backend) {
    let keys = Keys::generate("quota-1");
    let server = Server::start(backend);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    let bad = web.post(
        "/caches",
        &[("csrf", &csrf), ("name", "small"), ("priority", "41"), ("quota", "lots"), ("keys", &keys.public)],
    );
    assert!(bad.text().unwrap().contains("id=\"quota-error\""));
    let created = web.post(
        "/caches",
        &[("csrf", &csrf), ("name", "small"), ("priority", "41"), ("quota", "0.00005"), ("keys", &keys.public)],
    );
    assert_eq!(created.status(), 303);

    // 200 KiB of random bytes cannot fit in a quota of about 52 KiB.
    let path = support::nix::add_random_file(200 * 1024, 0x9e37_79b9_7f4a_7c15, "quota-blob");
    let token = server.admin(&["create-token", ADMIN_EMAIL, "--name", "ci"]);
    let cli = support::Cli::new();
    cli.login(&server, &token);
    let out = cli.run(&["push", "small", "--key", keys.secret_path(), &path]);
    assert!(!out.status.success());
    assert!(support::output_text(&out).contains("cache \"small\" is full"), "{}", support::output_text(&out));
    assert_eq!(server.get(&format!("/api/nix/small/{}.narinfo", &path[11..43]), Some(&token)).status(), 404);
    assert!(server.stored_files().iter().all(|f| !f.to_string_lossy().contains("/nar/")), "nothing stored");

    let raised = web
        .post("/caches/small/settings", &[("csrf", &csrf), ("priority", "41"), ("quota", "1"), ("keys", &keys.public)]);
    assert_eq!(raised.status(), 303);
    cli.run_ok(&["push", "small", "--key", keys.secret_path(), &path]);
    let list = web.get("/caches").text().unwrap();
    assert!(list.contains("of 1 GiB") && list.contains("<progress"), "{list}");
}

on_every_backend!(overview_shows_traffic_and_recent_pushes, quotas_are_enforced_and_shown_in_gib);

fn overview_shows_traffic_and_recent_pushes(backend: Backend) {
    let keys = Keys::generate("traffic-1");
    let closure = support::Closure::build("traffic");
    let server = Server::start(backend);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    web.post(
        "/caches",
        &[("csrf", &csrf), ("name", "main"), ("public", "on"), ("priority", "41"), ("keys", &keys.public)],
    );
    let token = server.admin(&["create-token", ADMIN_EMAIL, "--name", "ci"]);
    let cli = support::Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);

    let hash = &closure.app[11..43];
    let narinfo = server.get(&format!("/api/nix/main/{hash}.narinfo"), None).text().unwrap();
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), None).status(), 200);
    assert_eq!(server.get("/api/nix/main/00000000000000000000000000000000.narinfo", None).status(), 404);
    let url = hibernation::nix::NarInfo::parse(&narinfo).unwrap().url;
    let nar = server.get(&format!("/api/nix/main/{url}"), None).bytes().unwrap();

    // Counters are written in batches every few seconds.
    let expected =
        format!("2 narinfo hits, 1 miss, {} of NARs served", hibernation::human::human_bytes(nar.len() as u64));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut page = String::new();
    while std::time::Instant::now() < deadline {
        page = web.get("/").text().unwrap();
        if page.contains(&expected) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(page.contains(&expected), "{page}");
    assert!(page.contains("id=\"traffic-chart\"") && page.contains("2 hits, 1 miss"));
    assert!(page.contains(&closure.app[11..]) && page.contains(&closure.dep[11..]), "recent pushes");
    // The path's own access counter moved too.
    let paths = web.get("/caches/main?sort=accesses").text().unwrap();
    assert!(paths.contains("<td>1</td>"), "{paths}");
}

#[test]
fn a_cache_can_be_renamed() {
    let keys = Keys::generate("rename-1");
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    web.post(
        "/caches",
        &[("csrf", &csrf), ("name", "main"), ("public", "on"), ("priority", "41"), ("keys", &keys.public)],
    );
    web.post("/caches", &[("csrf", &csrf), ("name", "taken"), ("priority", "41"), ("keys", &keys.public)]);
    assert_eq!(server.get("/api/nix/main/nix-cache-info", None).status(), 200);
    let form =
        |name: &'static str| vec![("name", name), ("public", "on"), ("priority", "41"), ("keys", keys.public.as_str())];

    let mut bad = form("Not Valid");
    bad.push(("csrf", &csrf));
    let response = web.post("/caches/main/settings", &bad);
    assert_eq!(response.status(), 422);
    assert!(response.text().unwrap().contains("id=\"name-error\""));
    let mut clash = form("taken");
    clash.push(("csrf", &csrf));
    let clashed = web.post("/caches/main/settings", &clash);
    assert_eq!(clashed.status(), 422);
    let clashed = clashed.text().unwrap();
    assert!(clashed.contains("A cache named taken exists") && clashed.contains("value=\"taken\""), "{clashed}");
    assert_eq!(server.get("/api/nix/main/nix-cache-info", None).status(), 200, "nothing changed");

    let mut good = form("renamed");
    good.push(("csrf", &csrf));
    assert_eq!(location(&web.post("/caches/main/settings", &good)), "/caches/renamed");
    // Anonymous callers cannot tell a deleted (or renamed) cache from a private one.
    assert_eq!(server.get("/api/nix/main/nix-cache-info", None).status(), 401);
    assert_eq!(server.get("/api/nix/renamed/nix-cache-info", None).status(), 200);
}

#[test]
fn storage_lifecycle_is_set_and_shown_on_the_cache_pages() {
    let keys = Keys::generate("storage-1");
    let closure = support::Closure::build(&support::unique_tag("storage"));
    let server = Server::builder(Backend::Sqlite).env(&[("EVICTION_MIN_AGE", "0s")]).start();
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    let created = web.post(
        "/caches",
        &[("csrf", &csrf), ("name", "main"), ("priority", "41"), ("keys", &keys.public), ("quota_policy", "lfu")],
    );
    assert_eq!(location(&created), "/caches/main");
    let page = web.get("/caches/main").text().unwrap();
    assert!(page.contains("evict the least frequently used paths"), "the policy chosen at creation");
    assert!(page.contains("<a href=\"/caches\" aria-current=\"page\">Caches</a>"), "the nav marks where the user is");
    assert!(page.contains("href=\"/static/favicon.svg?v="));
    let icon = server.get("/static/favicon.svg", None);
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(page.contains("No pins.") && page.contains("Unused paths are kept."));

    // Settings: a bad policy or retention is refused next to its field, nothing changed.
    let settings = |policy: &str, retention: &str| {
        web.post(
            "/caches/main/settings",
            &[
                ("csrf", &csrf),
                ("priority", "41"),
                ("keys", &keys.public),
                ("quota", "0.00004"),
                ("quota_policy", policy),
                ("retention_days", retention),
            ],
        )
    };
    let refused = settings("fifo", "");
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("id=\"quota_policy-error\""));
    let refused = settings("lru", "soon");
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("id=\"retention_days-error\""));
    assert!(web.get("/caches/main").text().unwrap().contains("least frequently used"), "nothing changed");
    assert_eq!(location(&settings("oldest", "30")), "/caches/main");
    let page = web.get("/caches/main").text().unwrap();
    assert!(page.contains("evict the oldest paths") && page.contains("Paths unused for 30 days are removed."));
    let form = web.get("/caches/main/settings").text().unwrap();
    assert!(form.contains("<option value=\"oldest\" selected>") && form.contains("value=\"30\""));

    // Pins from the cache page: a path the cache lacks is refused, a held one is pinned,
    // then removed.
    let token = server.admin(&["create-token", ADMIN_EMAIL, "--name", "ci"]);
    let cli = support::Cli::new();
    cli.login(&server, &token);
    let refused = web.post("/caches/main/pins", &[("csrf", &csrf), ("pin", "release"), ("store_path", &closure.app)]);
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("does not hold"));
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    let pinned = web.post("/caches/main/pins", &[("csrf", &csrf), ("pin", "release"), ("store_path", &closure.app)]);
    assert_eq!(location(&pinned), "/caches/main#storage");
    let page = web.get("/caches/main").text().unwrap();
    assert!(page.contains("<td>release</td>") && page.contains(&closure.app), "the pin is listed");
    assert!(cli.run_ok(&["pin", "list", "main"]).contains("release"), "the same pin over the API");
    // The quota (about 42 KiB) holds one closure, not two: the pinned one stays, and the
    // next push is refused saying why.
    let other = support::Closure::build(&support::unique_tag("storage-other"));
    let out = cli.run(&["push", "main", "--key", keys.secret_path(), &other.app]);
    assert!(!out.status.success());
    assert!(support::output_text(&out).contains("what is left is pinned"), "{}", support::output_text(&out));
    // Sizes too small for GiB are said in a unit that shows them.
    assert!(support::output_text(&out).contains(" KiB of its "), "{}", support::output_text(&out));
    assert_eq!(location(&web.post("/caches/main/pins/release/delete", &[("csrf", &csrf)])), "/caches/main#storage");
    assert!(web.get("/caches/main").text().unwrap().contains("No pins."));
    // Unpinned, the old closure is evicted for the new one, and the page says so.
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &other.app]);
    let page = web.get("/caches/main").text().unwrap();
    assert!(page.contains("Last eviction: "), "the last eviction is shown");
    assert!(web.get("/").text().unwrap().contains("reclaimed by garbage collection"));
}
