//! The dashboard in a real browser (chromium through chromedriver): setup, sign-in, a cache,
//! a token, a pushed path seen and deleted, and a user without access who sees nothing; at
//! phone size, every page without sideways scrolling, errors in place, and an ended session.

mod support;

use support::browser::Browser;
use support::web::{ADMIN_EMAIL, ADMIN_PASSWORD};
use support::{Backend, Cli, Closure, Keys, PendingLogin, Server};

#[test]
fn setup_cache_token_push_browse_delete_and_access() {
    let keys = Keys::generate("browser-1");
    let closure = Closure::build("browser");
    let server = Server::start(Backend::Sqlite);
    let browser = Browser::start("setup-to-delete");
    let site = server.url();

    // First run: every page leads to setup, which creates the administrator.
    browser.goto(&format!("{site}/caches"));
    assert!(browser.url().ends_with("/setup"), "{}", browser.url());
    browser.type_into("#setup_code", &server.setup_code());
    browser.type_into("#name", "Ada");
    browser.type_into("#email", ADMIN_EMAIL);
    browser.type_into("#password", "short");
    browser.click("#create-admin");
    assert!(browser.text("#password-error").contains("at least 8"));
    browser.type_into("#password", ADMIN_PASSWORD);
    browser.click("#create-admin");
    browser.wait_until("the overview shows", |html| html.contains("id=\"stat-caches\""));
    browser.screenshot("overview");

    // Sign out and back in.
    browser.click("nav button");
    browser.wait_until("the sign-in page shows", |html| html.contains("id=\"sign-in\""));
    browser.type_into("#email", ADMIN_EMAIL);
    browser.type_into("#password", "wrong password");
    browser.click("#sign-in");
    assert!(browser.text("#sign-in-error").contains("wrong email address or password"));
    browser.type_into("#email", ADMIN_EMAIL);
    browser.type_into("#password", ADMIN_PASSWORD);
    browser.click("#sign-in");
    browser.wait_until("signed in", |html| html.contains("id=\"stat-caches\""));

    // A cache.
    browser.goto(&format!("{site}/caches"));
    browser.type_into("#name", "main");
    browser.type_into("#keys", &keys.public);
    browser.click("#create-cache");
    browser.wait_until("the cache page shows", |html| html.contains("id=\"nix-conf\""));
    assert!(browser.text("#nix-conf").contains(&format!("extra-substituters = {site}/api/nix/main")));
    assert!(browser.text("#nix-conf").contains(&keys.public));
    browser.screenshot("cache");

    // A token, shown once, that the CLI then pushes with.
    browser.goto(&format!("{site}/tokens"));
    browser.type_into("#token-name", "ci");
    browser.click("#create-token");
    let token = browser.text("#new-token");
    assert!(token.starts_with("hib_"), "{token}");
    browser.screenshot("tokens");
    let cli = Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);

    // The pushed paths appear; search narrows them; the app is deleted, its dependency is
    // protected while the app needs it.
    let app_name = closure.app.rsplit('-').next().unwrap().to_string();
    browser.goto(&format!("{site}/caches/main"));
    browser.wait_until("both paths are listed", |html| html.contains("app-browser") && html.contains("dep-browser"));
    assert_eq!(browser.text("#path-count"), "2 paths");
    browser.type_into("#path-search", "dep-");
    browser.wait_until("the search shows only dep", |html| html.contains(">1 path<") && !html.contains("app-browser"));
    browser.type_into("#path-search", "app-");
    browser.wait_until("the search shows only app", |html| html.contains(">1 path<") && !html.contains("dep-browser"));
    browser.click(".delete-path");
    browser.accept_alert();
    browser
        .wait_until("the app row says it is gone", |html| !html.contains("app-browser") && html.contains(">Deleted.<"));
    assert!(app_name.contains("browser"));
    let hash = &closure.app[11..43];
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), Some(&token)).status(), 404);
    browser.goto(&format!("{site}/caches/main"));
    browser.wait_until("only dep is left", |html| html.contains(">1 path<") && html.contains("dep-browser"));

    // A user without access, created on the users page, sees neither the cache nor its paths.
    browser.goto(&format!("{site}/users"));
    browser.type_into("#name", "bob");
    browser.type_into("#email", "bob@example.com");
    browser.type_into("#password", "bob's password");
    browser.click("#create-user");
    browser.wait_until("bob is listed", |html| html.contains("bob@example.com"));
    browser.screenshot("users");
    browser.click("nav button");
    browser.wait_until("signed out", |html| html.contains("id=\"sign-in\""));
    browser.type_into("#email", "bob@example.com");
    browser.type_into("#password", "bob's password");
    browser.click("#sign-in");
    browser.wait_until("bob is signed in", |html| html.contains("bob"));
    browser.goto(&format!("{site}/caches"));
    browser.wait_until("the caches page shows", |html| html.contains("<h1>Caches</h1>"));
    assert!(!browser.source().contains("/caches/main"), "bob must not see the cache");
    browser.goto(&format!("{site}/caches/main"));
    browser.wait_until("a not-found page", |html| html.contains("Not found"));
    assert!(!browser.source().contains("dep-browser"));
    browser.goto(&format!("{site}/caches/main/paths?q=dep"));
    assert!(!browser.source().contains("dep-browser"));
}

