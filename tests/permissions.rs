//! Fine-grained global permissions held by groups: each opens exactly its pages and forms,
//! a user holds the union over their groups, and nobody gives or changes more than they hold.

mod support;

use support::web::{ADMIN_EMAIL, WebClient, csrf_in, location};
use support::{Backend, Server};

on_every_backend!(
    each_permission_opens_exactly_its_pages,
    user_editors_never_reach_beyond_what_they_hold,
    group_editors_give_only_what_they_hold,
    cache_wide_permissions_reach_every_cache,
);

/// The administrator's signed-in client and its form token, on a server with `users`
/// (login, email, password) signed up.
fn with_users<'a>(server: &'a Server, users: &[&str]) -> (WebClient<'a>, String) {
    let admin = WebClient::new(server);
    admin.setup_admin();
    for login in users {
        server.create_user_with_password(login, &format!("{login}@example.com"), &format!("{login} password"));
    }
    let csrf = csrf_in(&admin.get("/groups").text().unwrap());
    (admin, csrf)
}

fn signed_in<'a>(server: &'a Server, login: &str) -> (WebClient<'a>, String) {
    let client = WebClient::new(server);
    assert_eq!(client.sign_in(&format!("{login}@example.com"), &format!("{login} password")).status(), 303);
    let csrf = csrf_in(&client.get("/caches").text().unwrap());
    (client, csrf)
}

fn user_id(server: &Server, login: &str) -> i64 {
    server.count(&format!("SELECT id AS n FROM users WHERE login = '{login}'"))
}

fn group_id(server: &Server, name: &str) -> i64 {
    server.count(&format!("SELECT id AS n FROM user_groups WHERE name = '{name}'"))
}

/// The administrator creates group `name` giving `permissions` and puts `members` in it.
fn group(server: &Server, admin: &WebClient, csrf: &str, name: &str, permissions: &[&str], members: &[&str]) -> i64 {
    let mut form = vec![("csrf", csrf), ("name", name)];
    form.extend(permissions.iter().map(|p| (*p, "on")));
    assert_eq!(location(&admin.post("/groups", &form)), "/groups", "group {name} created");
    let id = group_id(server, name);
    for member in members {
        let user = user_id(server, member).to_string();
        let added = admin.post(&format!("/groups/{id}/members"), &[("csrf", csrf), ("user_id", &user)]);
        assert_eq!(location(&added), "/groups");
    }
    id
}

fn nav_links(html: &str) -> Vec<&'static str> {
    ["/users", "/groups", "/settings"]
        .into_iter()
        .filter(|href| html.contains(&format!("<a href=\"{href}\"")))
        .collect()
}

