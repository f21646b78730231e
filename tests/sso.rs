//! Single sign-on against a real OpenID Connect provider (`oidc-provider` on Node.js):
//! linking an account by verified email, refreshing name and groups, creating accounts only
//! when allowed, SSO as the only way in, and clear errors for a provider that cannot be
//! reached or a wrong client secret.

mod support;

use reqwest::blocking::Response;
use serde_json::json;
use support::oidc::{IdentityProvider, server_env};
use support::web::{ADMIN_EMAIL, WebClient, csrf_in, location};
use support::{Backend, Server};

/// A server pointed at a provider on `port` (started afterwards, with the server's URL).
fn server_with_sso(port: u16, extra: &[(&'static str, &'static str)]) -> Server {
    server_with_sso_on(Backend::Sqlite, port, extra)
}

fn server_with_sso_on(backend: Backend, port: u16, extra: &[(&'static str, &'static str)]) -> Server {
    let env = server_env(port, extra);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::builder(backend).env(&pairs).start()
}

/// The value of `attribute="..."` after `after` in `html`.
fn attribute(html: &str, after: &str, attribute: &str) -> Option<String> {
    let rest = &html[html.find(after)?..];
    let marker = format!("{attribute}=\"");
    let start = rest.find(&marker)? + marker.len();
    Some(rest[start..].split('"').next()?.replace("&amp;", "&"))
}

/// Signs `login` in at the provider, as a person in a browser would (the development login
/// form takes any password, then the consent), starting from `/oidc/start?next=/caches`.
/// Returns the server's answer to the provider's redirect back.
fn sign_in_through_provider(web: &WebClient, login: &str) -> Response {
    let back = callback_for(web, login);
    web.http.get(back).send().unwrap()
}

/// Like [`sign_in_through_provider`], but stops at the URL the provider sends the browser
/// back to.
fn callback_for(web: &WebClient, login: &str) -> reqwest::Url {
    let site = web.server.url();
    let start = web.get("/oidc/start?next=/caches");
    assert_eq!(start.status(), 303, "{}", start.text().unwrap_or_default());
    let mut url = reqwest::Url::parse(location(&start)).unwrap();
    for _ in 0..12 {
        if url.as_str().starts_with(&site) {
            return url;
        }
        let answer = web.http.get(url.clone()).send().unwrap();
        let answer = if answer.status().is_redirection() {
            answer
        } else {
            // A page with a form: the login (any password) or the consent.
            let html = answer.text().unwrap();
            let action = attribute(&html, "<form", "action").expect("a form at the provider");
            let prompt = attribute(&html, "name=\"prompt\"", "value").unwrap_or_default();
            let fields = [("prompt", prompt.as_str()), ("login", login), ("password", "anything")];
            web.http.post(url.join(&action).unwrap()).form(&fields).send().unwrap()
        };
        assert!(answer.status().is_redirection(), "the provider answered {}", answer.status());
        url = url.join(location(&answer)).unwrap();
    }
    panic!("the sign-in never came back to the server");
}

#[test]
fn signing_in_links_by_verified_email_refreshes_the_profile_and_syncs_groups() {
    links_refreshes_and_syncs(Backend::Sqlite);
}

#[test]
fn signing_in_on_postgres() {
    links_refreshes_and_syncs(Backend::Postgres);
}