/// Sets up a fresh server through its setup page, signed in as its first administrator.
fn set_up_administrator(browser: &Browser, server: &Server) {
    browser.goto(&format!("{}/setup", server.url()));
    browser.type_into("#setup_code", &server.setup_code());
    browser.type_into("#name", "Ada");
    browser.type_into("#email", ADMIN_EMAIL);
    browser.type_into("#password", ADMIN_PASSWORD);
    browser.click("#create-admin");
    browser.wait_until("the overview shows", |html| html.contains("id=\"stat-caches\""));
}

#[test]
fn a_cli_login_is_approved_or_denied_by_typing_its_code() {
    let server = Server::start(Backend::Sqlite);
    let browser = Browser::start("cli-login");
    let site = server.url();
    set_up_administrator(&browser, &server);

    // Approve: the page the CLI opened, the code from the terminal, a read-only token.
    let cli = Cli::new();
    let login = PendingLogin::start(&cli, &server);
    browser.goto(&format!("{site}/cli-login"));
    browser.type_into("#login-code", &login.code().to_lowercase());
    browser.click("#check-login");
    // Before approving: which machine asks, from where, when.
    browser.wait_until("the request is shown", |html| html.contains("id=\"login-request\""));
    assert_eq!(browser.text("#request-code"), login.code());
    assert!(browser.text("#request-machine").starts_with("hibernation on "), "{}", browser.text("#request-machine"));
    assert_eq!(browser.text("#request-address"), "127.0.0.1");
    assert!(browser.text("#request-time").contains("just now"), "{}", browser.text("#request-time"));
    browser.click("#permission option[value=read]");
    browser.screenshot("cli-login");
    browser.click("#approve-login");
    browser.wait_until("the approval is confirmed", |html| html.contains("Login approved"));
    let (status, text) = login.finish();
    assert!(status.success() && text.contains("as Ada"), "{text}");
    assert!(cli.run_ok(&["whoami"]).contains("Ada"));
    browser.goto(&format!("{site}/tokens"));
    browser.wait_until("the CLI's token is listed, read only", |html| {
        html.contains("hibernation on") && html.contains("read only")
    });

    // Deny: the second button of the same form.
    let other = Cli::new();
    let login = PendingLogin::start(&other, &server);
    browser.goto(&format!("{site}/cli-login"));
    browser.type_into("#login-code", "0000-0000");
    browser.click("#check-login");
    browser.wait_until("an unknown code is an error at the field", |html| html.contains("id=\"code-error\""));
    assert_eq!(browser.value("#login-code"), "0000-0000", "the code typed stays");
    browser.type_into("#login-code", &login.code());
    browser.click("#check-login");
    browser.wait_until("the request is shown", |html| html.contains("id=\"login-request\""));
    browser.click("#deny-login");
    browser.wait_until("the denial is confirmed", |html| html.contains("Login denied"));
    let (status, text) = login.finish();
    assert!(!status.success() && text.contains("denied"), "{text}");
}

