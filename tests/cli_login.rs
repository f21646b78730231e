//! `hibernation login` through the dashboard: the CLI opens a request and a browser, the
//! signed-in user approves it, the CLI receives a scoped token once.

mod support;

use std::process::Stdio;

use support::PendingLogin;
use support::web::{ADMIN_EMAIL, ADMIN_PASSWORD, WebClient, csrf_in, location};
use support::{Backend, Cli, Server, output_text};

fn signed_in_admin(server: &Server) -> WebClient<'_> {
    let web = WebClient::new(server);
    web.setup_admin();
    web
}

#[test]
fn approving_in_the_dashboard_logs_the_cli_in_with_a_scoped_token() {
    let server = Server::start(Backend::Sqlite);
    let web = signed_in_admin(&server);
    server.admin(&["create-cache", "main", "--no-upstream"]);
    server.admin(&["create-cache", "other", "--no-upstream"]);
    let cli = Cli::new();
    let login = PendingLogin::start(&cli, &server);
    let code = login.code();

    let page = web.get("/cli-login");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["x-frame-options"], "DENY", "no other site may frame the approval page");
    let html = page.text().unwrap();
    assert!(!html.contains(&code), "the page does not give the code away: the user types it");
    let csrf = csrf_in(&html);
    // The first step shows what the code would approve: the machine, its address, when.
    let checked = web.post("/cli-login", &[("csrf", &csrf), ("code", &code.to_lowercase())]);
    assert_eq!(checked.status(), 200);
    let checked = checked.text().unwrap();
    assert!(checked.contains(&format!("<code id=\"request-code\">{code}</code>")), "{checked}");
    assert!(checked.contains("id=\"request-machine\">hibernation on ") && checked.contains(">127.0.0.1<"), "{checked}");
    let unknown = web.post("/cli-login", &[("csrf", &csrf), ("code", "ZZZZ-ZZZZ")]);
    assert_eq!(unknown.status(), 422);
    let unknown = unknown.text().unwrap();
    assert!(unknown.contains("id=\"code-error\"") && unknown.contains("value=\"ZZZZ-ZZZZ\""), "{unknown}");
    assert!(!unknown.contains("id=\"login-request\""));
    // A wrong code approves nothing.
    let wrong = web.post("/cli-login/approve", &[("csrf", &csrf), ("code", "AAAA-AAAA"), ("days", "30")]);
    assert_eq!(wrong.status(), 422);
    assert!(wrong.text().unwrap().contains("id=\"code-error\""));
    // Typed in lower case without the dash, as people do.
    let typed = code.replace('-', "").to_lowercase();
    let approved = web.post(
        "/cli-login/approve",
        &[("csrf", &csrf), ("code", &typed), ("days", "30"), ("cache", "main"), ("permission", "read")],
    );
    assert_eq!(approved.status(), 200);
    let approved = approved.text().unwrap();
    assert!(approved.contains("Login approved") && approved.contains("hibernation on"), "{approved}");

    let (status, text) = login.finish();
    assert!(status.success(), "{text}");
    assert!(text.contains(&code) && text.contains("logged in to") && text.contains("as Ada"), "{text}");
    assert!(cli.run_ok(&["whoami"]).contains("Ada"));
    // The token has the chosen scope: main only, read only, and it expires.
    let list = cli.run_ok(&["cache", "list"]);
    assert!(list.contains("main") && !list.contains("other") && list.contains("read"), "{list}");
    let tokens = web.get("/tokens").text().unwrap();
    // Named after the machine and the time of the login.
    let named = tokens.split("<td>").find(|cell| cell.starts_with("hibernation on ")).unwrap_or_default();
    assert!(named.contains(", 20") && named.contains(" UTC<"), "the token is listed under the user: {tokens}");

    // The request is gone: a second approval finds nothing.
    let again = web.post("/cli-login/approve", &[("csrf", &csrf), ("code", &code), ("days", "30")]);
    assert_eq!(again.status(), 422);
}

#[test]
fn a_denied_login_gets_no_token() {
    let server = Server::start(Backend::Sqlite);
    let web = signed_in_admin(&server);
    let cli = Cli::new();
    let login = PendingLogin::start(&cli, &server);
    let csrf = web.csrf("/cli-login");
    let denied = web.post("/cli-login/deny", &[("csrf", &csrf), ("code", &login.code())]);
    assert_eq!(denied.status(), 200);
    assert!(denied.text().unwrap().contains("Login denied"));
    let (status, text) = login.finish();
    assert!(!status.success() && text.contains("denied"), "{text}");
    assert!(!cli.dir.path().join("config.json").exists(), "nothing was saved");
}

