//! API tokens in the dashboard beyond create and revoke: renaming and changing the expiry
//! (the scope never changes), a new secret for the same token (the old one dead at once, the
//! new one shown once), and deleting every token that no longer works in one action. Another
//! user's tokens are out of reach.

mod support;

use support::web::{ADMIN_EMAIL, WebClient, csrf_in, location};
use support::{Backend, Keys, Server};

on_every_backend!(tokens_are_changed_renewed_and_cleaned_up);

fn token_secret(page: &str) -> String {
    page.split("id=\"new-token\">").nth(1).expect("a secret is shown").split('<').next().unwrap().to_string()
}

fn token_id(server: &Server, name: &str) -> i64 {
    server.count(&format!("SELECT id AS n FROM api_tokens WHERE name = '{name}'"))
}

fn tokens_are_changed_renewed_and_cleaned_up(backend: Backend) {
    let keys = Keys::generate("tokens-1");
    let server = Server::start(backend);
    let web = WebClient::new(&server);
    web.setup_admin();
    let csrf = web.csrf("/caches");
    web.post("/caches", &[("csrf", &csrf), ("name", "main"), ("priority", "41"), ("keys", &keys.public)]);
    server.admin(&["create-cache", "vault", "--no-upstream"]);
    let ci = token_secret(&web.post("/tokens", &[("csrf", &csrf), ("name", "ci"), ("days", "30")]).text().unwrap());
    let reader = token_secret(
        &web.post(
            "/tokens",
            &[("csrf", &csrf), ("name", "reader"), ("days", "30"), ("cache", "main"), ("permission", "read")],
        )
        .text()
        .unwrap(),
    );
    let id = token_id(&server, "ci");

    // Rename and change the expiry: the same secret keeps working.
    let changed = web.post(&format!("/tokens/{id}/edit"), &[("csrf", &csrf), ("name", "deploy"), ("days", "0")]);
    assert_eq!(changed.status(), 303);
    let page = web.follow(changed);
    assert!(page.contains("Token changed."), "{page}");
    assert_eq!(
        server.count(&format!(
            "SELECT COUNT(*) AS n FROM api_tokens WHERE id = {id} AND name = 'deploy' AND expires_at IS NULL"
        )),
        1
    );
    assert_eq!(server.get("/api/v1/whoami", Some(&ci)).status(), 200);
    // A name another token has, or no name, is refused at the token's own form.
    for (name, message) in [("reader", "already have a token with this name"), ("  ", "1 to 100 characters")] {
        let refused = web.post(&format!("/tokens/{id}/edit"), &[("csrf", &csrf), ("name", name), ("days", "30")]);
        assert_eq!(refused.status(), 422);
        let html = refused.text().unwrap();
        assert!(html.contains(&format!("id=\"edit-error-{id}\"")) && html.contains(message), "{html}");
    }
    assert_eq!(
        server.count(&format!(
            "SELECT COUNT(*) AS n FROM api_tokens WHERE id = {id} AND name = 'deploy' AND expires_at IS NULL"
        )),
        1
    );

    // A new secret for the reader token: the old one is dead at once, the new one is shown
    // once and keeps the name, the scope (main only, read only) and the expiry.
    let reader_id = token_id(&server, "reader");
    let expiry_before = server
        .count(&format!("SELECT COUNT(*) AS n FROM api_tokens WHERE id = {reader_id} AND expires_at IS NOT NULL"));
    let page = web.post(&format!("/tokens/{reader_id}/regenerate"), &[("csrf", &csrf)]).text().unwrap();
    let renewed = token_secret(&page);
    assert!(page.contains("New secret for reader"), "{page}");
    assert_ne!(renewed, reader);
    assert_eq!(server.get("/api/v1/whoami", Some(&reader)).status(), 401);
    assert_eq!(server.get("/api/nix/main/nix-cache-info", Some(&renewed)).status(), 200);
    assert_eq!(server.get("/api/nix/vault/nix-cache-info", Some(&renewed)).status(), 401, "still limited to main");
    let plan = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/caches/main/push-plan", server.url()))
        .bearer_auth(&renewed)
        .json(&serde_json::json!({"paths": []}))
        .send()
        .unwrap();
    assert_eq!(plan.status(), 403, "still read only");
    assert_eq!(
        server.count(&format!(
            "SELECT COUNT(*) AS n FROM api_tokens WHERE id = {reader_id} AND name = 'reader' AND expires_at IS NOT NULL"
        )),
        expiry_before
    );
    assert!(!web.get("/tokens").text().unwrap().contains(&renewed), "the new secret is shown once");

    // Someone else's token is out of reach: nothing changes.
    server.create_user_with_password("bob", "bob@example.com", "password123");
    let bob = WebClient::new(&server);
    assert_eq!(bob.sign_in("bob@example.com", "password123").status(), 303);
    let bob_csrf = csrf_in(&bob.get("/tokens").text().unwrap());
    let stolen = bob.post(&format!("/tokens/{id}/regenerate"), &[("csrf", &bob_csrf)]);
    assert!(!stolen.text().unwrap().contains("id=\"new-token\""));
    bob.post(&format!("/tokens/{id}/edit"), &[("csrf", &bob_csrf), ("name", "mine"), ("days", "30")]);
    assert_eq!(server.get("/api/v1/whoami", Some(&ci)).status(), 200);
    assert_eq!(token_id(&server, "deploy"), id);

    // One action deletes every token that no longer works: revoked and expired ones.
    let old = web.post("/tokens", &[("csrf", &csrf), ("name", "old"), ("days", "30")]).text().unwrap();
    drop(old);
    let old_id = token_id(&server, "old");
    web.post(&format!("/tokens/{old_id}/revoke"), &[("csrf", &csrf)]);
    web.post("/tokens", &[("csrf", &csrf), ("name", "lapsed"), ("days", "30")]);
    server.sql("UPDATE api_tokens SET expires_at = created_at WHERE name = 'lapsed'");
    let listing = web.get("/tokens").text().unwrap();
    assert!(listing.contains("Delete the 2 expired or revoked"), "{listing}");
    // Neither can be changed or renewed any more.
    let lapsed_id = token_id(&server, "lapsed");
    let refused = web.post(&format!("/tokens/{lapsed_id}/regenerate"), &[("csrf", &csrf)]);
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("no longer works"));
    let deleted = web.post("/tokens/delete-ended", &[("csrf", &csrf)]);
    assert_eq!(location(&deleted), "/tokens");
    assert!(web.follow(deleted).contains("Deleted 2 ended tokens."));
    let user_tokens = |email: &str| {
        server.count(&format!(
            "SELECT COUNT(*) AS n FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE u.email = '{email}'"
        ))
    };
    assert_eq!(user_tokens(ADMIN_EMAIL), 2, "deploy and reader remain");
    assert_eq!(server.get("/api/v1/whoami", Some(&ci)).status(), 200);
}
