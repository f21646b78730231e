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
    fn cache_names_are_dns_labels() {
        for good in ["main", "team-a", "a", "x1"] {
            assert!(is_valid_cache_name(good), "{good}");
        }
        for bad in ["", "Main", "-a", "a-", "a_b", "a.b", "a/b", "<script>", &"a".repeat(64)] {
            assert!(!is_valid_cache_name(bad), "{bad}");
        }
    }
}
