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
    browser.wait_until("the app row is gone", |html| !html.contains("app-browser"));
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
    browser.type_into("#login-code", &login.code());
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