fn each_permission_opens_exactly_its_pages(backend: Backend) {
    let server = Server::start(backend);
    let (admin, csrf) = with_users(&server, &["carol", "dave", "erin"]);
    group(&server, &admin, &csrf, "auditors", &["view_users", "view_groups", "view_settings"], &["carol"]);
    group(&server, &admin, &csrf, "people", &["view_users"], &["erin"]);
    group(&server, &admin, &csrf, "settings", &["edit_settings"], &["erin"]);

    // Carol sees users, groups and settings, with no form to change them.
    let (carol, carol_csrf) = signed_in(&server, "carol");
    assert_eq!(nav_links(&carol.get("/caches").text().unwrap()), ["/users", "/groups", "/settings"]);
    let users = carol.get("/users");
    assert_eq!(users.status(), 200);
    let users = users.text().unwrap();
    assert!(users.contains("dave@example.com") && !users.contains("id=\"new-user\"") && !users.contains("delete-user"));
    let groups = carol.get("/groups").text().unwrap();
    assert!(groups.contains("auditors") && !groups.contains("id=\"new-group\"") && !groups.contains("Delete group"));
    assert!(groups.contains("Members hold: view settings, view groups, view users."), "{groups}");
    let settings = carol.get("/settings").text().unwrap();
    assert!(settings.contains("id=\"read-only\"") && !settings.contains("id=\"save-smtp\""), "{settings}");
    let dave = user_id(&server, "dave");
    server.admin(&["create-cache", "secret-vault", "--no-upstream"]);
    let vault = server.count("SELECT id AS n FROM caches WHERE name = 'secret-vault'").to_string();
    admin.post(&format!("/users/{dave}/access"), &[("csrf", &csrf), ("cache_id", &vault), ("permission", "read")]);
    assert!(admin.get(&format!("/users/{dave}")).text().unwrap().contains("secret-vault"));
    let page = carol.get(&format!("/users/{dave}")).text().unwrap();
    assert!(page.contains("id=\"read-only\"") && !page.contains("id=\"set-password\""), "{page}");
    assert!(!page.contains("secret-vault"), "seeing users does not reveal private caches");
    // ...and every change is refused, nothing saved.
    let users_before = server.count("SELECT COUNT(*) AS n FROM users");
    let refusals = [
        carol.post(
            "/users",
            &[("csrf", &carol_csrf), ("name", "X"), ("email", "x@example.com"), ("password", "long enough")],
        ),
        carol.post(
            &format!("/users/{dave}/profile"),
            &[("csrf", &carol_csrf), ("name", "Renamed"), ("email", "d@example.com")],
        ),
        carol.post(&format!("/users/{dave}/delete"), &[("csrf", &carol_csrf)]),
        carol.post("/groups", &[("csrf", &carol_csrf), ("name", "mine")]),
        carol.post("/settings/sso", &[("csrf", &carol_csrf), ("issuer_url", "https://id.example.com")]),
    ];
    for refused in refusals {
        assert_eq!(refused.status(), 403);
        let text = refused.text().unwrap();
        assert!(
            text.contains("Your groups do not give you the right") || text.contains("only administrators"),
            "{text}"
        );
    }
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM users"), users_before);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM users WHERE name = 'Renamed'"), 0);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM user_groups WHERE name = 'mine'"), 0);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM sso_settings"), 0);

    // Dave holds nothing: no admin nav, every page refused.
    let (dave_client, _) = signed_in(&server, "dave");
    assert!(nav_links(&dave_client.get("/caches").text().unwrap()).is_empty());
    for page in ["/users", "/groups", "/settings", &format!("/users/{dave}")] {
        assert_eq!(dave_client.get(page).status(), 403, "{page}");
    }

    // Erin holds the union of her groups: users (view) and settings (edit includes view).
    let (erin, _) = signed_in(&server, "erin");
    assert_eq!(nav_links(&erin.get("/caches").text().unwrap()), ["/users", "/settings"]);
    assert_eq!(erin.get("/groups").status(), 403);
    let settings = erin.get("/settings").text().unwrap();
    assert!(settings.contains("id=\"send-test-mail\"") && !settings.contains("id=\"save-smtp\""), "{settings}");
    // Mail and single sign-on decide who can sign in as whom: administrators only.
    let erin_csrf = csrf_in(&settings);
    for (path, field) in [("/settings", "host"), ("/settings/sso", "issuer_url")] {
        let refused = erin.post(path, &[("csrf", &erin_csrf), (field, "evil.example.com")]);
        assert_eq!(refused.status(), 403, "{path}");
        assert!(refused.text().unwrap().contains("only administrators change them"));
    }
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM sso_settings"), 0);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM smtp_settings"), 0);
}

