//! People on the dashboard: users and their access per cache, groups, administrators (one
//! always remains), logins that renaming cannot change, and tokens revoked at once.

mod support;

use support::web::{WebClient, csrf_in, first_group_and_user, location, token_secret};
use support::{Backend, Keys, Server};

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