/// At phone size no page scrolls sideways; an error answer shows where the user acted; a
/// session that ended sends the whole window to sign-in and back.
#[test]
fn phone_layout_errors_in_place_and_expired_sessions() {
    let keys = Keys::generate("browser-phone");
    let closure = Closure::build("browser-phone");
    let server = Server::start(Backend::Sqlite);
    let browser = Browser::start("phone");
    let site = server.url();
    set_up_administrator(&browser, &server);
    server.admin(&["create-cache", "main", "--no-upstream", "--public-key", &keys.public, "--quota-gib", "1"]);
    let token = server.admin(&["create-token", ADMIN_EMAIL, "--name", "ci"]);
    let cli = Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), "--pin", "release", &closure.app]);

    browser.resize(390, 844);
    for page in [
        "/",
        "/caches",
        "/caches/main",
        "/caches/main/settings",
        "/tokens",
        "/users",
        "/groups",
        "/settings",
        "/account",
    ] {
        browser.goto(&format!("{site}{page}"));
        browser.element("main");
        let label = if page == "/" { "overview".to_string() } else { page.trim_start_matches('/').replace('/', "-") };
        browser.screenshot(&format!("phone-{label}"));
        assert!(
            browser.horizontal_overflow() <= 0,
            "{page} scrolls sideways by {} px at 390 px",
            browser.horizontal_overflow()
        );
        assert_eq!(browser.unlabelled_controls(), Vec::<String>::new(), "inputs without a label on {page}");
    }

    // Deleting a path another path needs: the refusal shows in its row.
    browser.goto(&format!("{site}/caches/main"));
    let dep_hash = &closure.dep[11..43];
    browser.click(&format!("form[hx-post$=\"/paths/{dep_hash}/delete\"] button"));
    browser.accept_alert();
    browser.wait_until("the refusal in the row", |html| html.contains("Other paths need this one"));

    // Sorting has a real URL: the address follows, and opening it shows the same table.
    browser.click("#path-table th:nth-child(2) a");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !browser.url().contains("sort=size") {
        assert!(std::time::Instant::now() < deadline, "the address did not follow: {}", browser.url());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let sorted = browser.url();
    browser.goto(&sorted);
    browser.wait_until("the sorted page", |html| html.contains("id=\"nix-conf\"") && html.contains("path-row"));
    assert_eq!(browser.url(), sorted);
    // A whole store path finds its path.
    browser.type_into("#path-search", &closure.app);
    browser.wait_until("one path found", |html| html.contains(">1 path<"));

    // The session ends elsewhere (signed out on another device): the next search sends the
    // whole window to sign-in, and signing in comes back to the cache.
    server.sql("DELETE FROM sessions");
    browser.type_into("#path-search", "app");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !browser.url().contains("/sign-in?next=/caches/main") {
        assert!(std::time::Instant::now() < deadline, "not sent to sign-in: {}", browser.url());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!browser.source().contains("id=\"paths\""), "a whole sign-in page, not a table with a form in it");
    browser.type_into("#email", ADMIN_EMAIL);
    browser.type_into("#password", ADMIN_PASSWORD);
    browser.click("#sign-in");
    browser.wait_until("back on the cache page", |html| html.contains("id=\"nix-conf\""));
    // Where the user was: the cache page with the search the address had.
    assert!(browser.url().contains("/caches/main?q="), "{}", browser.url());
}

#[test]
fn actions_answer_in_place_at_desktop_size() {
    actions_answer_in_place("in-place-desktop", None);
}

#[test]
fn actions_answer_in_place_at_phone_size() {
    actions_answer_in_place("in-place-phone", Some((390, 844)));
}

/// Clicks `button`, accepts the confirmation, and waits for `notice` at the top of the page,
/// which must not have reloaded.
fn act_in_place(browser: &Browser, button: &str, confirm: bool, notice: &str) {
    browser.mark_document();
    browser.click(button);
    if confirm {
        browser.accept_alert();
    }
    browser.wait_until(notice, |html| html.contains("id=\"notice\"") && html.contains(notice));
    assert!(browser.same_document(), "{button} reloaded the page instead of answering in place");
}

