//! Trusted publishing against a real OpenID Connect provider: CI trades an ID token for a
//! short-lived API token scoped by the cache's rules, then pushes with it; replayed,
//! expired, wrong-audience, wrong-issuer, unsigned, tampered, shared-secret-signed and
//! rule-mismatching tokens are refused with a clear 401, and nothing is issued for them.

mod support;

use base64::Engine;
use serde_json::{Value, json};
use support::oidc::IdentityProvider;
use support::{Backend, Cli, Closure, Keys, Server};

fn exchange(server: &Server, token: &str) -> (u16, Value) {
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/api/v1/oidc/token", server.url()))
        .json(&json!({ "token": token }))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn refused(server: &Server, token: &str, why: &str) {
    let (status, body) = exchange(server, token);
    assert_eq!(status, 401, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains(why), "expected {why:?} in {error:?}");
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn ci_trades_an_id_token_for_a_scoped_token_and_pushes_with_it() {
    trades_and_pushes(Backend::Sqlite);
}

#[test]
fn ci_trades_an_id_token_on_postgres() {
    trades_and_pushes(Backend::Postgres);
}

fn trades_and_pushes(backend: Backend) {
    let keys = Keys::generate("trusted-1");
    let closure = Closure::build("trusted");
    let server = Server::start(backend);
    let provider = IdentityProvider::start(IdentityProvider::reserve_port(), &server.url(), json!({}));
    let issuer = provider.issuer();
    for cache in ["main", "docs", "other"] {
        server.admin(&["create-cache", cache, "--no-upstream", "--public-key", &keys.public]);
    }
    server.admin(&[
        "trust",
        "main",
        "--issuer",
        &issuer,
        "--claim",
        "repository=acme/app",
        "--claim",
        "ref=refs/heads/main",
        "--push",
    ]);
    server.admin(&["trust", "docs", "--issuer", &issuer, "--claim", "repository=acme/app"]);
    server.admin(&["trust", "other", "--issuer", &issuer, "--claim", "repository=acme/other", "--push"]);
    let rules = server.admin(&["trust-rules", "main"]);
    assert!(rules.contains(&issuer) && rules.contains("push") && rules.contains("acme/app"), "{rules}");

    let job = json!({"aud": server.url(), "sub": "repo:acme/app:ref:refs/heads/main", "repository": "acme/app", "ref": "refs/heads/main"});
    let token = provider.mint(job.clone(), json!({}));
    let (status, answer) = exchange(&server, &token);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["caches"], json!(["main"]), "push rules win: the read-only match is left out");
    assert_eq!(answer["push"], true);
    let secret = answer["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("hib_"));

    // The CLI pushes with it to main, and nowhere else.
    let cli = Cli::new();
    cli.login(&server, &secret);
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);
    let hash = &closure.app[11..43];
    assert_eq!(server.get(&format!("/api/nix/main/{hash}.narinfo"), Some(&secret)).status(), 200);
    let elsewhere = cli.run(&["push", "other", "--key", keys.secret_path(), &closure.app]);
    assert!(!elsewhere.status.success(), "the token is scoped to main");

    // Replayed: each ID token works once.
    refused(&server, &token, "exchanged already");

    // A branch no push rule names gets read access to the cache that trusts the repository.
    let feature =
        provider.mint(json!({"aud": server.url(), "repository": "acme/app", "ref": "refs/heads/feature"}), json!({}));
    let (status, answer) = exchange(&server, &feature);
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["caches"].clone(), answer["push"].clone()), (json!(["docs"]), json!(false)));

    // Refused, each with its reason.
    refused(
        &server,
        &provider.mint(json!({"aud": server.url(), "repository": "acme/unknown"}), json!({})),
        "no cache's rule matches",
    );
    refused(
        &server,
        &provider.mint(json!({"aud": "https://elsewhere.example.com", "repository": "acme/app"}), json!({})),
        "not meant for this server",
    );
    refused(
        &server,
        &provider.mint(
            json!({"aud": server.url(), "repository": "acme/app", "exp": 1_000_000_000, "iat": 999_999_000}),
            json!({}),
        ),
        "expired",
    );
    refused(
        &server,
        &provider.mint(
            json!({"aud": server.url(), "repository": "acme/app", "iss": "https://token.actions.example.com"}),
            json!({}),
        ),
        "no cache trusts tokens from https://token.actions.example.com",
    );
    // Unsigned (alg none) and tampered tokens.
    let payload = b64(json!({"iss": issuer, "aud": server.url(), "repository": "acme/app", "ref": "refs/heads/main", "exp": 4_000_000_000u64}).to_string().as_bytes());
    refused(
        &server,
        &format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
        "unsigned tokens (alg none) are never accepted",
    );
    let good = provider.mint(job.clone(), json!({}));
    let parts: Vec<&str> = good.split('.').collect();
    refused(&server, &format!("{}.{payload}.{}", parts[0], parts[2]), "signature does not verify");
    // Signed with a shared secret (HS256), as an attacker holding only public keys would.
    refused(&server, &format!("{}.{payload}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(b"mac")), "not accepted");
    // A key the issuer does not publish.
    refused(&server, &provider.mint(job.clone(), json!({"kid": "not-a-published-key"})), "publishes no key");

    // Tokens were issued for the two accepted exchanges only.
    assert_eq!(server.count("SELECT COUNT(*) AS n FROM api_tokens WHERE name LIKE 'trusted publishing %'"), 2);

    // Removing the push rule ends push access for new exchanges: the read rule still holds.
    let rule = server.admin(&["trust-rules", "main"]).split('\t').next().unwrap().trim().to_string();
    server.admin(&["untrust", "main", &rule]);
    let mut fresh = job;
    fresh["jti"] = json!("another job");
    let (status, answer) = exchange(&server, &provider.mint(fresh, json!({})));
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["caches"].clone(), answer["push"].clone()), (json!(["docs"]), json!(false)));
}

