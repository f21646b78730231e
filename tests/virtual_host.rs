//! VIRTUAL_HOST_ROUTING: `http://<cache>.localhost:<port>` is a substituter for the real Nix
//! client, hosts match without case or port, and the dashboard names the URL.

mod support;

use support::web::WebClient;
use support::{Backend, Cli, Closure, Keys, NixClient, Server, output_text};

fn get_with_host(server: &Server, host: &str, path: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{path}", server.url()))
        .header("host", host)
        .send()
        .unwrap()
}

#[test]
fn nix_substitutes_from_a_cache_on_its_own_host() {
    let keys = Keys::generate("vhost-1");
    let closure = Closure::build("vhost");
    let server = Server::builder(Backend::Sqlite)
        .env(&[("SITE_URL", "http://localhost:{port}"), ("VIRTUAL_HOST_ROUTING", "true")])
        .start();
    let web = WebClient::new(&server);
    web.setup_admin();
    let token = server.bootstrap(&keys, false);
    let cli = Cli::new();
    cli.login(&server, &token);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);

    let cache_url = format!("http://main.localhost:{}", server.port);
    let client = NixClient::new();
    client.write_netrc("main.localhost", &token);
    let store = client.store("substituted");
    let out = client.realise(&cache_url, &store, &keys.public, &closure.app);
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(store.join(&closure.app[1..]).join("bin/app").exists());

    // Case and port do not matter; `/` is the cache's nix-cache-info; other hosts are not caches.
    let port = server.port;
    let info = get_with_host(&server, &format!("MAIN.LocalHost:{port}"), "/");
    assert_eq!(info.status(), 401, "private: the cache asks for credentials");
    let info = reqwest::blocking::Client::new()
        .get(format!("{}/", server.url()))
        .header("host", format!("Main.localhost:{port}"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(info.status(), 200);
    assert!(info.text().unwrap().contains("StoreDir: /nix/store"));
    // A path is served only on its own cache's host.
    server.admin(&["create-cache", "other", "--no-upstream", "--public-key", &keys.public]);
    let narinfo = format!("/{}.narinfo", &closure.app[11..43]);
    let on_host = |host: &str| {
        reqwest::blocking::Client::new()
            .get(format!("{}{narinfo}", server.url()))
            .header("host", format!("{host}:{port}"))
            .bearer_auth(&token)
            .send()
            .unwrap()
    };
    let found = on_host("main.localhost");
    assert_eq!(found.status(), 200);
    assert!(found.text().unwrap().contains(&format!("StorePath: {}", closure.app)));
    assert_eq!(on_host("other.localhost").status(), 404, "the other cache does not have it");
    assert_eq!(on_host("nope.localhost").status(), 401, "a missing cache answers as a private one would");
    let dashboard = get_with_host(&server, &format!("localhost:{port}"), "/");
    assert_eq!(dashboard.status(), 303, "the site's own host is the dashboard");

    // The cache page names the virtual-host URL and its netrc host.
    let page = web.get("/caches/main").text().unwrap();
    assert!(page.contains(&format!("id=\"virtual-host-url\">{cache_url}<")), "{page}");
    assert!(page.contains("machine main.localhost login hibernation password"), "{page}");
}

#[test]
fn without_the_setting_hosts_are_ignored() {
    let keys = Keys::generate("vhost-2");
    let server = Server::builder(Backend::Sqlite).env(&[("SITE_URL", "http://localhost:{port}")]).start();
    server.bootstrap(&keys, true);
    let response = get_with_host(&server, &format!("main.localhost:{}", server.port), "/nix-cache-info");
    assert_eq!(response.status(), 404, "no routing by host unless VIRTUAL_HOST_ROUTING is on");
    assert!(response.text().unwrap().contains("Page not found"));
}