fn user_editors_never_reach_beyond_what_they_hold(backend: Backend) {
    let server = Server::start(backend);
    let (admin, csrf) = with_users(&server, &["erin", "bob"]);
    server.admin(&["create-cache", "main", "--no-upstream"]);
    let main = server.count("SELECT id AS n FROM caches WHERE name = 'main'").to_string();
    group(&server, &admin, &csrf, "people", &["edit_users"], &["erin"]);
    let admins = group(&server, &admin, &csrf, "admins", &["administer"], &[]);
    let readers = group(&server, &admin, &csrf, "readers", &["view_users"], &[]);
    let (erin, erin_csrf) = signed_in(&server, "erin");
    let (bob, admin_id) = (user_id(&server, "bob"), user_id(&server, ADMIN_EMAIL));

    // The administrator holds more than Erin: their account is out of her reach.
    let users = erin.get("/users").text().unwrap();
    assert_eq!(users.matches("delete-user").count(), 2, "Erin may delete Bob and herself, not the administrator");
    for (path, form) in [
        (format!("/users/{admin_id}/password"), vec![("password", "taken over now")]),
        (format!("/users/{admin_id}/profile"), vec![("name", "Mallory"), ("email", "mallory@example.com")]),
        (format!("/users/{admin_id}/delete"), vec![]),
    ] {
        let mut form = form;
        form.push(("csrf", &erin_csrf));
        let refused = erin.post(&path, &form);
        assert_eq!(refused.status(), 403, "{path}");
        assert!(refused.text().unwrap().contains("holds permissions you do not"));
    }
    assert_eq!(WebClient::new(&server).sign_in(ADMIN_EMAIL, support::web::ADMIN_PASSWORD).status(), 303);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM users WHERE name = 'Mallory'"), 0);

    // Bob holds nothing: Erin changes him, but gives him nothing she does not hold.
    let moved = erin
        .post(&format!("/users/{bob}/profile"), &[("csrf", &erin_csrf), ("name", "Bob"), ("email", "ceo@example.com")]);
    assert_eq!(moved.status(), 422, "only administrators set an address nobody proved");
    assert!(moved.text().unwrap().contains("Only administrators change someone&#39;s address."));
    let erin_id = user_id(&server, "erin");
    let own = erin.post(
        &format!("/users/{erin_id}/profile"),
        &[("csrf", &erin_csrf), ("name", "Erin"), ("email", "elsewhere@example.com")],
    );
    assert_eq!(own.status(), 422);
    assert!(own.text().unwrap().contains("on your account page"));
    assert_eq!(
        server.count("SELECT COUNT(*) AS n FROM users WHERE email IN ('ceo@example.com', 'elsewhere@example.com')"),
        0
    );
    let with_password = erin.post(
        "/users",
        &[("csrf", &erin_csrf), ("name", "Pat"), ("email", "pat@example.com"), ("password", "long enough")],
    );
    assert_eq!(with_password.status(), 403);
    assert!(!erin.get("/users").text().unwrap().contains("id=\"new-user\""));
    let renamed = erin.post(
        &format!("/users/{bob}/profile"),
        &[("csrf", &erin_csrf), ("name", "Robert"), ("email", "bob@example.com")],
    );
    assert!(erin.follow(renamed).contains("Name and email address saved."));
    let bob_page = erin.get(&format!("/users/{bob}")).text().unwrap();
    assert!(
        bob_page.contains(">readers</option>") && !bob_page.contains(">admins</option>"),
        "only groups within reach are offered"
    );
    let joined = erin.post(&format!("/users/{bob}/groups"), &[("csrf", &erin_csrf), ("group_id", &admins.to_string())]);
    assert_eq!(joined.status(), 403);
    assert!(joined.text().unwrap().contains("gives permissions you do not hold"));
    assert_eq!(server.count(&format!("SELECT COUNT(*) AS n FROM group_members WHERE group_id = {admins}")), 0);
    let joined =
        erin.post(&format!("/users/{bob}/groups"), &[("csrf", &erin_csrf), ("group_id", &readers.to_string())]);
    assert!(erin.follow(joined).contains("Added to the group."));
    let created = erin.post(
        "/users",
        &[
            ("csrf", &erin_csrf),
            ("name", "Root"),
            ("email", "root@example.com"),
            ("password", "long enough"),
            ("admin", "on"),
        ],
    );
    assert_eq!(created.status(), 403);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM users WHERE email = 'root@example.com'"), 0);

    // Cache rights: never more than Erin may do with that cache herself.
    let grant = |level: &str| {
        erin.post(&format!("/users/{bob}/access"), &[("csrf", &erin_csrf), ("cache_id", &main), ("permission", level)])
    };
    assert_eq!(grant("read").status(), 403, "Erin has no access to main");
    let erin_id = user_id(&server, "erin").to_string();
    admin.post(&format!("/users/{erin_id}/access"), &[("csrf", &csrf), ("cache_id", &main), ("permission", "push")]);
    assert!(erin.follow(grant("push")).contains("Granted push."));
    assert_eq!(grant("manage").status(), 403);
    let bob_grants =
        format!("SELECT COUNT(*) AS n FROM cache_permissions WHERE user_id = {bob} AND can_push AND NOT can_manage");
    assert_eq!(server.count(&bob_grants), 1, "the refused grant changed nothing");
    admin.post(&format!("/users/{bob}/access"), &[("csrf", &csrf), ("cache_id", &main), ("permission", "manage")]);
    let revoked = erin.post(&format!("/users/{bob}/access/{main}/revoke"), &[("csrf", &erin_csrf)]);
    assert_eq!(revoked.status(), 403, "a grant above Erin's own stays");
    let lowered = grant("read");
    assert_eq!(lowered.status(), 403, "nor is it changed to less");
    let password =
        erin.post(&format!("/users/{bob}/password"), &[("csrf", &erin_csrf), ("password", "taken over now")]);
    assert_eq!(password.status(), 403, "Bob may manage main, Erin may not: his account is out of her reach");
    assert!(password.text().unwrap().contains("rights on main"));
    assert_eq!(WebClient::new(&server).sign_in("bob@example.com", "bob password").status(), 303);
    assert_eq!(server.count(&format!("SELECT COUNT(*) AS n FROM cache_permissions WHERE user_id = {bob}")), 1);
}