/// `hibernation login --oidc` in a GitHub Actions job (the token service's environment
/// variables) and with a given ID token, then a push with what it saved.
#[test]
fn the_cli_logs_in_with_an_id_token_from_github_actions_or_given() {
    let keys = Keys::generate("trusted-cli");
    let closure = Closure::build("trusted-cli");
    let server = Server::start(Backend::Sqlite);
    let actions = json!({"request_token": "actions-request-token", "claims": {"repository": "acme/app", "ref": "refs/heads/main"}});
    let provider =
        IdentityProvider::start_with_actions(IdentityProvider::reserve_port(), &server.url(), json!({}), actions);
    server.admin(&["create-cache", "main", "--no-upstream", "--public-key", &keys.public]);
    server.admin(&["trust", "main", "--issuer", &provider.issuer(), "--claim", "repository=acme/app", "--push"]);

    // In GitHub Actions: the token service's URL and request token are in the environment.
    let cli = Cli::new();
    let out = cli
        .command(&["login", &server.url(), "--oidc"])
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", format!("{}/actions/id-token?api-version=2.0", provider.issuer()))
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "actions-request-token")
        .output()
        .unwrap();
    let text = support::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("by trusted publishing: may push to main until"), "{text}");
    cli.run_ok(&["push", "main", "--key", keys.secret_path(), &closure.app]);

    // Outside GitHub Actions, without a token: a clear error.
    let bare = Cli::new();
    let out = bare.command(&["login", &server.url(), "--oidc"]).output().unwrap();
    assert!(!out.status.success());
    assert!(support::output_text(&out).contains("permissions: id-token: write"));

    // A given token; a refused one says why.
    let given = provider.mint(json!({"aud": server.url(), "repository": "acme/app", "jti": "given"}), json!({}));
    let other = Cli::new();
    assert!(other.run_ok(&["login", &server.url(), "--oidc", "--id-token", &given]).contains("may push to main"));
    let out = Cli::new().command(&["login", &server.url(), "--oidc", "--id-token", &given]).output().unwrap();
    assert!(!out.status.success());
    assert!(support::output_text(&out).contains("exchanged already"), "{}", support::output_text(&out));
}

