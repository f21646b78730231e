//! Mail with a real SMTP server (aiosmtpd): invitations and password resets arrive, their
//! links work once and never again, expired links are refused, secrets are stored hashed,
//! resets never reveal which addresses exist, and the settings page and its test mail work.

mod support;

use support::smtp::{MailServer, link_in};
use support::web::{ADMIN_EMAIL, ADMIN_PASSWORD, WebClient, csrf_in, location};
use support::{Backend, Server};

fn start_with_mail(mail: &MailServer) -> Server {
    mail.server(Backend::Sqlite)
}

/// The path part of a link the server mailed.
fn path_of(server: &Server, link: &str) -> String {
    link.strip_prefix(&server.url()).expect("links point at SITE_URL").to_string()
}

/// True when `secret` appears anywhere in the SQLite files.
fn database_contains(server: &Server, secret: &str) -> bool {
    ["hibernation.db", "hibernation.db-wal"].iter().any(|name| {
        std::fs::read(server.dir.path().join(name))
            .is_ok_and(|bytes| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()))
    })
}

fn invite(web: &WebClient, name: &str, email: &str) -> reqwest::blocking::Response {
    let csrf = web.csrf("/users");
    web.post("/users/invite", &[("csrf", &csrf), ("name", name), ("email", email)])
}

#[test]
fn an_invitation_arrives_and_its_link_works_once() {
    let mail = MailServer::start();
    let server = start_with_mail(&mail);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let settings = admin.get("/settings").text().unwrap();
    assert!(settings.contains("id=\"smtp-locked\""), "SMTP_* variables lock the settings");
    assert!(settings.contains("value=\"127.0.0.1\"") && settings.contains("disabled"));

    let sent = admin.follow(invite(&admin, "Grace", "grace@example.com"));
    assert!(sent.contains("Invitation sent to grace@example.com"), "{sent}");
    let message = mail.wait_for("grace@example.com", 1);
    assert!(message.contains("Subject: You are invited to Hibernation"), "{message}");
    assert!(message.contains("From: Hibernation <cache@example.com>"), "{message}");
    let link = link_in(&message, "/invite/");
    let path = path_of(&server, &link);
    let secret = path.rsplit('/').next().unwrap().to_string();
    assert!(!database_contains(&server, &secret), "only a hash of the link's secret is stored");

    // Grace opens the link, tries a short password, then sets hers and is signed in.
    let grace = WebClient::new(&server);
    let page = grace.get(&path);
    assert_eq!(page.status(), 200);
    let csrf = csrf_in(&page.text().unwrap());
    let short = grace.post(&path, &[("csrf", &csrf), ("password", "short")]);
    assert_eq!(short.status(), 422);
    assert!(short.text().unwrap().contains("id=\"password-error\""));
    let accepted = grace.post(&path, &[("csrf", &csrf), ("password", "grace's own password")]);
    assert_eq!(location(&accepted), "/");
    assert_eq!(grace.get("/").status(), 200, "signed in");

    // Never again: not by the link, not by a replayed form.
    assert_eq!(grace.get(&path).status(), 410);
    let replay = WebClient::new(&server);
    let csrf = replay.csrf("/sign-in");
    assert_eq!(replay.post(&path, &[("csrf", &csrf), ("password", "an attacker's password")]).status(), 410);
    assert_eq!(replay.sign_in("grace@example.com", "grace's own password").status(), 303);
    assert_eq!(WebClient::new(&server).sign_in("grace@example.com", "an attacker's password").status(), 401);
}