fn group_editors_give_only_what_they_hold(backend: Backend) {
    let server = Server::start(backend);
    let (admin, csrf) = with_users(&server, &["gina"]);
    let admins = group(&server, &admin, &csrf, "admins", &["administer"], &[]);
    group(&server, &admin, &csrf, "group-editors", &["edit_groups", "create_caches"], &["gina"]);
    let (gina, gina_csrf) = signed_in(&server, "gina");
    let bits = |name: &str| server.count(&format!("SELECT permissions AS n FROM user_groups WHERE name = '{name}'"));
    assert_eq!(bits("admins"), 511);
    assert_eq!(bits("group-editors"), 4 | 8 | 64);

    let page = gina.get("/groups").text().unwrap();
    assert!(page.contains("name=\"edit_settings\" value=\"on\" disabled"), "what Gina does not hold cannot be ticked");
    let ok = gina.post("/groups", &[("csrf", &gina_csrf), ("name", "builders"), ("create_caches", "on")]);
    assert_eq!(location(&ok), "/groups");
    assert_eq!(bits("builders"), 64);
    for beyond in [vec![("edit_settings", "on")], vec![("administer", "on")], vec![("view_caches", "on")]] {
        let mut form = vec![("csrf", gina_csrf.as_str()), ("name", "sneaky")];
        form.extend(beyond);
        let refused = gina.post("/groups", &form);
        assert_eq!(refused.status(), 403);
        assert!(refused.text().unwrap().contains("permissions you do not hold"));
    }
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM user_groups WHERE name = 'sneaky'"), 0);

    // A group giving more than Gina holds: not widened, narrowed, joined, left or deleted by her.
    let gina_id = user_id(&server, "gina").to_string();
    for (path, form) in [
        (format!("/groups/{admins}/permissions"), vec![("create_caches", "on")]),
        (format!("/groups/{admins}/members"), vec![("user_id", gina_id.as_str())]),
        (format!("/groups/{admins}/delete"), vec![]),
    ] {
        let mut form = form;
        form.push(("csrf", &gina_csrf));
        assert_eq!(gina.post(&path, &form).status(), 403, "{path}");
    }
    assert_eq!(bits("admins"), 511);
    assert_eq!(server.count(&format!("SELECT COUNT(*) AS n FROM group_members WHERE group_id = {admins}")), 0);
    // A group with no global permissions but the manage right on a private cache: joining it
    // would give Gina that cache.
    server.admin(&["create-cache", "vault", "--no-upstream"]);
    let vaulters = group(&server, &admin, &csrf, "vaulters", &[], &[]).to_string();
    let granted =
        admin.post("/caches/vault/group-access", &[("csrf", &csrf), ("group_id", &vaulters), ("permission", "manage")]);
    assert_eq!(granted.status(), 303);
    let joined = gina.post(&format!("/groups/{vaulters}/members"), &[("csrf", &gina_csrf), ("user_id", &gina_id)]);
    assert_eq!(joined.status(), 403);
    assert!(joined.text().unwrap().contains("rights on vault"));
    assert_eq!(server.count(&format!("SELECT COUNT(*) AS n FROM group_members WHERE group_id = {vaulters}")), 0);
    // Ada holds more than Gina: Gina neither adds her to nor removes her from a group.
    let builders = group_id(&server, "builders");
    let ada = user_id(&server, ADMIN_EMAIL).to_string();
    let added = gina.post(&format!("/groups/{builders}/members"), &[("csrf", &gina_csrf), ("user_id", &ada)]);
    assert_eq!(added.status(), 403);
    assert!(added.text().unwrap().contains("that user holds permissions you do not"));
    let widened =
        gina.post(&format!("/groups/{builders}/permissions"), &[("csrf", &gina_csrf), ("manage_caches", "on")]);
    assert_eq!(widened.status(), 403);
    assert_eq!(bits("builders"), 64);
    let changed = gina.post(&format!("/groups/{builders}/permissions"), &[("csrf", &gina_csrf), ("view_groups", "on")]);
    assert!(gina.follow(changed).contains("Permissions changed."));
    assert_eq!(bits("builders"), 4);

    // An administrator narrows any group (Ada stays one by her own flag).
    let narrowed = admin.post(&format!("/groups/{admins}/permissions"), &[("csrf", &csrf), ("view_users", "on")]);
    assert_eq!(location(&narrowed), "/groups");
    assert_eq!(bits("admins"), 16);
}

