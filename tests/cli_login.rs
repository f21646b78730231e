//! `hibernation login` through the dashboard: the CLI opens a request and a browser, the
//! signed-in user approves it, the CLI receives a scoped token once.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::web::{ADMIN_EMAIL, ADMIN_PASSWORD, WebClient, csrf_in, location};
use support::{Backend, Cli, Server, output_text, wait_until};

/// `hibernation login <url> --browser` with a "browser" that writes the URL it is given.
struct PendingLogin {
    child: Child,
    opened: std::path::PathBuf,
}

impl PendingLogin {
    fn start(cli: &Cli, server: &Server) -> Self {
        let opened = cli.dir.path().join("opened-url");
        let browser = cli.dir.path().join("browser.sh");
        std::fs::write(&browser, format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display())).unwrap();
        std::fs::set_permissions(&browser, std::fs::Permissions::from_mode(0o755)).unwrap();
        let child = cli
            .command(&["login", &server.url(), "--browser"])
            .env("BROWSER", &browser)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pending = Self { child, opened };
        wait_until(Duration::from_secs(20), "the CLI to open the browser", || {
            std::fs::read_to_string(&pending.opened).is_ok_and(|u| u.trim().len() > 10)
        });
        pending
    }

    /// The approval page's path, e.g. `/cli-login/ABCD-EFGH`.
    fn page(&self, server: &Server) -> String {
        let url = std::fs::read_to_string(&self.opened).unwrap().trim().to_string();
        url.strip_prefix(&server.url()).expect("the link points at the server").to_string()
    }

    fn finish(self) -> std::process::Output {
        self.child.wait_with_output().unwrap()
    }
}

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
    let page_path = login.page(&server);
    let code = page_path.strip_prefix("/cli-login/").unwrap().to_string();

    let page = web.get(&page_path);
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(html.contains(&code) && html.contains("hibernation on"), "the page names the code and the machine");
    let csrf = csrf_in(&html);
    let approved = web.post(
        &format!("{page_path}/approve"),
        &[("csrf", &csrf), ("days", "30"), ("cache", "main"), ("permission", "read")],
    );
    assert_eq!(approved.status(), 200);
    assert!(approved.text().unwrap().contains("Login approved"));

    let out = login.finish();
    let text = output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&code) && text.contains("logged in to") && text.contains("as Ada"), "{text}");
    assert!(cli.run_ok(&["whoami"]).contains("Ada"));
    // The token has the chosen scope: main only, read only, and it expires.
    let list = cli.run_ok(&["cache", "list"]);
    assert!(list.contains("main") && !list.contains("other") && list.contains("read"), "{list}");
    let tokens = web.get("/tokens").text().unwrap();
    assert!(tokens.contains(&format!("({code})")), "the token is listed under the user");

    // The request is gone: the page and a second approval find nothing.
    assert_eq!(web.get(&page_path).status(), 404);
    let again = web.post(&format!("{page_path}/approve"), &[("csrf", &csrf), ("days", "30")]);
    assert_eq!(again.status(), 404);
}

#[test]
fn a_denied_login_gets_no_token() {
    let server = Server::start(Backend::Sqlite);
    let web = signed_in_admin(&server);
    let cli = Cli::new();
    let login = PendingLogin::start(&cli, &server);
    let page_path = login.page(&server);
    let csrf = web.csrf(&page_path);
    let denied = web.post(&format!("{page_path}/deny"), &[("csrf", &csrf)]);
    assert_eq!(denied.status(), 200);
    let out = login.finish();
    let text = output_text(&out);
    assert!(!out.status.success() && text.contains("denied"), "{text}");
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
    let page_path = format!("/cli-login/{code}");
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
    let response = visitor.get(&page_path);
    assert_eq!(location(&response), format!("/sign-in?next={page_path}"));
    let csrf = visitor.csrf(&format!("/sign-in?next={page_path}"));
    let signed = visitor.post(
        "/sign-in",
        &[("csrf", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD), ("next", &page_path)],
    );
    assert_eq!(location(&signed), page_path);
    let stranger = WebClient::new(&server);
    let csrf = stranger.csrf("/sign-in?next=//evil.example/x");
    let signed = stranger.post(
        "/sign-in",
        &[("csrf", &csrf), ("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD), ("next", "//evil.example/x")],
    );
    assert_eq!(location(&signed), "/");

    // The requester's name is escaped; a wrong CSRF token approves nothing.
    let html = web.get(&page_path).text().unwrap();
    assert!(html.contains("&#60;b&#62;ci-box&#60;/b&#62;") && !html.contains("<b>ci-box"), "escaped");
    let refused = web.post(&format!("{page_path}/approve"), &[("csrf", "wrong"), ("days", "0")]);
    assert_eq!(refused.status(), 403);
    assert_eq!(poll().1["status"], "pending");

    let csrf = csrf_in(&html);
    assert_eq!(web.post(&format!("{page_path}/approve"), &[("csrf", &csrf), ("days", "0")]).status(), 200);
    let (status, answer) = poll();
    assert_eq!((status, answer["status"].as_str()), (200, Some("approved")), "{answer}");
    let token = answer["token"].as_str().unwrap();
    assert_eq!(server.get("/api/v1/whoami", Some(token)).status(), 200);
    let (status, again) = poll();
    assert_eq!(status, 404, "a second poll gets nothing: {again}");

    // Unknown and malformed codes.
    assert_eq!(web.get("/cli-login/AAAA-AAAA").status(), 404);
    assert_eq!(web.get("/cli-login/%3Cscript%3E").status(), 404);
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
