//! What the server does, independent of HTTP: authentication and access, pushes, narinfos.

pub mod access;
pub mod access_log;
pub mod auth;
pub mod cache_info;
pub mod cli_login;
pub mod hot_cache;
pub mod janitor;
pub mod mail;
pub mod metrics;
pub mod narinfo;
pub mod nix_upload;
pub mod passwords;
pub mod push;
pub mod receive;
pub mod sessions;
pub mod upstream;
pub mod user_links;

use rand::Rng;

/// 128 random bits as hex, for upload ids and similar unguessable names.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}

pub use hibernation::api::{CACHE_NAME_RULE, is_valid_cache_name};
