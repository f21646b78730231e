//! What the HTTP layer knows of the server's configuration: the site's address, who may
//! forward client addresses, body limits, and the mail and sign-on settings the environment
//! fixes. `config` assembles it at start; the web layer never reads the environment.

use std::time::Duration;

use super::client_address::Network;
use super::limits::Limits;
use crate::services::identity::oidc::OidcSettings;
use crate::services::mail::SmtpSettings;

#[derive(Debug, Clone)]
pub struct Site {
    /// SITE_URL: where people and Nix reach the server.
    pub url: String,
    /// `{cache}.{site host}` serves that cache's protocol at `/` (VIRTUAL_HOST_ROUTING).
    pub virtual_host_routing: bool,
    /// Reverse proxies whose X-Forwarded-For names the client (TRUSTED_PROXIES).
    pub trusted_proxies: Vec<Network>,
    /// Mail settings from SMTP_* variables; they lock the dashboard's mail settings.
    pub smtp: Option<SmtpSettings>,
    /// Single sign-on from OIDC_* variables.
    pub oidc: Option<OidcSettings>,
    pub limits: Limits,
    /// CLIENT_TIMEOUT: how long a connection or a request body may stay silent.
    pub client_timeout: Duration,
    /// Which database and storage the server runs on, in words (the first-run page).
    pub database: String,
    pub storage: String,
}

impl Site {
    /// The host of SITE_URL, lower-case, without the port.
    pub fn host(&self) -> String {
        reqwest::Url::parse(&self.url).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase)).unwrap_or_default()
    }

    /// The URL of a cache on its own virtual host, when VIRTUAL_HOST_ROUTING is on.
    pub fn virtual_host_url(&self, cache: &str) -> Option<String> {
        if !self.virtual_host_routing {
            return None;
        }
        let mut url = reqwest::Url::parse(&self.url).ok()?;
        url.set_host(Some(&format!("{cache}.{}", self.host()))).ok()?;
        Some(url.as_str().trim_end_matches('/').to_string())
    }

    /// `; Secure` for session cookies when the site is served over HTTPS.
    pub fn secure_cookie_attribute(&self) -> &'static str {
        if self.url.starts_with("https://") { "; Secure" } else { "" }
    }
}
