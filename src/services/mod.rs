//! What the server does, independent of HTTP: authentication and access, pushes, narinfos.

pub mod access;
pub mod access_log;
pub mod accounts;
pub mod auth;
pub mod avatars;
pub mod cache_info;
pub mod caches;
pub mod cli_login;
pub mod dashboard;
pub mod deadline;
pub mod decode_memory;
pub mod email_change;
pub mod eviction;
pub mod fsck;
pub mod gc;
pub mod grants;
pub mod groups;
pub mod hot_cache;
pub mod janitor;
pub mod mail;
pub mod metrics;
pub mod narinfo;
pub mod nix_upload;
pub mod oidc;
pub mod passwords;
pub mod pins;
pub mod presence;
pub mod push;
pub mod push_error;
pub mod quota;
pub mod receive;
pub mod replication;
pub mod sessions;
pub mod tokens;
pub mod trusted_publishing;
pub mod upstream;
pub mod user_links;

pub use hibernation::api::{CACHE_NAME_RULE, is_valid_cache_name};

/// What is wrong with a user's display name, if anything. Names appear in pages and mails:
/// line breaks or other control characters could forge mail headers.
pub fn display_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.chars().count() > 100 {
        return Some("Enter a name of 1 to 100 characters.");
    }
    if name.chars().any(char::is_control) {
        return Some("A name cannot contain line breaks or other control characters.");
    }
    None
}