#[test]
fn an_expired_invitation_is_refused() {
    let mail = MailServer::start();
    let server = start_with_mail(&mail);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    assert_eq!(invite(&admin, "Late", "late@example.com").status(), 303);
    let path = path_of(&server, &link_in(&mail.wait_for("late@example.com", 1), "/invite/"));
    server.sql("UPDATE user_links SET expires_at = '2000-01-01 00:00:00'");
    let late = WebClient::new(&server);
    let page = late.get(&path);
    assert_eq!(page.status(), 410);
    assert!(page.text().unwrap().contains("This link no longer works"));
    let csrf = late.csrf("/sign-in");
    assert_eq!(late.post(&path, &[("csrf", &csrf), ("password", "a long enough password")]).status(), 410);
    assert_eq!(late.sign_in("late@example.com", "a long enough password").status(), 401, "no password was set");

    // The administrator sends it again; the new link works.
    let users = admin.get("/users").text().unwrap();
    assert!(users.contains("(no password yet)"));
    let resend = users.split("action=\"/users/").find(|s| s.contains("/reinvite")).unwrap();
    let id = resend.split('/').next().unwrap();
    let csrf = csrf_in(&users);
    let sent = admin.follow(admin.post(&format!("/users/{id}/reinvite"), &[("csrf", &csrf)]));
    assert!(sent.contains("Invitation sent again to late@example.com"), "{sent}");
    let fresh = path_of(&server, &link_in(&mail.wait_for("late@example.com", 2), "/invite/"));
    assert_ne!(fresh, path);
    let csrf = csrf_in(&late.get(&fresh).text().unwrap());
    assert_eq!(location(&late.post(&fresh, &[("csrf", &csrf), ("password", "a long enough password")])), "/");
    let again = admin.post(&format!("/users/{id}/reinvite"), &[("csrf", &csrf_in(&users))]).text().unwrap();
    assert!(again.contains("have not chosen a password"), "no invitation once the password is set");
}

#[test]
fn an_administrator_who_has_not_accepted_the_invitation_does_not_count() {
    let mail = MailServer::start();
    let server = start_with_mail(&mail);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let csrf = admin.csrf("/users");
    let invited = admin
        .post("/users/invite", &[("csrf", &csrf), ("name", "Hope"), ("email", "hope@example.com"), ("admin", "on")]);
    assert_eq!(invited.status(), 303);
    let users = admin.get("/users").text().unwrap();
    let row = users.split("<tr>").find(|r| r.contains(ADMIN_EMAIL)).unwrap();
    let id = row.split("/users/").nth(1).unwrap().split(|c: char| !c.is_ascii_digit()).next().unwrap();
    let refused = admin.post(&format!("/users/{id}/delete"), &[("csrf", &csrf)]);
    assert_eq!(refused.status(), 409, "Hope cannot act before choosing a password");
    assert_eq!(admin.get("/users").status(), 200, "Ada is still there and signed in");
}

#[test]
fn a_reset_link_works_once_and_never_reveals_whether_an_address_exists() {
    let mail = MailServer::start();
    let server = start_with_mail(&mail);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let other_session = WebClient::new(&server);
    assert_eq!(other_session.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).status(), 303);

    let ask = |email: &str| {
        let visitor = WebClient::new(&server);
        let csrf = visitor.csrf("/forgot-password");
        let response = visitor.post("/forgot-password", &[("csrf", &csrf), ("email", email)]);
        assert_eq!(response.status(), 200);
        let text = response.text().unwrap();
        text[text.find("<main").unwrap_or(0)..].replace(&csrf, "")
    };
    let known = ask(ADMIN_EMAIL);
    let unknown = ask("nobody@example.com");
    assert_eq!(known, unknown, "the same answer for a known and an unknown address");
    let message = mail.wait_for(ADMIN_EMAIL, 1);
    assert!(message.contains("Subject: Reset your Hibernation password"), "{message}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(mail.messages_to("nobody@example.com").is_empty(), "no mail for an address without an account");

    let path = path_of(&server, &link_in(&message, "/reset/"));
    let visitor = WebClient::new(&server);
    let csrf = csrf_in(&visitor.get(&path).text().unwrap());
    let done = visitor.post(&path, &[("csrf", &csrf), ("password", "a brand new password")]);
    assert_eq!(done.status(), 200);
    assert!(done.text().unwrap().contains("Password changed"));
    assert_eq!(visitor.post(&path, &[("csrf", &csrf), ("password", "yet another password")]).status(), 410);
    assert_eq!(location(&other_session.get("/")), "/sign-in", "a reset signs out every session");
    assert_eq!(WebClient::new(&server).sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).status(), 401, "the old password is gone");
    assert_eq!(WebClient::new(&server).sign_in(ADMIN_EMAIL, "a brand new password").status(), 303);
}