/// Every list action of the dashboard answers in place (no page load), says what it did
/// once, shows errors at the form with what was typed, and the overview and the cache page
/// follow pushes live; at phone size no page scrolls sideways on the way.
fn actions_answer_in_place(name: &str, size: Option<(u32, u32)>) {
    let keys = Keys::generate(name);
    let first = Closure::build(&format!("{name}-a"));
    let second = Closure::build(&format!("{name}-b"));
    let server = Server::start(Backend::Sqlite);
    let browser = Browser::start(name);
    let site = server.url();
    if let Some((width, height)) = size {
        browser.resize(width, height);
    }
    let no_overflow = |page: &str| {
        let overflow = browser.horizontal_overflow();
        assert!(size.is_none() || overflow <= 0, "{page} scrolls sideways by {overflow} px");
    };
    set_up_administrator(&browser, &server);
    server.admin(&["create-cache", "main", "--no-upstream", "--public-key", &keys.public]);

    // Tokens: the secret shows in place with a copy button; revoking asks, then says so once.
    browser.goto(&format!("{site}/tokens"));
    let contrast = browser.execute(
        "const c = getComputedStyle(document.querySelector('#token-name')).borderTopColor.match(/\\d+/g).map(Number);
         const l = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
         return 1.05 / (0.2126 * l(c[0]) + 0.7152 * l(c[1]) + 0.0722 * l(c[2]) + 0.05);",
    );
    assert!(contrast.as_f64().unwrap() >= 3.0, "input borders need 3:1 against white, got {contrast}");
    browser.type_into("#token-name", "ci");
    browser.mark_document();
    browser.click("#create-token");
    browser.wait_until("the secret", |html| html.contains("id=\"new-token\""));
    assert!(browser.same_document());
    let token = browser.text("#new-token");
    assert!(token.starts_with("hib_"), "{token}");
    browser.click(".snippet button.copy");
    browser.wait_until("the copy is confirmed", |html| html.contains(">Copied<"));
    no_overflow("/tokens with a new token");
    // Renamed in place; then a new secret, shown in place, and the old one is dead.
    browser.click("details.token-actions summary");
    browser.type_into(".edit-token input[name=name]", "deploy");
    act_in_place(&browser, ".edit-token button[type=submit]", false, "Token changed.");
    assert!(browser.text("#tokens").contains("deploy"));
    browser.click("details.token-actions summary");
    no_overflow("/tokens with a token's actions open");
    browser.mark_document();
    browser.click(".regenerate-token");
    browser.accept_alert();
    browser.wait_until("the new secret", |html| html.contains("New secret for deploy"));
    assert!(browser.same_document());
    let renewed = browser.text("#new-token");
    assert!(renewed.starts_with("hib_") && renewed != token, "{renewed}");
    assert_eq!(server.get("/api/v1/whoami", Some(&token)).status(), 401);
    assert_eq!(server.get("/api/v1/whoami", Some(&renewed)).status(), 200);
    act_in_place(&browser, ".revoke-token", true, "Token revoked");
    assert!(browser.text("#tokens").contains("revoked"));
    browser.goto(&format!("{site}/tokens"));
    browser.element("#tokens");
    assert!(!browser.source().contains("id=\"notice\""), "a notice shows once");
    assert!(!browser.source().contains(&renewed), "the secret shows once");
    act_in_place(&browser, "#delete-ended button", true, "Deleted 1 ended token.");
    assert!(!browser.text("#tokens").contains("deploy"));

    // Users: an invitation without mail fails at its form, keeping what was typed; a user is
    // created in place.
    browser.goto(&format!("{site}/users"));
    browser.type_into("#invite-name", "Grace");
    browser.type_into("#invite-email", "grace@example.com");
    browser.mark_document();
    browser.click("#send-invite");
    browser.wait_until("the invitation error", |html| html.contains("id=\"invite-error\""));
    assert!(browser.same_document());
    assert_eq!(browser.value("#invite-email"), "grace@example.com");
    assert_eq!(browser.value("#invite-name"), "Grace");
    browser.type_into("#name", "Bob");
    browser.type_into("#email", "bob@example.com");
    browser.type_into("#password", "bob's password");
    act_in_place(&browser, "#create-user", false, "Bob can sign in now.");
    assert!(browser.text("#users").contains("bob@example.com"));
    no_overflow("/users");

    // Groups: create, add and remove a member, in place.
    browser.goto(&format!("{site}/groups"));
    browser.type_into("#group-name", "builders");
    browser.click("#new-group input[name=create_caches]");
    act_in_place(&browser, "#create-group", false, "Group builders created.");
    assert!(browser.text(".group p.muted").contains("Members hold: create caches."));
    // Its permissions change in place; what is ticked is what it gives.
    browser.click(".group details summary");
    browser.click(".group .permissions input[name=view_users]");
    act_in_place(&browser, ".group .permissions button", false, "Permissions changed.");
    assert!(browser.text(".group p.muted").contains("Members hold: view users, create caches."));
    browser.choose(".add-member select", "Bob");
    act_in_place(&browser, ".add-member button", false, "Member added.");
    assert!(browser.text(".group table").contains("Bob"));
    act_in_place(&browser, ".group table button", false, "Member removed.");
    no_overflow("/groups");

    // Bob's own page: rights on a cache granted and taken away, a group joined, in place.
    let bob = server.count("SELECT id AS n FROM users WHERE email = 'bob@example.com'");
    browser.goto(&format!("{site}/users/{bob}"));
    assert_eq!(browser.value("#email"), "bob@example.com");
    browser.choose("#permission", "push:");
    act_in_place(&browser, "#grant", false, "Granted push.");
    assert!(browser.text("#user-grants").contains("main"));
    no_overflow("a user's page");
    act_in_place(&browser, ".revoke-access", true, "Access removed.");
    assert!(browser.text("#user-grants").contains("No cache granted directly."));
    act_in_place(&browser, "#join-group button", false, "Added to the group.");
    assert!(browser.text("#user-groups").contains("builders"));
    browser.goto(&format!("{site}/groups"));
    act_in_place(&browser, ".group form[hx-post$=\"/delete\"] button", true, "Group deleted.");
    assert!(!browser.source().contains("class=\"card group\""), "no group left");

    // Cache access: grant and revoke in place; a wrong confirmation is an error at its field.
    browser.goto(&format!("{site}/caches/main/settings"));
    browser.choose("#grant-user", "Bob");
    act_in_place(&browser, "#grant-access", false, "Access granted");
    assert!(browser.text("#grants").contains("Bob"));
    act_in_place(&browser, "#grants button", false, "Access revoked.");
    assert!(!browser.source().contains("id=\"grants\"><tr>"), "no grant left");
    browser.type_into("#confirm-clear", "mian");
    browser.mark_document();
    browser.click("#clear-cache button");
    browser.wait_until("the confirmation error", |html| html.contains("id=\"confirm-clear-error\""));
    assert!(browser.same_document());
    assert_eq!(browser.value("#confirm-clear"), "", "nothing typed there is worth keeping");
    no_overflow("/caches/main/settings");

    // The cache page follows pushes live: the path appears without a reload.
    browser.goto(&format!("{site}/caches/main"));
    browser.element("#path-count");
    browser.mark_document();
    let cli = Cli::new();
    cli.login(&server, &server.admin(&["create-token", ADMIN_EMAIL, "--name", "cli"]));
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &first.app]);
    let first_name = first.app[44..].to_string();
    browser.wait_up_to(std::time::Duration::from_secs(15), "the pushed path appears", |html| {
        html.contains(&first_name) && html.contains(">2 paths<")
    });
    assert!(browser.same_document(), "the table updated in place");

    // Pins: a path that is not there is an error at the form, keeping its input; a pin is
    // set and removed in place.
    browser.type_into("#pin-name", "release");
    browser.type_into("#pin-path", "/nix/store/00000000000000000000000000000000-missing");
    browser.mark_document();
    browser.click("#pin-button");
    browser.wait_until("the pin error", |html| html.contains("id=\"pin-error\""));
    assert!(browser.same_document());
    assert_eq!(browser.value("#pin-name"), "release");
    browser.type_into("#pin-path", &first.app);
    act_in_place(&browser, "#pin-button", false, "Pinned release.");
    assert!(browser.text("#pins").contains(&first_name));
    act_in_place(&browser, ".remove-pin", true, "Pin release removed.");
    assert!(browser.source().contains("id=\"no-pins\""));
    no_overflow("/caches/main");

    // The overview follows pushes live too.
    browser.goto(&format!("{site}/"));
    browser.wait_until("two paths counted", |html| html.contains("id=\"stat-paths\">2<"));
    browser.mark_document();
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &second.app]);
    let second_name = second.app[44..].to_string();
    browser.wait_up_to(std::time::Duration::from_secs(15), "the push shows on the overview", |html| {
        html.contains(&second_name) && html.contains("id=\"stat-paths\">4<")
    });
    assert!(browser.same_document(), "the overview updated in place");
    browser.screenshot("overview-live");
    no_overflow("/");

    // Deleting a user asks first, then answers in place.
    browser.goto(&format!("{site}/users"));
    let bob_row = browser.execute(
        "return [...document.querySelectorAll('#users tr')].findIndex(r => r.textContent.includes('bob@example.com')) + 1;",
    );
    act_in_place(&browser, &format!("#users tr:nth-child({bob_row}) .delete-user"), true, "User deleted.");
    assert!(!browser.text("#users").contains("bob@example.com"));

    // A screenshot of every signed-in page for people to look at (target/browser-screenshots).
    for page in ["/caches", "/caches/main", "/caches/main/settings", "/tokens", "/users", "/groups", "/settings"] {
        browser.goto(&format!("{site}{page}"));
        browser.element("main");
        browser.screenshot(&page.trim_start_matches('/').replace('/', "-"));
        no_overflow(page);
        assert_eq!(browser.unlabelled_controls(), Vec::<String>::new(), "inputs without a label on {page}");
    }
    for page in ["/account", "/cli-login"] {
        browser.goto(&format!("{site}{page}"));
        browser.element("main");
        browser.screenshot(page.trim_start_matches('/'));
    }
}

