//! The dashboard over HTTP: first run, sign-in, sessions, CSRF on every state-changing
//! route, anonymous access, escaping, and tokens that stop working when revoked.

#[macro_use]
mod support;

use support::web::{ADMIN_EMAIL, ADMIN_PASSWORD, WebClient, csrf_in, location};
use support::{Backend, Keys, Server};

const PAGES: [&str; 10] = [
    "/",
    "/caches",
    "/caches/main",
    "/caches/main/paths",
    "/caches/main/settings",
    "/tokens",
    "/account",
    "/users",
    "/groups",
    "/settings",
];

#[test]
fn first_run_names_the_database_and_storage_before_anything_is_created() {
    for backend in [Backend::Sqlite, Backend::PostgresS3] {
        let server = Server::start(backend);
        let page = WebClient::new(&server).get("/setup").text().unwrap();
        let shown =
            |id: &str| page.split(&format!("id=\"{id}\">")).nth(1).unwrap().split('<').next().unwrap().to_string();
        let (database, storage) = (shown("backend-database"), shown("backend-storage"));
        if backend == Backend::Sqlite {
            assert_eq!(database, format!("SQLite, in the file {}/hibernation.db", server.dir.path().display()));
            assert_eq!(storage, format!("local disk, under {}", server.storage_path().display()));
        } else {
            let port = server.db_url.rsplit(':').next().unwrap().split('/').next().unwrap();
            assert_eq!(database, format!("PostgreSQL, database postgres on 127.0.0.1:{port}"));
            let s3 = server.s3.as_ref().unwrap();
            assert_eq!(storage, format!("S3, bucket hibernation at http://127.0.0.1:{}", s3.port));
            assert!(!page.contains("hibernation-test-secret"), "no S3 secret on the page");
        }
    }
}

#[test]
fn first_run_leads_to_setup_then_sign_in() {
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    for page in PAGES.iter().chain(&["/sign-in"]) {
        let response = web.get(page);
        assert_eq!((response.status().as_u16(), location(&response)), (303, "/setup"), "{page}");
    }
    // The first visitor cannot take the instance without the code the server logged.
    let csrf = web.csrf("/setup");
    for code in ["", "0000-0000-0000-0000"] {
        let form = [
            ("csrf", csrf.as_str()),
            ("setup_code", code),
            ("name", "Eve"),
            ("email", "eve@x.org"),
            ("password", "password123"),
        ];
        let response = web.post("/setup", &form);
        assert_eq!(response.status(), 422);
        assert!(response.text().unwrap().contains("id=\"setup_code-error\""));
    }
    assert_eq!(location(&web.get("/caches")), "/setup", "no administrator was created");
    web.setup_admin();
    assert_eq!(location(&web.get("/setup")), "/", "setup is done once");
    assert!(web.get("/").text().unwrap().contains("id=\"stat-caches\""));

    // A second setup attempt from another browser cannot create another administrator.
    let intruder = WebClient::new(&server);
    let csrf = intruder.csrf("/sign-in");
    let response = intruder
        .post("/setup", &[("csrf", &csrf), ("name", "Eve"), ("email", "eve@x.org"), ("password", "password123")]);
    assert_eq!(location(&response), "/sign-in");
    assert_eq!(intruder.sign_in("eve@x.org", "password123").status(), 401);

    // Anonymous visitors are sent to sign-in; nothing but setup, sign-in and the cache
    // protocol is reachable without a session.
    for page in PAGES {
        let response = intruder.get(page);
        let back = if page == "/" { "/sign-in".to_string() } else { format!("/sign-in?next={page}") };
        assert_eq!((response.status().as_u16(), location(&response)), (303, back.as_str()), "{page}");
    }
    for (path, form) in [("/caches", vec![("name", "x")]), ("/tokens", vec![("name", "x")])] {
        let csrf = intruder.csrf("/sign-in");
        let mut form = form;
        form.push(("csrf", &csrf));
        assert_eq!(location(&intruder.post(path, &form)), "/sign-in");
    }
    // The CLI login page sends visitors to sign in and back; its actions need a session.
    assert_eq!(location(&intruder.get("/cli-login")), "/sign-in?next=/cli-login");
    let csrf = intruder.csrf("/sign-in");
    assert_eq!(location(&intruder.post("/cli-login/approve", &[("csrf", &csrf), ("code", "AAAA-AAAA")])), "/sign-in");
    assert_eq!(server.get("/static/style.css", None).status(), 200);
    // Pages name their assets with a fingerprint, so an upgrade's new ones are fetched.
    let page = intruder.get("/sign-in").text().unwrap();
    let versioned = page.split("href=\"").find(|s| s.starts_with("/static/style.css?v=")).unwrap();
    let url = versioned.split('"').next().unwrap();
    assert!(url.len() > "/static/style.css?v=".len(), "{url}");
    let css = server.get(url, None);
    assert_eq!(css.status(), 200);
    assert!(css.text().unwrap().contains("--input-line"), "the stylesheet itself");
}

