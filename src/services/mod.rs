//! What the server does, independent of HTTP: authentication and access, pushes, narinfos.

pub mod access;
pub mod access_log;
pub mod auth;
pub mod narinfo;
pub mod push;

use rand::Rng;

/// 128 random bits as hex, for upload ids and similar unguessable names.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
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
        for bad in ["", "Main", "-a", "a-", "a_b", "a.b", "<script>", &"a".repeat(64)] {
            assert!(!is_valid_cache_name(bad), "{bad}");
        }
    }
}
