//! SHA-256 hashes as Nix writes them (`sha256:<nix32>`), parsed from every form Nix prints.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::base32;

/// A SHA-256 digest, printed as Nix prints `NarHash` and `FileHash` (`sha256:<nix32>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NarHash(pub [u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sha256 hash {0:?}: expected sha256:<nix32>, sha256:<hex> or sha256-<base64>")]
pub struct HashParseError(pub String);

impl NarHash {
    pub fn digest(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }

    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }

    /// The bare nix32 digits, without the `sha256:` prefix.
    pub fn to_nix32(&self) -> String {
        base32::encode(&self.0)
    }

    /// Parses the bare nix32 digits (52 characters).
    pub fn from_nix32(s: &str) -> Result<Self, HashParseError> {
        let bytes = base32::decode(s, 32).map_err(|_| HashParseError(s.to_string()))?;
        Ok(Self(bytes.try_into().expect("decode returns 32 bytes")))
    }

    /// Accepts `sha256:<nix32>`, `sha256:<hex>` and the SRI form `sha256-<base64>`.
    pub fn parse(s: &str) -> Result<Self, HashParseError> {
        let err = || HashParseError(s.to_string());
        if let Some(rest) = s.strip_prefix("sha256:") {
            return match rest.len() {
                52 => Self::from_nix32(rest).map_err(|_| err()),
                64 => {
                    let bytes = hex_decode(rest).ok_or_else(err)?;
                    Ok(Self(bytes.try_into().map_err(|_| err())?))
                }
                _ => Err(err()),
            };
        }
        if let Some(rest) = s.strip_prefix("sha256-") {
            let bytes = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| err())?;
            return Ok(Self(bytes.try_into().map_err(|_| err())?));
        }
        Err(err())
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl fmt::Display for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_nix32())
    }
}

impl fmt::Debug for NarHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for NarHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for NarHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // `nix-hash --type sha256 --flat` of a file containing "hello\n" in each form Nix prints.
    const NIX32: &str = "sha256:00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq";
    const HEX: &str = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    const SRI: &str = "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=";

    #[test]
    fn parses_every_form_to_the_same_digest() {
        let expected = NarHash::digest(b"hello\n");
        for form in [NIX32, HEX, SRI] {
            assert_eq!(NarHash::parse(form).unwrap(), expected, "{form}");
        }
        assert_eq!(expected.to_string(), NIX32);
    }

    #[test]
    fn rejects_other_algorithms_and_garbage() {
        for bad in ["md5:4425hx5d1mc9y39llj4k4nm55i", "sha256:", "sha256:xyz", "00xyyr3f", "sha256-!!"] {
            assert!(NarHash::parse(bad).is_err(), "{bad}");
        }
    }
}