/// A cache's managers set trusted publishing up on its settings page: a bad rule is an
/// error at the form with what was typed kept, a good one works at once, removing it ends it.
#[test]
fn managers_trust_ci_on_the_settings_page() {
    use support::web::{WebClient, csrf_in, location};
    let server = Server::start(Backend::Sqlite);
    let provider = IdentityProvider::start(IdentityProvider::reserve_port(), &server.url(), json!({}));
    let admin = WebClient::new(&server);
    admin.setup_admin();
    server.admin(&["create-cache", "main", "--no-upstream"]);
    server.create_user_with_password("carol", "carol@example.com", "carol's password");
    server.admin(&["grant", "carol", "main", "--manage"]);
    let carol = WebClient::new(&server);
    assert_eq!(carol.sign_in("carol@example.com", "carol's password").status(), 303);
    let page = carol.get("/caches/main/settings").text().unwrap();
    assert!(page.contains("id=\"no-trust-rules\""));
    let csrf = csrf_in(&page);

    let unconditional = carol.post(
        "/caches/main/trust",
        &[("csrf", &csrf), ("issuer", &provider.issuer()), ("conditions", ""), ("permission", "push")],
    );
    assert_eq!(unconditional.status(), 422);
    let text = unconditional.text().unwrap();
    assert!(text.contains("id=\"trust-error\"") && text.contains("at least one condition"), "{text}");
    assert!(text.contains(&format!("value=\"{}\"", provider.issuer())), "the issuer typed stays");
    let plain_http = carol.post(
        "/caches/main/trust",
        &[
            ("csrf", &csrf),
            ("issuer", "http://ci.example.com"),
            ("conditions", "repository=acme/app"),
            ("permission", "push"),
        ],
    );
    assert!(plain_http.text().unwrap().contains("must be an https URL"));

    let added = carol.post(
        "/caches/main/trust",
        &[
            ("csrf", &csrf),
            ("issuer", &provider.issuer()),
            ("conditions", "repository=acme/app\nref=refs/heads/main"),
            ("permission", "push"),
        ],
    );
    let page = carol.follow(added);
    assert!(page.contains("ref = refs/heads/main, repository = acme/app") && page.contains("may now push"), "{page}");
    let job = json!({"aud": server.url(), "repository": "acme/app", "ref": "refs/heads/main"});
    let (status, answer) = exchange(&server, &provider.mint(job.clone(), json!({})));
    assert_eq!((status, answer["caches"].clone()), (200, json!(["main"])), "{answer}");

    let rule = page.split("/caches/main/trust/").nth(1).unwrap().split('/').next().unwrap().to_string();
    let removed = carol.post(&format!("/caches/main/trust/{rule}/remove"), &[("csrf", &csrf)]);
    assert_eq!(location(&removed), "/caches/main/settings#trust");
    let mut again = job;
    again["jti"] = json!("again");
    refused(&server, &provider.mint(again, json!({})), "no cache trusts tokens from");
}

/// The issuer rotates its signing key: a token signed with the new key is accepted once the
/// server fetches the keys again (it does for a key id it does not know, at most every 5 s).
#[test]
fn a_rotated_issuer_key_is_fetched_again() {
    let server = Server::start(Backend::Sqlite);
    let port = IdentityProvider::reserve_port();
    let provider = IdentityProvider::start(port, &server.url(), json!({}));
    server.admin(&["create-cache", "main", "--no-upstream"]);
    server.admin(&["trust", "main", "--issuer", &provider.issuer(), "--claim", "repository=acme/app"]);
    let job = |n: u32| json!({"aud": server.url(), "repository": "acme/app", "jti": format!("job {n}")});
    assert_eq!(exchange(&server, &provider.mint(job(1), json!({}))).0, 200, "the first key is fetched");
    drop(provider);
    // The same issuer, a new key (each start makes one).
    let rotated = IdentityProvider::start(port, &server.url(), json!({}));
    std::thread::sleep(std::time::Duration::from_secs(6));
    let (status, answer) = exchange(&server, &rotated.mint(job(2), json!({})));
    assert_eq!(status, 200, "{answer}");
}
