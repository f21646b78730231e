//! Changing one's email address with a real SMTP server: a code goes to the old address and
//! one to the new, only both change it, each works once, wrong tries are counted and end the
//! change, and a refused request stores and sends nothing.

mod support;

use support::smtp::{MailServer, code_in};
use support::web::{ADMIN_EMAIL, WebClient, csrf_in, location};
use support::{Backend, Server};

on_every_backend!(
    an_address_changes_only_with_both_codes,
    wrong_codes_end_the_change,
    an_old_address_is_free_for_someone_new
);

fn start(backend: Backend, mail: &MailServer) -> Server {
    let server = mail.server(backend);
    WebClient::new(&server).setup_admin();
    server.create_user_with_password("bob", "bob@example.com", "bob password");
    server
}

fn signed_in_bob(server: &Server) -> (WebClient<'_>, String) {
    let bob = WebClient::new(server);
    assert_eq!(bob.sign_in("bob@example.com", "bob password").status(), 303);
    let csrf = csrf_in(&bob.get("/account").text().unwrap());
    (bob, csrf)
}

fn bob_email(server: &Server, email: &str) -> i64 {
    server.count(&format!("SELECT COUNT(*) AS n FROM users WHERE login = 'bob' AND email = '{email}'"))
}

fn an_address_changes_only_with_both_codes(backend: Backend) {
    let mail = MailServer::start();
    let server = start(backend, &mail);
    let (bob, csrf) = signed_in_bob(&server);
    let ask = |email: &str, password: &str| {
        bob.post("/account/email", &[("csrf", &csrf), ("new_email", email), ("email_password", password)])
    };

    // Refused requests: at their field, what was typed kept, nothing stored or sent.
    for (email, password, field, message) in [
        ("robert@example.org", "wrong password", "email-password-error", "not your current password"),
        ("not an address", "bob password", "new-email-error", "valid email address"),
        (ADMIN_EMAIL, "bob password", "new-email-error", "Another account has this address."),
        ("bob@example.com", "bob password", "new-email-error", "your address already"),
    ] {
        let refused = ask(email, password);
        assert_eq!(refused.status(), 422, "{email}");
        let html = refused.text().unwrap();
        assert!(html.contains(&format!("id=\"{field}\"")) && html.contains(message), "{html}");
    }
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM email_changes"), 0);
    assert!(mail.messages_to("robert@example.org").is_empty() && mail.messages_to("bob@example.com").is_empty());

    // Asked for: a code to each address, the address itself unchanged so far.
    let asked = bob.follow(ask("Robert@Example.org", "bob password"));
    assert!(asked.contains("Codes sent to bob@example.com and robert@example.org"), "{asked}");
    assert!(asked.contains("id=\"confirm-email\""));
    let to_new = mail.wait_for("robert@example.org", 1);
    let to_old = mail.wait_for("bob@example.com", 1);
    assert!(to_old.contains("about to change") && to_old.contains("robert@example.org"), "{to_old}");
    let (old_code, new_code) = (code_in(&to_old), code_in(&to_new));
    assert_ne!(old_code, new_code);
    assert_eq!(bob_email(&server, "bob@example.com"), 1);
    let stored = format!(
        "SELECT COUNT(*) AS n FROM email_changes WHERE new_code_hash LIKE '%{new_code}%' OR old_code_hash LIKE '%{old_code}%'"
    );
    assert_eq!(server.count(&stored), 0, "only hashes of the codes are stored");

    // The codes the wrong way round, or one of them alone, change nothing.
    let confirm = |old: &str, new: &str| {
        bob.post("/account/email/confirm", &[("csrf", &csrf), ("old_code", old), ("new_code", new)])
    };
    for (old, new) in [(new_code.as_str(), old_code.as_str()), ("", new_code.as_str()), (old_code.as_str(), "")] {
        let refused = confirm(old, new);
        assert_eq!(refused.status(), 422);
        assert!(refused.text().unwrap().contains("That code is not right"));
    }
    assert_eq!(bob_email(&server, "bob@example.com"), 1);
    assert_eq!(server.count("SELECT failed_tries AS n FROM email_changes"), 3);

    // Both, typed loosely: the address changes; Bob signs in with it, not the old one.
    let changed = bob.follow(confirm(&old_code.to_lowercase(), &new_code.replace('-', " ")));
    assert!(changed.contains("Your address is now robert@example.org"), "{changed}");
    assert_eq!(bob_email(&server, "robert@example.org"), 1);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM email_changes"), 0);
    assert_eq!(WebClient::new(&server).sign_in("robert@example.org", "bob password").status(), 303);
    assert_eq!(WebClient::new(&server).sign_in("bob@example.com", "bob password").status(), 401);

    // The codes worked once.
    let again = confirm(&old_code, &new_code);
    assert_eq!(again.status(), 422);
    assert!(again.text().unwrap().contains("no change of address waiting"));
    assert_eq!(bob_email(&server, "robert@example.org"), 1);

    // A change asked for and cancelled: its codes are dead.
    bob.follow(ask("third@example.org", "bob password"));
    let third = code_in(&mail.wait_for("third@example.org", 1));
    let old = code_in(&mail.wait_for("robert@example.org", 2));
    assert_eq!(location(&bob.post("/account/email/cancel", &[("csrf", &csrf)])), "/account");
    assert_eq!(confirm(&old, &third).status(), 422);
    assert_eq!(bob_email(&server, "robert@example.org"), 1);
}