fn links_refreshes_and_syncs(backend: Backend) {
    let port = IdentityProvider::reserve_port();
    let server =
        server_with_sso_on(backend, port, &[("OIDC_SCOPES", "email profile groups"), ("OIDC_GROUPS_CLAIM", "groups")]);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    server.create_user_with_password("grace", "grace@example.com", "grace's password");
    let csrf = admin.csrf("/groups");
    for group in ["builders", "readers"] {
        assert_eq!(admin.post("/groups", &[("csrf", &csrf), ("name", group)]).status(), 303);
    }
    let provider = IdentityProvider::start(
        port,
        &server.url(),
        json!({
            "grace-at-idp": {"email": "Grace@Example.com", "email_verified": true, "name": "Grace Hopper",
                             "groups": ["builders", "unknown-group"]},
            "mallory": {"email": "grace@example.com", "email_verified": false, "name": "Mallory"},
        }),
    );
    let page = WebClient::new(&server).get("/sign-in").text().unwrap();
    assert!(page.contains("Sign in with Test ID") && page.contains("id=\"sign-in\""), "both ways in: {page}");

    // An unverified address links nothing, even one that matches.
    let mallory = WebClient::new(&server);
    let refused = sign_in_through_provider(&mallory, "mallory");
    assert_eq!(refused.status(), 403);
    assert!(refused.text().unwrap().contains("no account for"));
    assert_eq!(location(&mallory.get("/")), "/sign-in", "not signed in");

    // Grace's verified address links her existing account; she lands where she was going.
    let grace = WebClient::new(&server);
    let back = sign_in_through_provider(&grace, "grace-at-idp");
    assert_eq!(back.status(), 303, "{}", back.text().unwrap_or_default());
    assert_eq!(location(&back), "/caches");
    let account = grace.get("/account").text().unwrap();
    assert!(
        account.contains("value=\"Grace Hopper\"") && account.contains("<code id=\"login\">grace</code>"),
        "{account}"
    );
    // Her address comes from the provider (set again at every sign-in): not changed here.
    let csrf = csrf_in(&account);
    let refused = grace.post("/account/email", &[("csrf", &csrf), ("new_email", "grace@elsewhere.org")]);
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("comes from single sign-on"));
    // The groups claim made her a member of builders (readers untouched, unknown ignored).
    let groups = admin.get("/groups").text().unwrap();
    let builders = groups.split("id=\"group-").find(|g| g.contains("<h2>builders</h2>")).unwrap();
    let readers = groups.split("id=\"group-").find(|g| g.contains("<h2>readers</h2>")).unwrap();
    let members = |group: &str| group.split("<table>").nth(1).unwrap().split("</table>").next().unwrap().to_string();
    assert!(members(builders).contains("Grace Hopper"), "{builders}");
    assert!(!members(readers).contains("Grace Hopper"));
    assert!(!groups.contains("unknown-group"));

    // Next time she is found by her subject, even after her address changed at the provider.
    server.sql("UPDATE users SET email = 'old@example.com' WHERE login = 'grace'");
    let again = WebClient::new(&server);
    assert_eq!(sign_in_through_provider(&again, "grace-at-idp").status(), 303);
    assert!(again.get("/account").text().unwrap().contains("grace@example.com"), "the address refreshed");
    drop(provider);
}

#[test]
fn people_without_an_account_get_one_only_when_allowed() {
    let port = IdentityProvider::reserve_port();
    let closed = server_with_sso(port, &[]);
    WebClient::new(&closed).setup_admin();
    let people = json!({"ada-2": {"email": "newcomer@example.com", "email_verified": true, "name": "Newcomer"}});
    let provider = IdentityProvider::start(port, &closed.url(), people.clone());
    let refused = sign_in_through_provider(&WebClient::new(&closed), "ada-2");
    assert_eq!(refused.status(), 403);
    assert!(refused.text().unwrap().contains("ask an administrator to create one"));
    drop(provider);

    let port = IdentityProvider::reserve_port();
    let open = server_with_sso(port, &[("OIDC_CREATE_USERS", "true")]);
    let admin = WebClient::new(&open);
    admin.setup_admin();
    let _provider = IdentityProvider::start(port, &open.url(), people);
    let newcomer = WebClient::new(&open);
    assert_eq!(location(&sign_in_through_provider(&newcomer, "ada-2")), "/caches");
    assert!(newcomer.get("/account").text().unwrap().contains("<code id=\"login\">newcomer@example.com</code>"));
    let users = admin.get("/users").text().unwrap();
    assert!(users.contains("Newcomer") && users.contains("newcomer@example.com"));
    assert!(
        !users.split("newcomer@example.com").nth(1).unwrap().split("</tr>").next().unwrap().contains("administrator")
    );
}

#[test]
fn sso_only_turns_password_sign_in_and_resets_off() {
    let port = IdentityProvider::reserve_port();
    let server = server_with_sso(port, &[("OIDC_ONLY", "true")]);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let _provider = IdentityProvider::start(
        port,
        &server.url(),
        json!({"ada-sub": {"email": ADMIN_EMAIL, "email_verified": true, "name": "Ada"}}),
    );
    let anonymous = WebClient::new(&server);
    let page = anonymous.get("/sign-in");
    // No form on the page carries the token; before sign-in it is the double-submit cookie.
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_string();
    let csrf = cookie.strip_prefix("hibernation_csrf=").unwrap().split(';').next().unwrap().to_string();
    let page = page.text().unwrap();
    assert!(page.contains("id=\"sso-sign-in\"") && !page.contains("id=\"sign-in\""), "{page}");
    let password = anonymous
        .post("/sign-in", &[("csrf", &csrf), ("email", ADMIN_EMAIL), ("password", support::web::ADMIN_PASSWORD)]);
    assert_eq!(password.status(), 403);
    assert!(password.text().unwrap().contains("Password sign-in is off"));
    assert_eq!(location(&anonymous.get("/")), "/sign-in", "no session from a password");
    assert_eq!(anonymous.get("/forgot-password").status(), 403);
    // The administrator signs in through the provider (linked by her verified address).
    assert_eq!(location(&sign_in_through_provider(&anonymous, "ada-sub")), "/caches");
    assert_eq!(anonymous.get("/users").status(), 200);
}

