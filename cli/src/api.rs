//! The push API between the `hibernation` CLI and the server (JSON over HTTP).
//!
//! 1. `POST /api/v1/caches/{cache}/push-plan` with [`PushPlanRequest`]: one batch that says,
//!    for every path of a closure, whether the cache already has it, whether the server can
//!    attach a NAR it already stores (the caller can read a cache holding it), or whether the
//!    NAR must be uploaded.
//! 2. `PUT /api/v1/caches/{cache}/paths/{hash}` per path, references first: the metadata as a
//!    base64url JSON [`PathUpload`] in the [`PATH_INFO_HEADER`] header, the zstd-compressed NAR
//!    as the body (empty when the plan said `attach`). Answers [`PathUploaded`].
//!
//! Errors are [`ApiError`] JSON bodies with a human-readable message.

use serde::{Deserialize, Serialize};

use crate::nix::NarHash;

/// Header carrying the base64url (no padding) JSON [`PathUpload`] of a path upload.
pub const PATH_INFO_HEADER: &str = "x-hibernation-path-info";

/// Base path of the JSON API.
pub const API_PREFIX: &str = "/api/v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushPlanRequest {
    pub paths: Vec<PlannedPath>,
    /// Store paths an upstream cache already holds too (only where the cache allows it).
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedPath {
    /// Full store path.
    pub store_path: String,
    pub nar_hash: NarHash,
    pub nar_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    /// The cache already serves this path.
    Present,
    /// The server holds this NAR in a cache the caller can read: send the path without a body.
    Attach,
    /// The NAR must be uploaded.
    Upload,
    /// An upstream cache of this cache already serves the path: it is not stored again.
    Upstream,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushPlanResponse {
    /// One entry per requested path, in request order.
    pub actions: Vec<PlanAction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathUpload {
    /// Full store path.
    pub store_path: String,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    /// Base names.
    pub references: Vec<String>,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    /// `Sig:` values (`<key name>:<base64>`); one must verify with a key of the cache.
    pub signatures: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PathUploaded {
    pub store_path: String,
    /// False when the cache already had the path (nothing changed).
    pub created: bool,
    /// Bytes of the NAR body the server received and stored (0 when attached or present).
    pub uploaded_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WhoAmI {
    pub user: String,
    pub token: String,
}

/// A cache whose paths are not pushed again: its URL and the keys its narinfos are signed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    pub url: String,
    pub public_keys: Vec<String>,
}

pub const DEFAULT_UPSTREAM_URL: &str = "https://cache.nixos.org";
pub const DEFAULT_UPSTREAM_KEY: &str = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFnspcDShjY=";

impl Upstream {
    /// `https://cache.nixos.org` with its key: what a new cache starts with.
    pub fn default_upstream() -> Self {
        Self { url: DEFAULT_UPSTREAM_URL.into(), public_keys: vec![DEFAULT_UPSTREAM_KEY.into()] }
    }

    /// One `<url> <key> [<key>...]` line, as the dashboard and the admin CLI take it.
    pub fn parse_line(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let url = words.next().ok_or("an upstream line needs a URL and a public key")?.trim_end_matches('/');
        let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
            return Err(format!("{url}: the upstream URL must start with http:// or https://"));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') || url.contains(['?', '#']) {
            return Err(format!(
                "{url}: give the upstream as scheme://host[:port][/path], without credentials or query"
            ));
        }
        let public_keys: Vec<String> = words.map(str::to_string).collect();
        if public_keys.is_empty() {
            return Err(format!("{url}: give the upstream's public key after its URL"));
        }
        for key in &public_keys {
            crate::nix::PublicKey::parse(key).map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(Self { url: url.to_string(), public_keys })
    }

    pub fn to_line(&self) -> String {
        format!("{} {}", self.url, self.public_keys.join(" "))
    }
}

/// `GET /api/v1/caches` (the caches the caller can read) and `GET /api/v1/caches/{cache}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheInfo {
    pub name: String,
    pub public: bool,
    pub priority: i32,
    /// The URL to give Nix as a substituter.
    pub substituter: String,
    pub public_keys: Vec<String>,
    pub upstreams: Vec<Upstream>,
    pub allow_force_push: bool,
    pub can_push: bool,
    /// What the cache holds: told to signed-in callers only (counting costs the server a
    /// scan, which anonymous requests must not be able to cause).
    #[serde(default)]
    pub paths: Option<i64>,
    #[serde(default)]
    pub stored_bytes: Option<i64>,
    pub quota_bytes: Option<i64>,
}

impl CacheInfo {
    /// "12 paths, 3.1 MiB", or "-" when the server did not say.
    pub fn size_text(&self) -> String {
        match (self.paths, self.stored_bytes) {
            (Some(paths), Some(bytes)) => {
                format!("{paths} paths, {}", crate::human::human_bytes(bytes.max(0) as u64))
            }
            _ => "-".to_string(),
        }
    }
}

/// `POST /api/v1/oidc/token`: trusted publishing, an OpenID Connect ID token from CI (its
/// audience the server's URL) traded for a short-lived API token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcTokenRequest {
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OidcTokenResponse {
    /// The API token (`hib_...`).
    pub token: String,
    /// When it stops working (RFC 3339, UTC).
    pub expires_at: String,
    /// The caches it reaches.
    pub caches: Vec<String>,
    /// Whether it may push (else read only).
    pub push: bool,
}

/// `POST /api/v1/cli-login`: a login request the user approves in the dashboard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CliLoginStart {
    /// Names the machine, e.g. `hibernation on build-01`; shown on the approval page.
    pub client_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CliLoginStarted {
    /// Shown in the terminal and on the approval page, so the user can match them.
    pub code: String,
    pub approve_url: String,
    /// Only the CLI knows it; it collects the token with it.
    pub poll_secret: String,
    pub expires_in_seconds: u64,
}

/// `POST /api/v1/cli-login/poll`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CliLoginPoll {
    pub poll_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CliLoginState {
    /// Not approved yet: ask again shortly.
    Pending,
    /// Approved: the new token, shown this once.
    Approved { token: String, user: String },
}

/// Cache names are DNS labels so that virtual-host routing can use them.
pub fn is_valid_cache_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

pub const CACHE_NAME_RULE: &str = "cache names use 1-63 lower-case letters, digits and '-', not at either end";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_lines_are_checked() {
        let key = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFnspcDShjY=";
        let up = Upstream::parse_line(&format!("https://mirror.example/nix/ {key}")).unwrap();
        assert_eq!((up.url.as_str(), up.public_keys.len()), ("https://mirror.example/nix", 1));
        assert_eq!(Upstream::parse_line(&up.to_line()).unwrap(), up);
        for bad in [
            format!("ftp://mirror.example {key}"),
            format!("https://user:pw@mirror.example {key}"),
            format!("https://mirror.example/?x=1 {key}"),
            format!("https:// {key}"),
            "https://mirror.example".to_string(),
            "https://mirror.example not-a-key".to_string(),
        ] {
            assert!(Upstream::parse_line(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_names_are_dns_labels() {
        for good in ["main", "team-a", "a", "x1"] {
            assert!(is_valid_cache_name(good), "{good}");
        }
        for bad in ["", "Main", "-a", "a-", "a_b", "a.b", "a/b", "<script>", &"a".repeat(64)] {
            assert!(!is_valid_cache_name(bad), "{bad}");
        }
    }
}

/// `PUT /api/v1/caches/<cache>/pins/<name>`: pin a path (and so its closure) in the cache,
/// or move the pin of that name to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinRequest {
    /// A store path the cache holds (`/nix/store/<hash>-<name>`).
    pub store_path: String,
    /// The pin ends this many seconds from now; it lasts until removed when absent.
    #[serde(default)]
    pub expires_in_seconds: Option<i64>,
}

/// A pin as the server lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PinInfo {
    pub name: String,
    pub store_path: String,
    /// When it was set or last moved (RFC 3339, UTC).
    pub pinned_at: String,
    pub expires_at: Option<String>,
}

/// Pin names: what a release channel or branch would be called.
pub fn is_valid_pin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

pub const PIN_NAME_RULE: &str = "1 to 64 letters, digits, '-', '_' or '.', not starting with '.'";
