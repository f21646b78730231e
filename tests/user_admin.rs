//! One user's page, for administrators: name and email, a new password (their sessions
//! end), groups, rights per cache, deletion. Nobody else reaches it, and nothing a refused
//! form sent is saved.

mod support;

use support::web::{ADMIN_EMAIL, WebClient, csrf_in, location};
use support::{Backend, Server};

on_every_backend!(an_administrator_changes_one_user_on_their_page);

fn cache_info(server: &Server, cache: &str, token: &str) -> u16 {
    server.get(&format!("/api/nix/{cache}/nix-cache-info"), Some(token)).status().as_u16()
}

fn an_administrator_changes_one_user_on_their_page(backend: Backend) {
    let server = Server::start(backend);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    server.admin(&["create-cache", "main", "--no-upstream"]);
    server.admin(&["create-cache", "vault", "--no-upstream"]);
    server.create_user_with_password("bob", "bob@example.com", "bob password");
    let id = server.count("SELECT id AS n FROM users WHERE email = 'bob@example.com'");
    let main_id = server.count("SELECT id AS n FROM caches WHERE name = 'main'");
    let bob_token = server.admin(&["create-token", "bob", "--name", "laptop"]);
    let bob = WebClient::new(&server);
    assert_eq!(bob.sign_in("bob@example.com", "bob password").status(), 303);

    let users = admin.get("/users").text().unwrap();
    assert!(users.contains(&format!("href=\"/users/{id}\"")), "the users page links to each user's page");
    let page = admin.get(&format!("/users/{id}"));
    assert_eq!(page.status(), 200);
    let page = page.text().unwrap();
    assert!(page.contains("value=\"bob@example.com\"") && page.contains("id=\"user-login\">bob<"), "{page}");
    let csrf = csrf_in(&page);
    let user_row =
        |column: &str| server.count(&format!("SELECT COUNT(*) AS n FROM users WHERE id = {id} AND {column}"));

    // Name and email; a taken or malformed address is refused at its field, nothing saved.
    let saved = admin
        .post(&format!("/users/{id}/profile"), &[("csrf", &csrf), ("name", "Robert"), ("email", "Robert@Example.com")]);
    assert!(admin.follow(saved).contains("Name and email address saved."));
    assert_eq!(user_row("name = 'Robert' AND email = 'robert@example.com' AND login = 'bob'"), 1);
    for (email, message) in [(ADMIN_EMAIL, "Another user has this email address."), ("nope", "valid email")] {
        let refused =
            admin.post(&format!("/users/{id}/profile"), &[("csrf", &csrf), ("name", "Mallory"), ("email", email)]);
        assert_eq!(refused.status(), 422);
        let html = refused.text().unwrap();
        assert!(html.contains("id=\"email-error\"") && html.contains(message), "{html}");
        assert!(html.contains("value=\"Mallory\""), "what was typed stays");
    }
    assert_eq!(user_row("name = 'Robert' AND email = 'robert@example.com'"), 1);

    // A new password: too short is refused; then set, and Bob's sessions end.
    let short = admin.post(&format!("/users/{id}/password"), &[("csrf", &csrf), ("password", "short")]);
    assert_eq!(short.status(), 422);
    assert!(short.text().unwrap().contains("id=\"password-error\""));
    assert_eq!(location(&bob.get("/caches")), "", "Bob is still signed in");
    let set = admin.post(&format!("/users/{id}/password"), &[("csrf", &csrf), ("password", "a new password")]);
    assert!(admin.follow(set).contains("Password set."));
    assert!(location(&bob.get("/caches")).starts_with("/sign-in"), "Bob's session ended");
    assert_eq!(WebClient::new(&server).sign_in("robert@example.com", "bob password").status(), 401);
    assert_eq!(bob.sign_in("robert@example.com", "a new password").status(), 303);
    assert_eq!(location(&admin.get("/users")), "", "the administrator stays signed in");

    // Groups: added and removed on this page.
    admin.post("/groups", &[("csrf", &csrf), ("name", "builders"), ("create_caches", "on")]);
    let group = server.count("SELECT id AS n FROM user_groups WHERE name = 'builders'");
    let joined = admin.post(&format!("/users/{id}/groups"), &[("csrf", &csrf), ("group_id", &group.to_string())]);
    assert!(admin.follow(joined).contains("Added to the group."));
    let membership = || server.count(&format!("SELECT COUNT(*) AS n FROM group_members WHERE user_id = {id}"));
    assert_eq!(membership(), 1);
    let left = admin.post(&format!("/users/{id}/groups/{group}/remove"), &[("csrf", &csrf)]);
    assert!(admin.follow(left).contains("Removed from the group."));
    assert_eq!(membership(), 0);

    // Rights per cache: granted, changed, taken away; each at once.
    assert_eq!(cache_info(&server, "main", &bob_token), 401);
    let grant = |level: &str| {
        admin.post(
            &format!("/users/{id}/access"),
            &[("csrf", &csrf), ("cache_id", &main_id.to_string()), ("permission", level)],
        )
    };
    assert!(admin.follow(grant("push")).contains("Granted push."));
    assert_eq!(cache_info(&server, "main", &bob_token), 200);
    assert_eq!(cache_info(&server, "vault", &bob_token), 401);
    let page = admin.get(&format!("/users/{id}")).text().unwrap();
    assert!(page.contains("push: read, and push paths"), "{page}");
    let refused = grant("owner");
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("id=\"permission-error\""));
    let grants =
        || server.count(&format!("SELECT COUNT(*) AS n FROM cache_permissions WHERE user_id = {id} AND can_push"));
    assert_eq!(grants(), 1, "the refused grant changed nothing");
    admin.follow(grant("read"));
    assert_eq!(grants(), 0);
    let revoked = admin.post(&format!("/users/{id}/access/{main_id}/revoke"), &[("csrf", &csrf)]);
    assert!(admin.follow(revoked).contains("Access removed."));
    assert_eq!(cache_info(&server, "main", &bob_token), 401);

    // Nobody but an administrator reaches the page or its forms.
    let admin_id = server.count(&format!("SELECT id AS n FROM users WHERE email = '{ADMIN_EMAIL}'"));
    let bob_csrf = csrf_in(&bob.get("/caches").text().unwrap());
    assert_eq!(bob.get(&format!("/users/{admin_id}")).status(), 403);
    let forged = bob.post(
        &format!("/users/{id}/access"),
        &[("csrf", &bob_csrf), ("cache_id", &main_id.to_string()), ("permission", "manage")],
    );
    assert_eq!(forged.status(), 403);
    let forged = bob.post(&format!("/users/{admin_id}/password"), &[("csrf", &bob_csrf), ("password", "taken over")]);
    assert_eq!(forged.status(), 403);
    assert_eq!(cache_info(&server, "main", &bob_token), 401);
    assert_eq!(admin.get("/users/999999").status(), 404);

    // Deleted from the page: the token stops working.
    let deleted = admin.post(&format!("/users/{id}/delete"), &[("csrf", &csrf)]);
    assert_eq!(location(&deleted), "/users");
    assert_eq!(server.get("/api/v1/whoami", Some(&bob_token)).status(), 401);
}
