//! Store paths: `/nix/store/<32 nix32 chars>-<name>`.

use std::fmt;

use super::{STORE_DIR, base32};

pub const HASH_LEN: usize = 32;
const MAX_NAME_LEN: usize = 211;

/// A validated store path, kept as its base name (`<hash>-<name>`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath {
    base: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorePathError {
    #[error("{0:?} is not in the Nix store {STORE_DIR}")]
    NotInStore(String),
    #[error("{0:?} is not a store path: it must look like <32-character hash>-<name>")]
    Malformed(String),
    #[error("{0:?} has an invalid hash part (Nix base32, 32 characters)")]
    BadHash(String),
    #[error("{0:?} has an invalid name: names use A-Z a-z 0-9 + - . _ ? = and do not start with '.'")]
    BadName(String),
}

impl StorePath {
    /// Parses a full path such as `/nix/store/<hash>-hello`. Trailing sub-paths are refused.
    pub fn from_full_path(path: &str) -> Result<Self, StorePathError> {
        let base = path
            .strip_prefix(STORE_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .ok_or_else(|| StorePathError::NotInStore(path.to_string()))?;
        Self::from_base_name(base)
    }

    /// Parses a base name such as `<hash>-hello`.
    pub fn from_base_name(base: &str) -> Result<Self, StorePathError> {
        let malformed = || StorePathError::Malformed(base.to_string());
        if base.len() < HASH_LEN + 2 || base.as_bytes()[HASH_LEN] != b'-' || !base.is_char_boundary(HASH_LEN) {
            return Err(malformed());
        }
        let (hash, name) = (&base[..HASH_LEN], &base[HASH_LEN + 1..]);
        if !base32::is_nix32(hash) {
            return Err(StorePathError::BadHash(base.to_string()));
        }
        if !is_valid_name(name) {
            return Err(StorePathError::BadName(base.to_string()));
        }
        Ok(Self { base: base.to_string() })
    }

    /// Accepts either a full path or a base name.
    pub fn parse(s: &str) -> Result<Self, StorePathError> {
        if s.starts_with('/') { Self::from_full_path(s) } else { Self::from_base_name(s) }
    }

    pub fn hash_part(&self) -> &str {
        &self.base[..HASH_LEN]
    }

    pub fn name(&self) -> &str {
        &self.base[HASH_LEN + 1..]
    }

    pub fn base_name(&self) -> &str {
        &self.base
    }

    pub fn full_path(&self) -> String {
        format!("{STORE_DIR}/{}", self.base)
    }
}

/// Is `name` a valid store path name (the part after the hash)?
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || b"+-._?=".contains(&c))
}

/// Is `s` a valid 32-character store path hash part?
pub fn is_hash_part(s: &str) -> bool {
    s.len() == HASH_LEN && base32::is_nix32(s)
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{STORE_DIR}/{}", self.base)
    }
}

impl fmt::Debug for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StorePath({})", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A path printed by `nix-store --add` for a file named hello.txt.
    const HELLO: &str = "/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt";

    #[test]
    fn parses_full_paths_and_base_names() {
        let p = StorePath::from_full_path(HELLO).unwrap();
        assert_eq!(p.hash_part(), "i9pmrzmpshapij2kin22pff6fc2adavx");
        assert_eq!(p.name(), "hello.txt");
        assert_eq!(p.to_string(), HELLO);
        assert_eq!(StorePath::parse(p.base_name()).unwrap(), p);
    }

    #[test]
    fn rejects_invalid_paths() {
        let cases = [
            ("/usr/bin/env", "NotInStore"),
            ("/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx", "Malformed"),
            ("/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-", "Malformed"),
            ("/nix/store/i9pmrzmpshapij2kin22pff6fc2adave-x", "BadHash"),
            ("/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-a/b", "BadName"),
            ("/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-.hidden", "BadName"),
            ("/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-<script>", "BadName"),
            ("/nix/store/i9pmrzmpshapij2kin22pff6fc2adav-toolong", "Malformed"),
        ];
        for (input, kind) in cases {
            let err = StorePath::parse(input).unwrap_err();
            assert!(format!("{err:?}").starts_with(kind), "{input}: {err:?}");
        }
        assert!(StorePath::parse(&format!("{HELLO}{}", "x".repeat(300))).is_err());
    }
}