#[test]
fn a_provider_out_of_reach_or_a_wrong_secret_is_a_clear_error() {
    // Nothing listens on the issuer's port.
    let port = IdentityProvider::reserve_port();
    let server = server_with_sso(port, &[]);
    let web = WebClient::new(&server);
    web.setup_admin();
    let unreachable = web.get("/oidc/start");
    assert_eq!(unreachable.status(), 502);
    assert!(unreachable.text().unwrap().contains("cannot be reached"));
    assert!(server.log().contains("single sign-on: the identity provider cannot be reached"));

    // A client secret the provider does not accept.
    let port = IdentityProvider::reserve_port();
    let server = server_with_sso(port, &[("OIDC_CLIENT_SECRET", "wrong")]);
    let web = WebClient::new(&server);
    web.setup_admin();
    let _provider = IdentityProvider::start(
        port,
        &server.url(),
        json!({"ada-sub": {"email": ADMIN_EMAIL, "email_verified": true, "name": "Ada"}}),
    );
    let anonymous = WebClient::new(&server);
    let refused = sign_in_through_provider(&anonymous, "ada-sub");
    assert_eq!(refused.status(), 403);
    let text = refused.text().unwrap();
    assert!(text.contains("invalid_client") && text.contains("OIDC_CLIENT_SECRET"), "{text}");
    // A replayed callback (the same state again) is refused too.
    assert_eq!(location(&anonymous.get("/")), "/sign-in");
}

/// Single sign-on set up on the settings page (no OIDC_* variables): checked at save, on at
/// once, single-sign-on-only honoured, and `admin reset-sso` as the way back in.
#[test]
fn single_sign_on_from_the_settings_page_and_the_way_back_in() {
    let server = Server::start(Backend::Sqlite);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let page = admin.get("/settings").text().unwrap();
    assert!(page.contains(&format!("<code id=\"sso-callback\">{}/oidc/callback</code>", server.url())), "{page}");
    assert!(!page.contains("id=\"sso-on\"") && !page.contains("id=\"sso-locked\""));
    let csrf = support::web::csrf_in(&page);

    let port = IdentityProvider::reserve_port();
    let issuer = IdentityProvider::issuer_for(port);
    let mut form = vec![
        ("csrf", csrf.as_str()),
        ("issuer_url", issuer.as_str()),
        ("client_id", support::oidc::CLIENT_ID),
        ("scopes", "email profile"),
        ("display_name", "Company ID"),
        ("sso_only", "on"),
    ];
    let missing = admin.post("/settings/sso", &form);
    assert_eq!(missing.status(), 422);
    let text = missing.text().unwrap();
    assert!(text.contains("id=\"client_secret-error\"") && text.contains(&format!("value=\"{issuer}\"")), "{text}");
    form.push(("client_secret", support::oidc::CLIENT_SECRET));
    let saved = admin.follow(admin.post("/settings/sso", &form));
    assert!(saved.contains("id=\"sso-on\"") && saved.contains("admin reset-sso"), "{saved}");
    assert!(!saved.contains(support::oidc::CLIENT_SECRET), "the secret is never shown back");

    let _provider = IdentityProvider::start(
        port,
        &server.url(),
        json!({"ada-sub": {"email": ADMIN_EMAIL, "email_verified": true, "name": "Ada"}}),
    );
    let visitor = WebClient::new(&server);
    let sign_in = visitor.get("/sign-in").text().unwrap();
    assert!(sign_in.contains("Sign in with Company ID") && !sign_in.contains("id=\"sign-in\""), "only SSO: {sign_in}");
    assert_eq!(location(&sign_in_through_provider(&visitor, "ada-sub")), "/caches");

    // The way back in when the provider fails: the admin CLI removes the saved settings; the
    // server reads them again within seconds.
    assert!(server.admin(&["reset-sso"]).contains("password sign-in works again"));
    support::wait_until(std::time::Duration::from_secs(10), "password sign-in to come back", || {
        WebClient::new(&server).get("/sign-in").text().unwrap().contains("id=\"sign-in\"")
    });
    assert_eq!(WebClient::new(&server).sign_in(ADMIN_EMAIL, support::web::ADMIN_PASSWORD).status(), 303);
}

