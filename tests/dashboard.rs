//! The dashboard over HTTP: first run, sessions, CSRF on every state-changing route,
//! anonymous access and escaping. Sign-in, caches and people have files of their own
//! (`dashboard_sign_in.rs`, `dashboard_caches.rs`, `dashboard_people.rs`).

mod support;

use support::web::{ADMIN_EMAIL, ADMIN_PASSWORD, WebClient, location, token_secret};
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