fn wrong_codes_end_the_change(backend: Backend) {
    let mail = MailServer::start();
    let server = start(backend, &mail);
    let (bob, csrf) = signed_in_bob(&server);
    let asked = bob.post(
        "/account/email",
        &[("csrf", &csrf), ("new_email", "mallory@example.org"), ("email_password", "bob password")],
    );
    assert_eq!(location(&asked), "/account");
    let (old_code, new_code) =
        (code_in(&mail.wait_for("bob@example.com", 1)), code_in(&mail.wait_for("mallory@example.org", 1)));
    // Someone who can read only the new mailbox guesses the other code: five tries, then the
    // change is gone and even the right codes do nothing.
    for _ in 0..5 {
        let guess =
            bob.post("/account/email/confirm", &[("csrf", &csrf), ("old_code", "AAAA-AAAA"), ("new_code", &new_code)]);
        assert_eq!(guess.status(), 422);
    }
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM email_changes"), 0);
    let late = bob.post("/account/email/confirm", &[("csrf", &csrf), ("old_code", &old_code), ("new_code", &new_code)]);
    assert_eq!(late.status(), 422);
    assert!(late.text().unwrap().contains("no change of address waiting"));
    assert_eq!(bob_email(&server, "bob@example.com"), 1);
    // Nobody else can confirm Bob's change with their own session.
    let admin = WebClient::new(&server);
    assert_eq!(admin.sign_in(ADMIN_EMAIL, support::web::ADMIN_PASSWORD).status(), 303);
    let admin_csrf = csrf_in(&admin.get("/account").text().unwrap());
    let other = admin
        .post("/account/email/confirm", &[("csrf", &admin_csrf), ("old_code", &old_code), ("new_code", &new_code)]);
    assert_eq!(other.status(), 422);
    assert_eq!(server.count(&format!("SELECT COUNT(*) AS n FROM users WHERE email = '{ADMIN_EMAIL}'")), 1);
}

fn an_old_address_is_free_for_someone_new(backend: Backend) {
    let mail = MailServer::start();
    let server = start(backend, &mail);
    // Ada's login is her first address, and logins never change.
    let ada = WebClient::new(&server);
    assert_eq!(ada.sign_in(ADMIN_EMAIL, support::web::ADMIN_PASSWORD).status(), 303);
    let csrf = csrf_in(&ada.get("/account").text().unwrap());
    let form =
        [("csrf", csrf.as_str()), ("new_email", "ada@example.org"), ("email_password", support::web::ADMIN_PASSWORD)];
    assert_eq!(location(&ada.post("/account/email", &form)), "/account");
    let (old_code, new_code) = (code_in(&mail.wait_for(ADMIN_EMAIL, 1)), code_in(&mail.wait_for("ada@example.org", 1)));
    let codes = [("csrf", csrf.as_str()), ("old_code", &old_code), ("new_code", &new_code)];
    assert_eq!(location(&ada.post("/account/email/confirm", &codes)), "/account");
    // Her old address goes to a newcomer, who gets the next free login.
    let created = ada.post(
        "/users",
        &[("csrf", &csrf), ("name", "Newcomer"), ("email", ADMIN_EMAIL), ("password", "newcomer password")],
    );
    assert_eq!(location(&created), "/users", "status {}", created.status());
    let newcomer =
        format!("SELECT COUNT(*) AS n FROM users WHERE email = '{ADMIN_EMAIL}' AND login = '{ADMIN_EMAIL}-2'");
    assert_eq!(server.count(&newcomer), 1);
    assert_eq!(WebClient::new(&server).sign_in(ADMIN_EMAIL, "newcomer password").status(), 303);
}