#[test]
fn settings_from_the_environment_lock_the_form() {
    let port = IdentityProvider::reserve_port();
    let server = server_with_sso(port, &[]);
    let admin = WebClient::new(&server);
    admin.setup_admin();
    let page = admin.get("/settings").text().unwrap();
    assert!(page.contains("id=\"sso-locked\"") && page.contains("id=\"sso-on\""), "{page}");
    let csrf = support::web::csrf_in(&page);
    let refused = admin.post("/settings/sso", &[("csrf", &csrf), ("issuer_url", "https://elsewhere.example.com")]);
    assert_eq!(refused.status(), 422);
    assert!(refused.text().unwrap().contains("OIDC_* environment variables set single sign-on"));
}

/// Group sync never removes the last administrator: the provider's groups leave out the one
/// group that makes its only member an administrator, and the membership stays.
#[test]
fn group_sync_keeps_the_last_administrator() {
    let port = IdentityProvider::reserve_port();
    let server = server_with_sso(port, &[("OIDC_SCOPES", "email profile groups"), ("OIDC_GROUPS_CLAIM", "groups")]);
    let ada = WebClient::new(&server);
    ada.setup_admin();
    server.create_user_with_password("grace", "grace@example.com", "grace's password");
    let csrf = ada.csrf("/groups");
    assert_eq!(ada.post("/groups", &[("csrf", &csrf), ("name", "admins"), ("administer", "on")]).status(), 303);
    let groups = ada.get("/groups").text().unwrap();
    let group_id = groups.split("action=\"/groups/").nth(1).unwrap().split('/').next().unwrap().to_string();
    let select = groups.split("name=\"user_id\"").nth(1).unwrap();
    let grace_id =
        select.split("<option value=\"").skip(1).find(|o| o.contains("grace")).unwrap().split('"').next().unwrap();
    assert_eq!(
        ada.post(&format!("/groups/{group_id}/members"), &[("csrf", &csrf), ("user_id", grace_id)]).status(),
        303
    );
    // Grace is now the only administrator.
    server.sql(&format!("UPDATE users SET is_admin = false WHERE email = '{}'", ADMIN_EMAIL));
    let _provider = IdentityProvider::start(
        port,
        &server.url(),
        json!({"grace-sub": {"email": "grace@example.com", "email_verified": true, "name": "Grace", "groups": []}}),
    );
    let grace = WebClient::new(&server);
    assert_eq!(location(&sign_in_through_provider(&grace, "grace-sub")), "/caches");
    assert_eq!(grace.get("/users").status(), 200, "still an administrator");
    assert!(server.log().contains("group sync for user"), "the skipped sync is logged");
}

/// A sign-in finishes only in the browser that started it: a callback URL sent to someone
/// else (login CSRF) signs nobody in, and the flow is gone after.
#[test]
fn a_callback_opened_in_another_browser_signs_nobody_in() {
    let port = IdentityProvider::reserve_port();
    let server = server_with_sso(port, &[]);
    WebClient::new(&server).setup_admin();
    let _provider = IdentityProvider::start(
        port,
        &server.url(),
        json!({"ada-sub": {"email": ADMIN_EMAIL, "email_verified": true, "name": "Ada"}}),
    );
    let attacker = WebClient::new(&server);
    let url = callback_for(&attacker, "ada-sub");
    let victim = WebClient::new(&server);
    let answer = victim.http.get(url.clone()).send().unwrap();
    assert_eq!(answer.status(), 403);
    assert!(answer.text().unwrap().contains("started in another browser"));
    assert_eq!(location(&victim.get("/")), "/sign-in", "the victim is not signed in");
    let replay = attacker.http.get(url).send().unwrap();
    assert_eq!(replay.status(), 403, "each sign-in finishes once");
}

/// Anyone may start a sign-in, so the table of sign-ins under way is bounded: past 10,000
/// open ones a start is refused (503) and nothing is stored.
#[test]
fn sign_ins_under_way_are_bounded() {
    let port = IdentityProvider::reserve_port();
    let server = server_with_sso(port, &[]);
    WebClient::new(&server).setup_admin();
    let _provider = IdentityProvider::start(port, &server.url(), json!({}));
    server.sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) \
         INSERT INTO oidc_flows (state, nonce, pkce_verifier, next_path, browser_hash, expires_at) \
         SELECT 'state-' || i, 'n', 'v', '/', 'h', '2999-01-01 00:00:00' FROM n",
    );
    let refused = WebClient::new(&server).get("/oidc/start");
    assert_eq!(refused.status(), 503);
    assert!(refused.text().unwrap().contains("many sign-ins are under way"));
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM oidc_flows"), 10_000, "nothing more was stored");
}
