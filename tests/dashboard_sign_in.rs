//! Signing in to the dashboard: rate limits per address (behind a trusted proxy too) and per
//! account, password changes that end other sessions, and a forgotten password.

mod support;

use support::web::{ADMIN_EMAIL, ADMIN_PASSWORD, WebClient, csrf_in, location};
use support::{Backend, Server};

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
    let proxied = Server::builder(Backend::Sqlite).env(&[("TRUSTED_PROXIES", "127.0.0.1, 10.9.0.0/16")]).start();
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
    let server = Server::builder(Backend::Sqlite).env(&[("TRUSTED_PROXIES", "127.0.0.1")]).start();
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
