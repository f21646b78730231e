//! Requests an attacker would try that no other test sends: path traversal in every URL the
//! server maps to files or keys, SQL in names and searches, and LIKE wildcards in a search.
//! Each gets a plain refusal (never a file from outside, never a 5xx) and changes nothing.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::web::{ADMIN_EMAIL, WebClient};
use support::{Backend, Cli, Closure, Keys, Server};

/// Sends `target` exactly as written (a client library would normalise `..` away).
fn raw_get(server: &Server, target: &str, token: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn traversal_in_urls_reaches_nothing_outside_the_cache() {
    let keys = Keys::generate("hostile-1");
    let closure = Closure::build("hostile");
    let server = Server::start(Backend::Sqlite);
    let token = server.bootstrap(&keys, true);
    pushed_by(&server, &token).run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    // Files a traversal would be after: the database beside the storage, /etc/passwd.
    let secrets = ["root:x:0:0", "SQLite format 3"];
    let attempts = [
        "/static/../hibernation.db",
        "/static/..%2f..%2fhibernation.db",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..\\..\\hibernation.db",
        "/api/nix/main/nar/../../../../etc/passwd",
        "/api/nix/main/nar/..%2f..%2f..%2fhibernation.db",
        "/api/nix/main/nar/%2e%2e%2f%2e%2e%2fhibernation.db.nar",
        "/api/nix/main/log/..%2f..%2f..%2fetc%2fpasswd",
        "/api/nix/..%2fmain/nix-cache-info",
        "/api/nix/main/..%2f..%2fetc%2fpasswd.narinfo",
        "/api/nix/main/%00.narinfo",
        "/api/v1/caches/..%2fmain",
        "/caches/..%2fmain/paths",
    ];
    for target in attempts {
        let (status, answer) = raw_get(&server, target, &token);
        assert!(matches!(status, 400 | 401 | 403 | 404 | 303), "{target}: {status}\n{answer}");
        for secret in secrets {
            assert!(!answer.contains(secret), "{target} returned a file from outside the cache:\n{answer}");
        }
    }
    // Nothing moved: the cache still serves its paths.
    let narinfo = format!("/api/nix/main/{}.narinfo", &closure.app[11..43]);
    assert_eq!(server.get(&narinfo, None).status(), 200);
}

#[test]
fn sql_in_names_and_searches_is_only_text() {
    let keys = Keys::generate("hostile-2");
    let closure = Closure::build("sqlish");
    let server = Server::start(Backend::Sqlite);
    let web = WebClient::new(&server);
    web.setup_admin();
    server.admin(&["create-cache", "main", "--no-upstream", "--public-key", &keys.public]);
    let token = server.admin(&["create-token", ADMIN_EMAIL, "--name", "ci"]);
    pushed_by(&server, &token).run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    let caches_before = server.count("SELECT COUNT(*) AS n FROM caches");

    // A cache name is checked against its rule before any query sees it.
    let out = server.command(Some(&["admin", "create-cache", "x'; DROP TABLE caches;--"])).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("name"), "{}", support::output_text(&out));

    // Searches are bound parameters, and LIKE's wildcards are escaped: `%` and `_` match
    // only themselves.
    let search = |q: &str| {
        let response = web.get(&format!("/caches/main?q={}", urlencode(q)));
        assert_eq!(response.status(), 200, "the search {q:?}: {:?}", response.headers().get("location"));
        response.text().unwrap()
    };
    let plain = search("app-sqlish");
    assert!(plain.contains("app-sqlish"), "a plain search finds the path: {plain}");
    for hostile in ["' OR 1=1 --", "\" OR \"\"=\"", "%", "_", "%app%", "'; DELETE FROM store_paths; --"] {
        let page = search(hostile);
        assert!(!page.contains("app-sqlish"), "the search {hostile:?} matched a path it does not contain");
    }
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM caches"), caches_before);
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM store_paths"), 2);
}

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A CLI logged in to `server`.
fn pushed_by(server: &Server, token: &str) -> Cli {
    let cli = Cli::new();
    cli.login(server, token);
    cli
}