#[test]
fn mail_settings_from_the_dashboard_and_the_test_mail() {
    let mail = MailServer::start();
    let server = Server::start(Backend::Sqlite);
    let admin = WebClient::new(&server);
    admin.setup_admin();

    // Without mail settings an invitation is refused and nobody is created.
    let refused = invite(&admin, "Early", "early@example.com");
    assert_eq!(refused.status(), 422);
    let refused = refused.text().unwrap();
    assert!(refused.contains("mail is not set up"));
    assert!(
        refused.contains("value=\"early@example.com\"") && refused.contains("value=\"Early\""),
        "the form keeps its input"
    );
    assert!(!admin.get("/users").text().unwrap().contains("early@example.com"));

    let csrf = admin.csrf("/settings");
    let port = mail.port.to_string();
    let mut form = vec![("csrf", csrf.as_str()), ("host", "127.0.0.1"), ("port", port.as_str()), ("security", "none")];
    let bad = {
        let mut bad = form.clone();
        bad.push(("from", "not an address"));
        admin.post("/settings", &bad)
    };
    assert_eq!(bad.status(), 422);
    assert!(bad.text().unwrap().contains("id=\"from-error\""));
    form.push(("from", "Team cache <cache@example.com>"));
    let saved = admin.follow(admin.post("/settings", &form));
    assert!(saved.contains("Mail settings saved"));
    assert!(!admin.get("/settings").text().unwrap().contains("Mail settings saved"), "a notice shows once");

    let tested = admin.follow(admin.post("/settings/test-mail", &[("csrf", &csrf)]));
    assert!(tested.contains(&format!("A test mail was sent to {ADMIN_EMAIL}")));
    let message = mail.wait_for(ADMIN_EMAIL, 1);
    assert!(message.contains("Subject: Hibernation test mail"), "{message}");
    assert!(
        message
            .lines()
            .any(|l| l.starts_with("From:") && l.contains("Team cache") && l.contains("<cache@example.com>"))
    );

    // Invitations now go out through the saved settings.
    assert_eq!(invite(&admin, "Early", "early@example.com").status(), 303);
    mail.wait_for("early@example.com", 1);

    // A server that does not answer: the test mail says so.
    let closed = support::free_port().to_string();
    let mut broken = form.clone();
    broken[2] = ("port", closed.as_str());
    assert_eq!(admin.post("/settings", &broken).status(), 303);
    let failed = admin.follow(admin.post("/settings/test-mail", &[("csrf", &csrf)]));
    assert!(failed.contains("The test mail failed"), "{failed}");
}

#[test]
fn reset_requests_are_limited_per_address_without_saying_so() {
    let mail = MailServer::start();
    let server = start_with_mail(&mail);
    WebClient::new(&server).setup_admin();
    let visitor = WebClient::new(&server);
    let csrf = visitor.csrf("/forgot-password");
    for _ in 0..7 {
        let answer = visitor.post("/forgot-password", &[("csrf", &csrf), ("email", ADMIN_EMAIL)]);
        assert_eq!(answer.status(), 200);
        assert!(answer.text().unwrap().contains("id=\"reset-sent\""), "the same answer every time");
    }
    mail.wait_for(ADMIN_EMAIL, 5);
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert_eq!(mail.messages_to(ADMIN_EMAIL).len(), 5, "five requests per address and quarter hour");
}

#[test]
fn database_logging_never_writes_secrets() {
    let server = Server::builder(Backend::Sqlite).env(&[("DATABASE_LOGGING", "true")]).start();
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let csrf = admin.csrf("/settings");
    let secret = "hunter2-smtp-secret";
    let form = [
        ("csrf", csrf.as_str()),
        ("host", "127.0.0.1"),
        ("port", "2525"),
        ("security", "none"),
        ("username", "cache"),
        ("password", secret),
        ("from", "Team cache <cache@example.com>"),
    ];
    assert_eq!(admin.post("/settings", &form).status(), 303);
    let log = server.log();
    assert!(log.contains("hibernation::sql") && log.contains("smtp_settings"), "statements are logged");
    assert!(!log.contains(secret), "the SMTP password is in the log");
    assert!(!log.contains("$argon2"), "a password hash is in the log");
}
