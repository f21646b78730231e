//! What the server does, independent of HTTP, grouped by capability:
//! - `upload`: pushes (CLI and `nix copy`), from the request body to a visible path;
//! - `serving`: answering Nix (narinfos, NARs) from memory where it can, kept true to the
//!   database across replicas;
//! - `identity`: who is calling and what they may do: accounts, sessions, tokens, groups,
//!   grants, single sign-on, trusted publishing;
//! - `lifecycle`: what leaves the store and when: eviction, pins, garbage collection, fsck;
//! - `caches` (cache settings), `dashboard` (what the pages show), `mail`, `metrics`.

pub mod caches;
pub mod dashboard;
pub mod identity;
pub mod lifecycle;
pub mod mail;
pub mod metrics;
pub mod serving;
pub mod upload;

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