#[test]
fn the_token_is_handed_out_once_and_approval_needs_a_session_and_csrf() {
    let server = Server::start(Backend::Sqlite);
    let web = signed_in_admin(&server);
    let http = reqwest::blocking::Client::new();
    let started: serde_json::Value = http
        .post(format!("{}/api/v1/cli-login", server.url()))
        .json(&serde_json::json!({ "client_name": "<b>ci-box</b>" }))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let (code, secret) = (started["code"].as_str().unwrap(), started["poll_secret"].as_str().unwrap());
    assert_eq!(started["approve_url"], format!("{}/cli-login", server.url()), "the link does not carry the code");
    let poll = || {
        let response = http
            .post(format!("{}/api/v1/cli-login/poll", server.url()))
            .json(&serde_json::json!({ "poll_secret": secret }))
            .send()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().unwrap())
    };
    assert_eq!(poll(), (200, serde_json::json!({ "status": "pending" })));

    // Anonymous visitors are sent to sign in and come back; other targets are not followed.
    let visitor = WebClient::new(&server);
    let response = visitor.get("/cli-login");
    assert_eq!(location(&response), "/sign-in?next=/cli-login");
    let sign_in_page = visitor.get("/sign-in?next=/cli-login").text().unwrap();
    assert!(sign_in_page.contains("name=\"next\" value=\"/cli-login\""));
    let csrf = csrf_in(&sign_in_page);
    let signed = visitor.post(
        "/sign-in",
        &[("csrf", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD), ("next", "/cli-login")],
    );
    assert_eq!(location(&signed), "/cli-login");
    let stranger = WebClient::new(&server);
    let csrf = stranger.csrf("/sign-in?next=//evil.example/x");
    let signed = stranger.post(
        "/sign-in",
        &[("csrf", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD), ("next", "//evil.example/x")],
    );
    assert_eq!(location(&signed), "/");

    // A wrong CSRF token approves nothing; the requester's name is escaped.
    let csrf = web.csrf("/cli-login");
    let refused = web.post("/cli-login/approve", &[("csrf", "wrong"), ("code", code), ("days", "0")]);
    assert_eq!(refused.status(), 403);
    assert_eq!(poll().1["status"], "pending");
    let approved = web.post("/cli-login/approve", &[("csrf", &csrf), ("code", code), ("days", "0")]);
    assert_eq!(approved.status(), 200);
    let html = approved.text().unwrap();
    assert!(html.contains("&#60;b&#62;ci-box&#60;/b&#62;") && !html.contains("<b>ci-box"), "escaped: {html}");
    let (status, answer) = poll();
    assert_eq!((status, answer["status"].as_str()), (200, Some("approved")), "{answer}");
    let token = answer["token"].as_str().unwrap();
    assert_eq!(server.get("/api/v1/whoami", Some(token)).status(), 200);
    let (status, again) = poll();
    assert_eq!(status, 404, "a second poll gets nothing: {again}");

    // Unknown and malformed codes are refused at the field, escaped.
    let answer = web.post("/cli-login/deny", &[("csrf", &csrf), ("code", "<script>")]);
    assert_eq!(answer.status(), 422);
    assert!(!answer.text().unwrap().contains("<script>"));

    // Anyone may open requests, but only a few at once from one address.
    let open = |n: usize| {
        http.post(format!("{}/api/v1/cli-login", server.url()))
            .json(&serde_json::json!({ "client_name": format!("spam {n}") }))
            .send()
            .unwrap()
    };
    let statuses: Vec<u16> = (0..12).map(|n| open(n).status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
    let (status, message) = support::error_of(open(99));
    assert_eq!(status, 429);
    assert!(message.contains("too many login requests"), "{message}");
}

#[test]
fn without_a_terminal_or_token_login_says_what_to_do() {
    let server = Server::start(Backend::Sqlite);
    let cli = Cli::new();
    let out = cli.command(&["login", &server.url()]).stdin(Stdio::null()).output().unwrap();
    let text = output_text(&out);
    assert!(!out.status.success() && text.contains("--token"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("error")).count(), 1, "{text}");
}

#[test]
fn clients_that_fill_their_own_cap_do_not_lock_out_anyone_else() {
    let server = Server::builder(Backend::Sqlite).env(&[("TRUSTED_PROXIES", "127.0.0.1")]).start();
    let http = reqwest::blocking::Client::new();
    let open = |address: &str| {
        http.post(format!("{}/api/v1/cli-login", server.url()))
            .header("x-forwarded-for", address)
            .json(&serde_json::json!({ "client_name": "spam" }))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    // A hundred and one addresses, each at its own cap of ten open requests.
    for host in 0..101u32 {
        let address = format!("10.{}.{}.1", host / 250, host % 250);
        for _ in 0..10 {
            assert_eq!(open(&address), 200, "{address}");
        }
        assert_eq!(open(&address), 429, "{address} is at its cap");
    }
    // Someone else still gets a login request, and polls it (reads only) as often as needed.
    let started = http
        .post(format!("{}/api/v1/cli-login", server.url()))
        .header("x-forwarded-for", "192.0.2.44")
        .json(&serde_json::json!({ "client_name": "laptop" }))
        .send()
        .unwrap();
    assert_eq!(started.status(), 200);
    let started: serde_json::Value = started.json().unwrap();
    for _ in 0..20 {
        let state: serde_json::Value = http
            .post(format!("{}/api/v1/cli-login/poll", server.url()))
            .json(&serde_json::json!({ "poll_secret": started["poll_secret"] }))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(state["status"], "pending", "{state}");
    }
}