#[test]
fn sessions_cookies_sign_out_and_rate_limits() {
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let browser = WebClient::new(&server);
    let response = browser.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!(response.status(), 303);
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain-http SITE_URL: no Secure flag");
    assert_eq!(browser.get("/").status(), 200);

    let csrf = browser.csrf("/");
    assert_eq!(location(&browser.post("/sign-out", &[("csrf", &csrf)])), "/sign-in");
    assert_eq!(location(&browser.get("/")), "/sign-in", "the session ended");

    // Five failures from one address, then even the right password is refused for a while.
    let attacker = WebClient::new(&server);
    for _ in 0..5 {
        assert_eq!(attacker.sign_in(ADMIN_EMAIL, "wrong password").status(), 401);
    }
    let limited = attacker.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!(limited.status(), 429);
    assert!(limited.text().unwrap().contains("too many failed sign-ins"));
}

#[test]
fn every_state_changing_route_checks_csrf() {
    let keys = Keys::generate("csrf-1");
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/tokens");
    // Create what the routes act on.
    assert_eq!(
        web.post("/caches", &[("csrf", &csrf), ("name", "main"), ("priority", "41"), ("keys", &keys.public)]).status(),
        303
    );
    let created = web.post("/tokens", &[("csrf", &csrf), ("name", "ci"), ("days", "30")]).text().unwrap();
    let token_id = created.split("/tokens/").nth(1).and_then(|s| s.split('/').next()).unwrap().to_string();
    let login: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/cli-login", server.url()))
        .json(&serde_json::json!({ "client_name": "ci" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let code = login["code"].as_str().unwrap();

    // Forms that pass their extractors, for routes that take fields: the refusal must come
    // from the CSRF check, not from a missing field. Keyed by route template.
    let forms: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/caches", vec![("name", "second"), ("priority", "41"), ("keys", &keys.public)]),
        ("/tokens", vec![("name", "second"), ("days", "30")]),
        ("/tokens/:id/edit", vec![("name", "renamed"), ("days", "30")]),
        ("/caches/:name/settings", vec![("priority", "1"), ("keys", &keys.public)]),
        ("/caches/:name/clear", vec![("confirm", "main")]),
        ("/caches/:name/delete", vec![("confirm", "main")]),
        ("/account", vec![("name", "Mallory")]),
        ("/users", vec![("name", "m"), ("email", "m@x.org"), ("password", "password123")]),
        ("/users/:id/profile", vec![("name", "Mallory"), ("email", "m@x.org")]),
        ("/users/:id/password", vec![("password", "password123")]),
        ("/users/:id/groups", vec![("group_id", "1")]),
        ("/users/:id/access", vec![("cache_id", "1"), ("permission", "manage")]),
        ("/caches/:name/access", vec![("user_id", "1"), ("permission", "push")]),
        ("/caches/:name/group-access", vec![("group_id", "1"), ("permission", "push")]),
        ("/groups", vec![("name", "g")]),
        ("/groups/:id/members", vec![("user_id", "1")]),
        ("/cli-login", vec![("code", code)]),
        ("/cli-login/approve", vec![("code", code), ("days", "30")]),
        ("/cli-login/deny", vec![("code", code)]),
        ("/users/invite", vec![("name", "m"), ("email", "m@x.org")]),
        ("/settings", vec![("host", "smtp.example.com"), ("from", "a@example.com")]),
        ("/forgot-password", vec![("email", ADMIN_EMAIL)]),
        ("/invite/:secret", vec![("password", "password123")]),
        ("/reset/:secret", vec![("password", "password123")]),
        ("/sign-in", vec![("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)]),
        ("/setup", vec![("name", "x"), ("email", "x@x.org"), ("password", "password123")]),
    ];
    // Every POST route of the dashboard, read from its router: a new one is checked too.
    let routes = dashboard_post_routes();
    assert!(routes.len() >= 50, "the router was read: {routes:?}");
    for (template, _) in &forms {
        assert!(routes.iter().any(|r| r == template), "{template} is no POST route of the dashboard");
    }
    // Sign-out and sign-in last: the rest need the session.
    let mut ordered: Vec<&String> = routes.iter().filter(|r| !r.starts_with("/sign-")).collect();
    ordered.extend(routes.iter().filter(|r| r.starts_with("/sign-")));
    for template in ordered {
        let path = fill_route(template, &token_id);
        let form = forms.iter().find(|(t, _)| t == template).map(|(_, f)| f.clone()).unwrap_or_default();
        for bad in [None, Some("00000000000000000000000000000000")] {
            let mut fields = form.clone();
            if let Some(value) = bad {
                fields.push(("csrf", value));
            }
            // The avatar upload is a multipart form (its token travels inside it).
            let response = if template == "/account/avatar" {
                web.post_file(&path, &fields, ("picture", "a.png", b"not read".to_vec()))
            } else {
                web.post(&path, &fields)
            };
            assert_eq!(response.status(), 403, "{path} with csrf {bad:?}");
            assert!(response.text().unwrap().contains("Form expired"), "{path}");
        }
    }
    // Nothing changed: one cache, one active token, still signed in.
    let caches = web.get("/caches").text().unwrap();
    assert!(caches.contains("/caches/main") && !caches.contains("/caches/second"));
    assert!(
        server
            .get("/api/nix/main/nix-cache-info", Some(&token_secret(&created)))
            .text()
            .unwrap()
            .contains("Priority: 41")
    );
    let tokens = web.get("/tokens").text().unwrap();
    assert!(!tokens.contains(">second<") && tokens.contains("active"), "{tokens}");
    let poll: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/cli-login/poll", server.url()))
        .json(&serde_json::json!({ "poll_secret": login["poll_secret"] }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(poll["status"], "pending", "the login request was neither approved nor denied");
}

/// The paths of the dashboard's router (`src/web/ui/mod.rs`) that accept POST, as templates.
fn dashboard_post_routes() -> Vec<String> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/web/ui/mod.rs")).unwrap();
    let mut routes = Vec::new();
    for call in source.split(".at(").skip(1) {
        // The call's own arguments: up to the parenthesis that closes `.at(`.
        let mut depth = 1;
        let end = call
            .char_indices()
            .find(|(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap();
        let arguments = &call[..end];
        let path = arguments.split('"').nth(1).unwrap();
        if arguments.contains("post(") {
            routes.push(path.to_string());
        }
    }
    routes
}

/// A route template with its parameters filled in with things that exist (or not: the CSRF
/// check comes first either way).
fn fill_route(template: &str, token_id: &str) -> String {
    template
        .split('/')
        .map(|part| match part {
            ":name" => "main".to_string(),
            ":hash" => "00000000000000000000000000000000".to_string(),
            ":secret" => "abc".to_string(),
            ":id" if template.starts_with("/tokens/") => token_id.to_string(),
            p if p.starts_with(':') => "1".to_string(),
            p => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

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

/// From the groups page: the first group's id and the id of `user` in its member list.
fn first_group_and_user(groups_page: &str, user: &str) -> (String, String) {
    let group = groups_page.split("/groups/").nth(1).unwrap().split('/').next().unwrap().to_string();
    let option = groups_page.split("<option value=\"").skip(1).find(|s| s.contains(&format!(">{user} ("))).unwrap();
    (group, option.split('"').next().unwrap().to_string())
}

fn token_secret(page: &str) -> String {
    page.split("id=\"new-token\">").nth(1).unwrap().split('<').next().unwrap().to_string()
}

#[test]
fn user_input_is_escaped_and_form_errors_sit_next_to_their_field() {
    let keys = Keys::generate("escape-1");
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    let response = web.post(
        "/caches",
        &[("csrf", &csrf), ("name", "<script>alert(1)</script>"), ("priority", "41"), ("keys", &keys.public)],
    );
    assert_eq!(response.status(), 422);
    let html = response.text().unwrap();
    assert!(html.contains("id=\"name-error\""), "the error is shown at the name field");
    assert!(
        !html.contains("<script>alert(1)</script>") && html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{html}"
    );
    let bad_key = web.post("/caches", &[("csrf", &csrf), ("name", "ok"), ("priority", "41"), ("keys", "not-a-key")]);
    assert!(bad_key.text().unwrap().contains("id=\"keys-error\""));

    let html = web
        .post("/tokens", &[("csrf", &csrf), ("name", "<img src=x onerror=alert(1)>"), ("days", "30")])
        .text()
        .unwrap();
    assert!(!html.contains("<img src=x") && html.contains("&#60;img src=x onerror=alert(1)&#62;"), "{html}");
}

#[test]
fn a_token_revoked_in_the_dashboard_stops_working_at_once() {
    let keys = Keys::generate("revoke-1");
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    web.post("/caches", &[("csrf", &csrf), ("name", "main"), ("priority", "41"), ("keys", &keys.public)]);
    let page = web.post("/tokens", &[("csrf", &csrf), ("name", "laptop"), ("days", "0")]).text().unwrap();
    let secret = token_secret(&page);
    assert!(secret.starts_with("hib_"));
    assert!(!web.get("/tokens").text().unwrap().contains(&secret), "the secret is shown once");

    assert_eq!(server.get("/api/nix/main/nix-cache-info", Some(&secret)).status(), 200);
    assert_eq!(server.get("/api/v1/whoami", Some(&secret)).status(), 200);
    let tokens = web.get("/tokens").text().unwrap();
    let id = tokens.split("/tokens/").nth(1).unwrap().split('/').next().unwrap().to_string();
    assert_eq!(web.post(&format!("/tokens/{id}/revoke"), &[("csrf", &csrf_in(&tokens))]).status(), 303);
    assert_eq!(server.get("/api/nix/main/nix-cache-info", Some(&secret)).status(), 401);
    assert_eq!(server.get("/api/v1/whoami", Some(&secret)).status(), 401);
    assert!(web.get("/tokens").text().unwrap().contains("revoked"));

    // A read-only token limited to one cache, made in the dashboard.
    let page = web
        .post(
            "/tokens",
            &[("csrf", &csrf), ("name", "reader"), ("days", "30"), ("cache", "main"), ("permission", "read")],
        )
        .text()
        .unwrap();
    let reader = token_secret(&page);
    assert!(page.contains("read only"));
    assert_eq!(server.get("/api/nix/main/nix-cache-info", Some(&reader)).status(), 200);
    let plan = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/caches/main/push-plan", server.url()))
        .bearer_auth(&reader)
        .json(&serde_json::json!({"paths": []}))
        .send()
        .unwrap();
    assert_eq!(plan.status(), 403, "a read-only token cannot push");
    let foreign = web.post("/tokens", &[("csrf", &csrf), ("name", "x"), ("days", "30"), ("cache", "nope")]);
    assert_eq!(foreign.status(), 422);
}

#[test]
fn cache_settings_clear_and_delete() {
    let keys = Keys::generate("settings-1");
    let other = Keys::generate("settings-2");
    let closure = support::Closure::build("settings");
    // Unused NARs are collected at once.
    let server = Server::start_with_env(Backend::Sqlite, &[("GC_GRACE", "0s")]);
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

#[test]
fn account_name_and_password_change() {
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/account");
    let wrong = web.post(
        "/account",
        &[("csrf", &csrf), ("name", "Ada L."), ("current_password", "nope"), ("new_password", "new password!")],
    );
    assert_eq!(wrong.status(), 422);
    assert!(wrong.text().unwrap().contains("id=\"current-password-error\""));
    let short = web.post(
        "/account",
        &[("csrf", &csrf), ("name", "Ada L."), ("current_password", ADMIN_PASSWORD), ("new_password", "short")],
    );
    assert!(short.text().unwrap().contains("id=\"new-password-error\""));
    let saved = web.post(
        "/account",
        &[("csrf", &csrf), ("name", "Ada L."), ("current_password", ADMIN_PASSWORD), ("new_password", "new password!")],
    );
    let saved = web.follow(saved);
    assert!(saved.contains("Ada L.") && saved.contains("other sessions were signed out"), "{saved}");

    let other = WebClient::new(&server);
    assert_eq!(other.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).status(), 401, "the old password no longer works");
    assert_eq!(other.sign_in(ADMIN_EMAIL, "new password!").status(), 303);
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
fn users_and_per_cache_access() {
    let keys = Keys::generate("access-1");
    let server = Server::start(Backend::Sqlite);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let csrf = admin.csrf("/users");
    admin.post("/caches", &[("csrf", &csrf), ("name", "main"), ("priority", "41"), ("keys", &keys.public)]);
    let short =
        admin.post("/users", &[("csrf", &csrf), ("name", "Bob"), ("email", "bob@example.com"), ("password", "short")]);
    assert!(short.text().unwrap().contains("id=\"password-error\""));
    let created = admin.post(
        "/users",
        &[("csrf", &csrf), ("name", "Bob"), ("email", "bob@example.com"), ("password", "bob password")],
    );
    assert_eq!(location(&created), "/users");

    let bob = WebClient::new(&server);
    assert_eq!(bob.sign_in("bob@example.com", "bob password").status(), 303);
    assert!(!bob.get("/caches").text().unwrap().contains("/caches/main"), "no access yet");
    assert_eq!(bob.get("/caches/main").status(), 404);
    assert_eq!(bob.get("/users").status(), 403, "users are managed by administrators");
    let overview = bob.get("/").text().unwrap();
    assert!(!overview.contains("href=\"/users\""));
    // Totals count only what bob can see; storage reclaimed across caches is not his to see.
    assert!(overview.contains("id=\"stat-caches\">0</b>caches"), "{overview}");
    assert!(!overview.contains("reclaimed by garbage collection"));

    // Read access: bob sees the cache but cannot change it.
    let settings = admin.get("/caches/main/settings").text().unwrap();
    let user_select = settings.split("name=\"user_id\"").nth(1).unwrap();
    let bob_id = user_select.split("<option value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let granted = admin.post("/caches/main/access", &[("csrf", &csrf), ("user_id", &bob_id), ("permission", "read")]);
    assert_eq!(location(&granted), "/caches/main/settings");
    assert_eq!(bob.get("/caches/main").status(), 200);
    assert!(bob.get("/").text().unwrap().contains("id=\"stat-caches\">1</b>cache<"), "one cache, singular");
    assert_eq!(bob.get("/caches/main/settings").status(), 403);
    let bob_csrf = bob.csrf("/caches/main");
    let escalate =
        bob.post("/caches/main/access", &[("csrf", &bob_csrf), ("user_id", &bob_id), ("permission", "push")]);
    assert_eq!(escalate.status(), 403, "read access cannot grant push");

    // Revoked: gone again.
    let revoked = admin.post(&format!("/caches/main/access/{bob_id}/revoke"), &[("csrf", &csrf)]);
    assert_eq!(location(&revoked), "/caches/main/settings");
    assert_eq!(bob.get("/caches/main").status(), 404);

    // The last administrator cannot be deleted; bob can, and his session ends.
    let users = admin.get("/users").text().unwrap();
    let mut ids: Vec<&str> = users.split("action=\"/users/").skip(1).map(|s| s.split('/').next().unwrap()).collect();
    ids.dedup();
    let (first, second) = (ids[0].to_string(), ids[1].to_string());
    let (ada_id, bob_row) = if first == bob_id { (second, first) } else { (first, second) };
    let refused = admin.post(&format!("/users/{ada_id}/delete"), &[("csrf", &csrf)]);
    assert_eq!(refused.status(), 409);
    assert!(refused.text().unwrap().contains("last administrator"));
    assert_eq!(location(&admin.post(&format!("/users/{bob_row}/delete"), &[("csrf", &csrf)])), "/users");
    assert_eq!(location(&bob.get("/")), "/sign-in");
}

#[test]
fn admin_command_creates_a_dashboard_login() {
    use std::io::Write;
    let server = Server::start(Backend::Sqlite);
    WebClient::new(&server).setup_admin();
    server.create_user_with_password("carol", "Carol@Example.com", "carol's password");
    let carol = WebClient::new(&server);
    assert_eq!(carol.sign_in("carol@example.com", "carol's password").status(), 303);
    let mut short = server.command(Some(&["admin", "create-user", "dave", "--email", "d@x.org", "--password-stdin"]));
    let mut child = short.stdin(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "short").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8 characters"));
}

#[test]
fn groups_grant_access_and_the_right_to_create_caches() {
    let keys = Keys::generate("groups-1");
    let server = Server::start(Backend::Sqlite);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let csrf = admin.csrf("/groups");
    admin.post("/caches", &[("csrf", &csrf), ("name", "main"), ("priority", "41"), ("keys", &keys.public)]);
    admin.post(
        "/users",
        &[("csrf", &csrf), ("name", "Bob"), ("email", "bob@example.com"), ("password", "bob password")],
    );
    let bob = WebClient::new(&server);
    assert_eq!(bob.sign_in("bob@example.com", "bob password").status(), 303);
    let bob_csrf = bob.csrf("/caches");
    let denied =
        bob.post("/caches", &[("csrf", &bob_csrf), ("name", "bobs"), ("priority", "41"), ("keys", &keys.public)]);
    assert_eq!(denied.status(), 403, "plain users do not create caches");

    // A group that may create caches, with bob in it, and read access to main.
    assert_eq!(
        location(&admin.post("/groups", &[("csrf", &csrf), ("name", "builders"), ("create_caches", "on")])),
        "/groups"
    );
    let groups = admin.get("/groups").text().unwrap();
    let (group_id, bob_id) = first_group_and_user(&groups, "Bob");
    assert_eq!(
        location(&admin.post(&format!("/groups/{group_id}/members"), &[("csrf", &csrf), ("user_id", &bob_id)])),
        "/groups"
    );
    let granted =
        admin.post("/caches/main/group-access", &[("csrf", &csrf), ("group_id", &group_id), ("permission", "read")]);
    assert_eq!(location(&granted), "/caches/main/settings");

    assert_eq!(bob.get("/caches/main").status(), 200, "read through the group");
    assert_eq!(bob.get("/caches/main/settings").status(), 403, "read is not push");
    let created =
        bob.post("/caches", &[("csrf", &bob_csrf), ("name", "bobs"), ("priority", "41"), ("keys", &keys.public)]);
    assert_eq!(location(&created), "/caches/bobs");
    assert_eq!(bob.get("/caches/bobs/settings").status(), 200, "the creator manages the new cache");

    // Leaving the group takes the access away.
    let removed = admin.post(&format!("/groups/{group_id}/members/{bob_id}/remove"), &[("csrf", &csrf)]);
    assert_eq!(location(&removed), "/groups");
    assert_eq!(bob.get("/caches/main").status(), 404);
    let again =
        bob.post("/caches", &[("csrf", &bob_csrf), ("name", "more"), ("priority", "41"), ("keys", &keys.public)]);
    assert_eq!(again.status(), 403);
    assert_eq!(bob.get("/groups").status(), 403);
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
fn administrators_can_come_from_a_group_and_one_always_remains() {
    let server = Server::start(Backend::Sqlite);
    let ada = WebClient::new(&server);
    ada.setup_admin();
    let csrf = ada.csrf("/groups");
    ada.post("/users", &[("csrf", &csrf), ("name", "Bob"), ("email", "bob@example.com"), ("password", "bob password")]);
    assert_eq!(location(&ada.post("/groups", &[("csrf", &csrf), ("name", "admins"), ("administer", "on")])), "/groups");
    let groups = ada.get("/groups").text().unwrap();
    assert!(groups.contains("Members are administrators (every permission)."));
    let (group_id, bob_id) = first_group_and_user(&groups, "Bob");
    ada.post(&format!("/groups/{group_id}/members"), &[("csrf", &csrf), ("user_id", &bob_id)]);

    // Bob administers through the group, in the dashboard and with his API tokens.
    let bob = WebClient::new(&server);
    assert_eq!(bob.sign_in("bob@example.com", "bob password").status(), 303);
    assert_eq!(bob.get("/users").status(), 200);
    let bob_csrf = bob.csrf("/tokens");
    let token =
        token_secret(&bob.post("/tokens", &[("csrf", &bob_csrf), ("name", "t"), ("days", "30")]).text().unwrap());
    assert_eq!(server.get("/api/v1/whoami", Some(&token)).status(), 200);

    // Ada's account can go: Bob remains an administrator. Then Bob cannot leave the group,
    // nor delete it, nor himself: there would be no administrator left.
    let users = bob.get("/users").text().unwrap();
    let ada_id = users
        .split("/users/")
        .skip(1)
        .map(|s| s.split(|c: char| !c.is_ascii_digit()).next().unwrap())
        .find(|id| !id.is_empty() && *id != bob_id)
        .unwrap()
        .to_string();
    assert_eq!(location(&bob.post(&format!("/users/{ada_id}/delete"), &[("csrf", &bob_csrf)])), "/users");
    let leave = bob.post(&format!("/groups/{group_id}/members/{bob_id}/remove"), &[("csrf", &bob_csrf)]);
    assert_eq!(leave.status(), 409);
    assert!(leave.text().unwrap().contains("no administrator"));
    assert_eq!(bob.post(&format!("/groups/{group_id}/delete"), &[("csrf", &bob_csrf)]).status(), 409);
    let narrowed = bob.post(&format!("/groups/{group_id}/permissions"), &[("csrf", &bob_csrf), ("edit_users", "on")]);
    assert_eq!(narrowed.status(), 409, "narrowing the only administrators' group is refused");
    assert_eq!(server.count(&format!("SELECT permissions AS n FROM user_groups WHERE id = {group_id}")), 511);
    assert_eq!(bob.post(&format!("/users/{bob_id}/delete"), &[("csrf", &bob_csrf)]).status(), 409);
    assert_eq!(bob.get("/users").status(), 200, "still an administrator");
}

/// Signs in as the administrator with `X-Forwarded-For: forwarded` (when given) and returns
/// the status.
fn sign_in_from(server: &Server, forwarded: Option<&str>, password: &str) -> u16 {
    sign_in_as(server, forwarded, ADMIN_EMAIL, password)
}

/// Signs in as `email` with `X-Forwarded-For: forwarded` (when given) and returns the status.
fn sign_in_as(server: &Server, forwarded: Option<&str>, email: &str, password: &str) -> u16 {
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(format!("{}/sign-in", server.url())).send().unwrap().text().unwrap();
    let mut request = client.post(format!("{}/sign-in", server.url())).form(&[
        ("csrf", csrf_in(&page).as_str()),
        ("email", email),
        ("password", password),
    ]);
    if let Some(address) = forwarded {
        request = request.header("x-forwarded-for", address);
    }
    request.send().unwrap().status().as_u16()
}

#[test]
fn rate_limits_see_the_client_behind_a_trusted_proxy_and_ignore_claims_otherwise() {
    let proxied = Server::start_with_env(Backend::Sqlite, &[("TRUSTED_PROXIES", "127.0.0.1, 10.9.0.0/16")]);
    WebClient::new(&proxied).setup_admin();
    for _ in 0..5 {
        assert_eq!(sign_in_from(&proxied, Some("203.0.113.7"), "wrong password"), 401);
    }
    assert_eq!(sign_in_from(&proxied, Some("203.0.113.7"), ADMIN_PASSWORD), 429, "that client is limited");
    assert_eq!(sign_in_from(&proxied, Some("198.51.100.1, 203.0.113.8"), ADMIN_PASSWORD), 303, "another client is not");
    // A client's own claim left of the proxies does not move it elsewhere.
    assert_eq!(sign_in_from(&proxied, Some("198.51.100.1, 203.0.113.7, 10.9.0.5"), ADMIN_PASSWORD), 429);

    let direct = Server::start(Backend::Sqlite);
    WebClient::new(&direct).setup_admin();
    for n in 0..5 {
        assert_eq!(sign_in_from(&direct, Some(&format!("192.0.2.{n}")), "wrong password"), 401);
    }
    assert_eq!(
        sign_in_from(&direct, Some("192.0.2.99"), ADMIN_PASSWORD),
        429,
        "without trusted proxies the header is ignored"
    );
}

#[test]
fn sign_in_failures_count_per_address_and_per_account() {
    let server = Server::start_with_env(Backend::Sqlite, &[("TRUSTED_PROXIES", "127.0.0.1")]);
    WebClient::new(&server).setup_admin();
    let (mallory, mallory_password) = ("mallory@example.com", "mallory's own password");
    server.create_user_with_password("Mallory", mallory, mallory_password);

    // Signing in to her own account between guesses does not reset the count on Ada's.
    let attacker = Some("203.0.113.9");
    for _ in 0..4 {
        assert_eq!(sign_in_from(&server, attacker, "a guess"), 401);
    }
    assert_eq!(sign_in_as(&server, attacker, mallory, mallory_password), 303);
    assert_eq!(sign_in_from(&server, attacker, "a guess"), 401);
    assert_eq!(sign_in_from(&server, attacker, ADMIN_PASSWORD), 429, "five failures from one address");

    // Guesses spread over many addresses are limited per account (20 per quarter hour).
    for n in 0..15 {
        assert_eq!(sign_in_from(&server, Some(&format!("198.51.100.{n}")), "a guess"), 401, "guess {n}");
    }
    assert_eq!(sign_in_from(&server, Some("192.0.2.1"), ADMIN_PASSWORD), 429, "the account is limited");
    assert_eq!(sign_in_as(&server, Some("192.0.2.1"), mallory, mallory_password), 303, "other accounts are not");
    // An unknown account is refused like a wrong password.
    assert_eq!(sign_in_as(&server, Some("192.0.2.2"), "nobody@example.com", "a guess"), 401);
}

#[test]
fn a_password_change_ends_other_sessions_and_csrf_tokens_belong_to_their_session() {
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let laptop = WebClient::new(&server);
    let signed_in = laptop.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD);
    assert_eq!(signed_in.status(), 303);
    let set_cookie = signed_in.headers()["set-cookie"].to_str().unwrap().to_string();
    let session = set_cookie.split(';').next().unwrap().to_string();

    // A planted CSRF cookie and the same value in the form (a forgeable double submit) do
    // not pass: a signed-in form needs the token derived from its own session.
    let forged = "0123456789abcdef0123456789abcdef";
    let raw = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = raw
        .post(format!("{}/tokens", server.url()))
        .header("cookie", format!("{session}; hibernation_csrf={forged}"))
        .form(&[("csrf", forged), ("name", "forged"), ("days", "30")])
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);
    // Nor does the token of another session.
    let other_csrf = web.csrf("/tokens");
    let response = laptop.post("/tokens", &[("csrf", &other_csrf), ("name", "borrowed"), ("days", "30")]);
    assert_eq!(response.status(), 403);
    let own_csrf = laptop.csrf("/tokens");
    assert_ne!(own_csrf, other_csrf);
    assert_eq!(laptop.post("/tokens", &[("csrf", &own_csrf), ("name", "own"), ("days", "30")]).status(), 200);

    // Changing the password here signs the laptop out, and keeps this session.
    let csrf = web.csrf("/account");
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "Ada"),
        ("current_password", ADMIN_PASSWORD),
        ("new_password", "a brand new password"),
    ];
    assert_eq!(web.post("/account", &form).status(), 303);
    assert_eq!(location(&laptop.get("/")), "/sign-in", "the other session ended");
    assert_eq!(web.get("/").status(), 200, "this session goes on");
}

#[test]
fn users_are_named_by_their_login_which_renaming_cannot_change() {
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    server.admin(&["create-cache", "main"]);
    server.create_user_with_password("bob", "bob@example.com", "bob's password");
    let bob = WebClient::new(&server);
    assert_eq!(bob.sign_in("bob@example.com", "bob's password").status(), 303);

    // Bob takes the display name of someone the administrator is about to grant access to.
    let csrf = bob.csrf("/account");
    assert_eq!(bob.post("/account", &[("csrf", &csrf), ("name", "dave")]).status(), 303);
    assert!(bob.get("/account").text().unwrap().contains("<code id=\"login\">bob</code>"));
    let out = server.command(Some(&["admin", "grant", "dave", "main", "--push"])).output().unwrap();
    assert!(!out.status.success(), "a display name does not name a user in commands");
    assert!(support::output_text(&out).contains("user \"dave\" or cache \"main\" does not exist"));
    assert_eq!(bob.get("/caches/main").status(), 404, "bob got nothing");

    // Forms show who is who: the display name with the login beside it.
    let settings = web.get("/caches/main/settings").text().unwrap();
    assert!(settings.contains(">dave (bob)<"), "{settings}");
    server.admin(&["grant", "bob", "main"]);
    assert_eq!(bob.get("/caches/main").status(), 200);
    // A display name with a line break (it would end up in mail headers) is refused.
    let refused = bob.post("/account", &[("csrf", &csrf), ("name", "dave\r\nBcc: everyone@example.com")]);
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("line breaks"));
}

#[test]
fn storage_lifecycle_is_set_and_shown_on_the_cache_pages() {
    let keys = Keys::generate("storage-1");
    let closure = support::Closure::build(&support::unique_tag("storage"));
    let server = Server::start_with_env(Backend::Sqlite, &[("EVICTION_MIN_AGE", "0s")]);
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

#[test]
fn forgot_password_says_when_no_mail_can_be_sent() {
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    let anonymous = WebClient::new(&server);
    let page = anonymous.get("/forgot-password").text().unwrap();
    assert!(page.contains("id=\"no-mail\"") && !page.contains("id=\"send-reset\""), "{page}");
    // Revoking a token and deleting a user ask first.
    assert!(web.get("/users").text().unwrap().contains("hx-confirm=\"Delete Ada?"));
}