fn cache_wide_permissions_reach_every_cache(backend: Backend) {
    let server = Server::start(backend);
    let (admin, csrf) = with_users(&server, &["rita", "max", "nobody"]);
    server.admin(&["create-cache", "vault", "--no-upstream"]);
    server.admin(&["create-cache", "spare", "--no-upstream"]);
    group(&server, &admin, &csrf, "readers", &["view_caches"], &["rita"]);
    group(&server, &admin, &csrf, "managers", &["manage_caches"], &["max"]);
    let info = |login: &str| {
        let token = server.admin(&["create-token", login, "--name", "t"]);
        server.get("/api/nix/vault/nix-cache-info", Some(&token)).status().as_u16()
    };
    assert_eq!(info("rita"), 200, "reading every cache reaches a private one");
    assert_eq!(info("max"), 200);
    assert_eq!(info("nobody"), 401);

    let (rita, _) = signed_in(&server, "rita");
    assert!(rita.get("/caches").text().unwrap().contains("/caches/vault"));
    assert_eq!(rita.get("/caches/vault/settings").status(), 403, "reading is not managing");

    // Managing every cache: its settings and its deletion, but not upstreams (server settings).
    let (max, max_csrf) = signed_in(&server, "max");
    let settings = max.get("/caches/vault/settings").text().unwrap();
    assert!(settings.contains("confirm-delete"), "{settings}");
    let deleted = max.post("/caches/spare/delete", &[("csrf", &max_csrf), ("confirm", "spare")]);
    assert_eq!(deleted.status(), 303);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM caches WHERE name = 'spare'"), 0);
    let (nobody, nobody_csrf) = signed_in(&server, "nobody");
    assert_eq!(nobody.post("/caches/vault/delete", &[("csrf", &nobody_csrf), ("confirm", "vault")]).status(), 404);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM caches WHERE name = 'vault'"), 1);
}