/// The account page at phone size: an avatar uploaded (shown in the nav at once), and the
/// email address changed with the codes from the two mails, each answering in place.
#[test]
fn the_account_page_changes_avatar_and_address() {
    let mail = support::smtp::MailServer::start();
    let server = mail.server(Backend::Sqlite);
    let browser = Browser::start("account");
    browser.resize(390, 844);
    set_up_administrator(&browser, &server);
    let site = server.url();
    browser.goto(&format!("{site}/account"));
    assert_eq!(browser.text("#account-link .initials"), "A", "initials before any picture");

    let picture = server.dir.path().join("me.png");
    image::RgbImage::from_fn(400, 300, |x, _| image::Rgb([(x % 256) as u8, 120, 200])).save(&picture).unwrap();
    browser.attach("#picture", &picture);
    browser.click("#upload-avatar");
    browser.wait_until("the avatar in the nav", |html| {
        html.contains("Your avatar was saved.") && html.contains("id=\"account-link\" aria-current=\"page\"><img")
    });
    // The picture loads after the nav is swapped in: wait for it rather than race it.
    let loaded_width = || {
        browser
            .execute(
                "const img = document.querySelector('#account-link img'); return img.complete ? img.naturalWidth : 0;",
            )
            .as_i64()
    };
    support::wait_until(std::time::Duration::from_secs(5), "the avatar in the nav has loaded", || {
        loaded_width() != Some(0)
    });
    assert_eq!(loaded_width(), Some(96), "the nav shows the server's small square");
    assert!(browser.horizontal_overflow() <= 0);

    browser.type_into("#new_email", "ada@example.org");
    browser.type_into("#email_password", ADMIN_PASSWORD);
    act_in_place(&browser, "#send-codes", false, "Codes sent to");
    let old_code = support::smtp::code_in(&mail.wait_for(ADMIN_EMAIL, 1));
    let new_code = support::smtp::code_in(&mail.wait_for("ada@example.org", 1));
    browser.type_into("#old_code", &old_code);
    browser.type_into("#new_code", "WRONG-CODE");
    browser.mark_document();
    browser.click("#confirm-email-button");
    browser.wait_until("the code error", |html| html.contains("id=\"new-code-error\""));
    assert!(browser.same_document());
    browser.type_into("#old_code", &old_code);
    browser.type_into("#new_code", &new_code);
    act_in_place(&browser, "#confirm-email-button", false, "Your address is now ada@example.org");
    assert!(browser.horizontal_overflow() <= 0);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM users WHERE email = 'ada@example.org'"), 1);
}

