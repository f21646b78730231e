//! A real OpenID Connect provider for single sign-on tests: `tests/oidc/provider.mjs` runs
//! the `oidc-provider` package (installed by `scripts/test`) with one client for the server
//! under test and the people the test names.

use std::path::PathBuf;
use std::process::{Child, Command};

use serde_json::{Value, json};

pub const CLIENT_ID: &str = "hibernation";
pub const CLIENT_SECRET: &str = "test client secret";

pub struct IdentityProvider {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl IdentityProvider {
    /// A port for a provider started later: the server under test needs the issuer URL
    /// before it starts, the provider the server's callback URL.
    pub fn reserve_port() -> u16 {
        super::free_port()
    }

    pub fn issuer_for(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }

    /// Starts the provider on `port` for a server at `site` with these people:
    /// `{"<sub>": {"email": ..., "email_verified": true, "name": ..., "groups": [...]}}`.
    pub fn start(port: u16, site: &str, accounts: Value) -> Self {
        Self::start_with_actions(port, site, accounts, Value::Null)
    }

    /// Like [`IdentityProvider::start`], also answering like GitHub Actions' token service
    /// at `/actions/id-token` (`actions`: `{"request_token": ..., "claims": {...}}`).
    pub fn start_with_actions(port: u16, site: &str, accounts: Value, actions: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({
            "actions": actions,
            "port": port,
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [format!("{site}/oidc/callback")],
                "response_types": ["code"],
                "grant_types": ["authorization_code"],
            }],
            "accounts": accounts,
        });
        let config_path = dir.path().join("provider.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
        // Its output goes to a file: a closed pipe would end it at its next notice.
        let log = dir.path().join("provider.log");
        let child = Command::new("node")
            .arg(&script)
            .arg(&config_path)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("provider.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node ({e}): scripts/test installs Node.js and oidc-provider"));
        super::wait_until(std::time::Duration::from_secs(20), "the OpenID Connect provider to listen", || {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("listening"))
        });
        Self { child, port, _dir: dir }
    }

    pub fn issuer(&self) -> String {
        Self::issuer_for(self.port)
    }

    /// An ID token signed by this provider with `claims` (iss, iat and exp filled in unless
    /// given) and `header` fields, like those a CI system hands its jobs.
    pub fn mint(&self, claims: Value, header: Value) -> String {
        reqwest::blocking::Client::new()
            .post(format!("{}/test/id-token", self.issuer()))
            .body(json!({ "claims": claims, "header": header }).to_string())
            .send()
            .unwrap()
            .text()
            .unwrap()
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment that points a server at the provider on `port`.
pub fn server_env(port: u16, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("OIDC_ISSUER_URL", IdentityProvider::issuer_for(port)),
        ("OIDC_CLIENT_ID", CLIENT_ID.to_string()),
        ("OIDC_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ("OIDC_NAME", "Test ID".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}
