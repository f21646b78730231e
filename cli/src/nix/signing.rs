//! Narinfo signatures: Ed25519 over the path fingerprint, with Nix's `name:base64` key format.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_compact as ed;

use super::{NarHash, StorePath};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key must look like <name>:<base64>, got {0:?}")]
    Format(String),
    #[error("key {name:?} has {got} bytes after base64 decoding, expected {expected}")]
    Length { name: String, got: usize, expected: usize },
    #[error("key {0:?} is not a valid Ed25519 key")]
    Invalid(String),
}

/// The text Nix signs for a path:
/// `1;<store path>;sha256:<nix32 NarHash>;<NarSize>;<sorted full reference paths, comma-joined>`.
pub fn fingerprint(path: &StorePath, nar_hash: &NarHash, nar_size: u64, references: &[StorePath]) -> String {
    let mut refs: Vec<String> = references.iter().map(StorePath::full_path).collect();
    refs.sort();
    format!("1;{path};{nar_hash};{nar_size};{}", refs.join(","))
}

fn split_named(text: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let text = text.trim();
    let (name, data) = text.split_once(':').ok_or_else(|| KeyError::Format(text.to_string()))?;
    if name.is_empty() {
        return Err(KeyError::Format(text.to_string()));
    }
    let bytes = B64.decode(data).map_err(|_| KeyError::Format(text.to_string()))?;
    Ok((name, bytes))
}

fn check_len(name: &str, bytes: &[u8], expected: usize) -> Result<(), KeyError> {
    if bytes.len() != expected {
        return Err(KeyError::Length { name: name.to_string(), got: bytes.len(), expected });
    }
    Ok(())
}

/// A Nix signing secret key (`nix key generate-secret`): 64 bytes, seed then public key.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: ed::SecretKey,
}

impl SecretKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split_named(text)?;
        check_len(name, &bytes, 64)?;
        let key = ed::SecretKey::from_slice(&bytes).map_err(|_| KeyError::Invalid(name.to_string()))?;
        key.validate_public_key(&key.public_key()).map_err(|_| KeyError::Invalid(name.to_string()))?;
        Ok(Self { name: name.to_string(), key })
    }

    /// Generates a new key, as `nix key generate-secret --key-name <name>` does.
    pub fn generate(name: &str) -> Self {
        let pair = ed::KeyPair::from_seed(ed::Seed::generate());
        Self { name: name.to_string(), key: pair.sk }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.as_ref()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey { name: self.name.clone(), key: self.key.public_key() }
    }

    /// Signs a fingerprint; returns the `Sig:` value `<name>:<base64>`.
    pub fn sign(&self, fingerprint: &str) -> String {
        let sig = self.key.sign(fingerprint.as_bytes(), None);
        format!("{}:{}", self.name, B64.encode(sig.as_ref()))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.name)
    }
}

/// A Nix public key (`nix key convert-secret-to-public`): 32 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    name: String,
    key: ed::PublicKey,
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (name, bytes) = split_named(text)?;
        check_len(name, &bytes, 32)?;
        let key = ed::PublicKey::from_slice(&bytes).map_err(|_| KeyError::Invalid(name.to_string()))?;
        Ok(Self { name: name.to_string(), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn to_text(&self) -> String {
        format!("{}:{}", self.name, B64.encode(self.key.as_ref()))
    }

    /// Does `signature` (`<name>:<base64>`) carry this key's name and verify over `fingerprint`?
    pub fn verifies(&self, fingerprint: &str, signature: &str) -> bool {
        let Some((name, data)) = signature.split_once(':') else {
            return false;
        };
        if name != self.name {
            return false;
        }
        let Ok(bytes) = B64.decode(data) else {
            return false;
        };
        let Ok(sig) = ed::Signature::from_slice(&bytes) else {
            return false;
        };
        self.key.verify(fingerprint.as_bytes(), &sig).is_ok()
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with Nix 2.8: `nix key generate-secret --key-name test-1`, `convert-secret-to-public`,
    // `nix store sign -k sk` on the path `nix-store --add hello.txt` ("hello\n") printed.
    const SK: &str = "test-1:RZTDCInk9npTWcudixpahz/eY10x5NAx766llZr6obKmEnBkz9VVA3McgOJQeh9axyphxz4s3i98suWhLV+wkg==";
    const PK: &str = "test-1:phJwZM/VVQNzHIDiUHofWscqYcc+LN4vfLLloS1fsJI=";
    const PATH: &str = "/nix/store/i9pmrzmpshapij2kin22pff6fc2adavx-hello.txt";
    const NAR_HASH: &str = "sha256-HDfQGvQL4ugGkd48w99EN3ppmvuxfGjwgJZLL9Bx/BM=";
    const SIG: &str = "test-1:h6uU4Jd+XCbcy6/fZZG9FaKtJax6HE9f4cRTUAe/qVRGF1RpT7oPusqhdj3M8fLOJal43+o6xqlbQWo8oe56AQ==";

    fn hello_fingerprint() -> String {
        fingerprint(&StorePath::parse(PATH).unwrap(), &NarHash::parse(NAR_HASH).unwrap(), 120, &[])
    }

    #[test]
    fn fingerprint_uses_nix32_hash_and_sorted_full_references() {
        let fp = hello_fingerprint();
        assert!(fp.starts_with(&format!("1;{PATH};sha256:")), "{fp}");
        assert!(fp.ends_with(";120;"), "{fp}");
        let a = StorePath::parse("/nix/store/00000000000000000000000000000000-a").unwrap();
        let b = StorePath::parse("/nix/store/11111111111111111111111111111111-b").unwrap();
        let with_refs = fingerprint(&a, &NarHash::digest(b""), 1, &[b.clone(), a.clone()]);
        assert!(with_refs.ends_with(&format!(";1;{a},{b}")), "{with_refs}");
    }

    #[test]
    fn signs_byte_identically_to_nix() {
        let sk = SecretKey::parse(SK).unwrap();
        assert_eq!(sk.sign(&hello_fingerprint()), SIG);
        assert_eq!(sk.public_key().to_text(), PK);
        assert_eq!(sk.to_text(), SK);
    }

    #[test]
    fn verifies_nix_signatures_and_rejects_others() {
        let pk = PublicKey::parse(PK).unwrap();
        let fp = hello_fingerprint();
        assert!(pk.verifies(&fp, SIG));
        assert!(!pk.verifies(&fp.replace(";120;", ";121;"), SIG), "other fingerprint");
        assert!(!pk.verifies(&fp, &SIG.replace("test-1", "test-2")), "other key name");
        let other = SecretKey::generate("test-1");
        assert!(!other.public_key().verifies(&fp, SIG), "other key");
        assert!(other.public_key().verifies(&fp, &other.sign(&fp)));
    }

    #[test]
    fn rejects_malformed_keys() {
        assert!(matches!(PublicKey::parse("nocolon"), Err(KeyError::Format(_))));
        assert!(matches!(PublicKey::parse(":AAAA"), Err(KeyError::Format(_))));
        assert!(matches!(PublicKey::parse("k:not base64!"), Err(KeyError::Format(_))));
        assert!(matches!(PublicKey::parse(SK), Err(KeyError::Length { expected: 32, .. })));
        assert!(matches!(SecretKey::parse(PK), Err(KeyError::Length { expected: 64, .. })));
    }
}