/// Single sign-on in a real browser: the sign-in page's button, the provider's own login and
/// consent pages, and back to the page the person was going to, signed in to a new account.
#[test]
fn signing_in_through_the_identity_provider() {
    use support::oidc::{IdentityProvider, server_env};
    let port = IdentityProvider::reserve_port();
    let env = server_env(port, &[("OIDC_CREATE_USERS", "true")]);
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::builder(Backend::Sqlite).env(&pairs).start();
    let people = serde_json::json!({"lin-7": {"email": "lin@example.com", "email_verified": true, "name": "Lin"}});
    let _provider = IdentityProvider::start(port, &server.url(), people);
    let browser = Browser::start("sso");
    let site = server.url();
    set_up_administrator(&browser, &server);
    browser.click("nav button");
    browser.wait_until("signed out", |html| html.contains("id=\"sso-sign-in\""));

    browser.goto(&format!("{site}/caches"));
    browser.wait_until("the sign-in page", |html| html.contains("Sign in with Test ID"));
    browser.screenshot("sign-in");
    browser.click("#sso-sign-in");
    browser.type_into("input[name=login]", "lin-7");
    browser.type_into("input[name=password]", "anything");
    browser.click("button.login-submit");
    browser.wait_until("the provider's consent page", |html| html.contains("name=\"prompt\" value=\"consent\""));
    browser.click("button.login-submit");
    browser.wait_until("back on the caches page, signed in", |html| html.contains("<h1>Caches</h1>"));
    assert!(browser.url().ends_with("/caches"), "{}", browser.url());
    let account = browser.text("#account-link");
    assert_eq!(account.lines().last(), Some("Lin"), "the name after the initials: {account}");
}
