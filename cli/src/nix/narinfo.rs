//! The `.narinfo` text format: `Key: value` lines, rendered in the order Nix writes them.

use std::fmt::Write as _;

use super::signing::{PublicKey, fingerprint};
use super::{NarHash, StorePath};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NarInfo {
    pub store_path: StorePath,
    pub url: String,
    pub compression: String,
    pub file_hash: Option<NarHash>,
    pub file_size: Option<u64>,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    /// Base names; may include the path itself.
    pub references: Vec<StorePath>,
    /// Base name of the `.drv`, when known.
    pub deriver: Option<String>,
    pub signatures: Vec<String>,
    pub ca: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NarInfoError {
    #[error("narinfo line {line} is not `Key: value`: {text:?}")]
    Syntax { line: usize, text: String },
    #[error("narinfo is missing the required field {0}")]
    Missing(&'static str),
    #[error("narinfo field {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("narinfo field {0} appears more than once")]
    Duplicate(&'static str),
}

fn invalid(field: &'static str, reason: impl ToString) -> NarInfoError {
    NarInfoError::Invalid { field, reason: reason.to_string() }
}

fn set_once<T>(slot: &mut Option<T>, field: &'static str, value: T) -> Result<(), NarInfoError> {
    if slot.replace(value).is_some() {
        return Err(NarInfoError::Duplicate(field));
    }
    Ok(())
}

fn parse_size(field: &'static str, value: &str) -> Result<u64, NarInfoError> {
    value.parse().map_err(|_| invalid(field, format!("{value:?} is not a number")))
}

impl NarInfo {
    /// Parses narinfo text. Unknown keys (such as the obsolete `System`) are ignored, as Nix does.
    pub fn parse(text: &str) -> Result<Self, NarInfoError> {
        let (mut store_path, mut url, mut compression) = (None, None, None);
        let (mut file_hash, mut file_size, mut nar_hash, mut nar_size) = (None, None, None, None);
        let (mut references, mut deriver, mut ca) = (None, None, None);
        let mut signatures = Vec::new();
        for (index, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let (key, value) = line
                .split_once(": ")
                .or_else(|| line.strip_suffix(':').map(|k| (k, "")))
                .ok_or_else(|| NarInfoError::Syntax { line: index + 1, text: line.to_string() })?;
            match key {
                "StorePath" => {
                    let p = StorePath::from_full_path(value).map_err(|e| invalid("StorePath", e))?;
                    set_once(&mut store_path, "StorePath", p)?
                }
                "URL" => set_once(&mut url, "URL", value.to_string())?,
                "Compression" => set_once(&mut compression, "Compression", value.to_string())?,
                "FileHash" => {
                    let h = NarHash::parse(value).map_err(|e| invalid("FileHash", e))?;
                    set_once(&mut file_hash, "FileHash", h)?
                }
                "FileSize" => set_once(&mut file_size, "FileSize", parse_size("FileSize", value)?)?,
                "NarHash" => {
                    let h = NarHash::parse(value).map_err(|e| invalid("NarHash", e))?;
                    set_once(&mut nar_hash, "NarHash", h)?
                }
                "NarSize" => set_once(&mut nar_size, "NarSize", parse_size("NarSize", value)?)?,
                "References" => {
                    let refs = value
                        .split_whitespace()
                        .map(|r| StorePath::from_base_name(r).map_err(|e| invalid("References", e)))
                        .collect::<Result<Vec<_>, _>>()?;
                    set_once(&mut references, "References", refs)?
                }
                "Deriver" if value == "unknown-deriver" => {}
                "Deriver" => {
                    StorePath::from_base_name(value).map_err(|e| invalid("Deriver", e))?;
                    set_once(&mut deriver, "Deriver", value.to_string())?
                }
                "Sig" => signatures.push(value.to_string()),
                "CA" => set_once(&mut ca, "CA", value.to_string())?,
                _ => {}
            }
        }
        let nar_size = nar_size.ok_or(NarInfoError::Missing("NarSize"))?;
        if nar_size == 0 {
            return Err(invalid("NarSize", "must be greater than zero"));
        }
        Ok(Self {
            store_path: store_path.ok_or(NarInfoError::Missing("StorePath"))?,
            url: url.ok_or(NarInfoError::Missing("URL"))?,
            // An absent Compression means bzip2 to Nix.
            compression: compression.unwrap_or_else(|| "bzip2".to_string()),
            file_hash,
            file_size,
            nar_hash: nar_hash.ok_or(NarInfoError::Missing("NarHash"))?,
            nar_size,
            references: references.unwrap_or_default(),
            deriver,
            signatures,
            ca,
        })
    }

    /// Renders the narinfo exactly as Nix does (`References: ` keeps its space when empty).
    /// A value with a line break would add lines of its own (`URL:`, `Sig:`): refused.
    pub fn render(&self) -> Result<String, NarInfoError> {
        let free_text = [("URL", Some(&self.url)), ("Compression", Some(&self.compression))]
            .into_iter()
            .chain([("Deriver", self.deriver.as_ref()), ("CA", self.ca.as_ref())])
            .chain(self.signatures.iter().map(|s| ("Sig", Some(s))));
        for (field, value) in free_text {
            if value.is_some_and(|v| v.contains(['\n', '\r'])) {
                return Err(invalid(field, "contains a line break"));
            }
        }
        let mut out = String::with_capacity(512);
        let _ = writeln!(out, "StorePath: {}", self.store_path);
        let _ = writeln!(out, "URL: {}", self.url);
        let _ = writeln!(out, "Compression: {}", self.compression);
        if let Some(h) = &self.file_hash {
            let _ = writeln!(out, "FileHash: {h}");
        }
        if let Some(s) = self.file_size {
            let _ = writeln!(out, "FileSize: {s}");
        }
        let _ = writeln!(out, "NarHash: {}", self.nar_hash);
        let _ = writeln!(out, "NarSize: {}", self.nar_size);
        let refs: Vec<&str> = self.references.iter().map(StorePath::base_name).collect();
        let _ = writeln!(out, "References: {}", refs.join(" "));
        if let Some(d) = &self.deriver {
            let _ = writeln!(out, "Deriver: {d}");
        }
        for sig in &self.signatures {
            let _ = writeln!(out, "Sig: {sig}");
        }
        if let Some(ca) = &self.ca {
            let _ = writeln!(out, "CA: {ca}");
        }
        Ok(out)
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(&self.store_path, &self.nar_hash, self.nar_size, &self.references)
    }

    /// Is at least one signature valid for one of `keys`?
    pub fn is_signed_by_any(&self, keys: &[PublicKey]) -> bool {
        let fp = self.fingerprint();
        self.signatures.iter().any(|sig| keys.iter().any(|k| k.verifies(&fp, sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by Nix 2.8 `nix copy --to file://` after `nix store sign` with two keys.
    const APP: &str = include_str!("../../tests/fixtures/b3f3rwivll1609w9bk8r6r18s0fqlwgd.narinfo");
    const DEP: &str = include_str!("../../tests/fixtures/56wl2m2q4pck0n6hclmqrsm3la18x1l9.narinfo");
    const HELLO_CA: &str = include_str!("../../tests/fixtures/i9pmrzmpshapij2kin22pff6fc2adavx.narinfo");
    const TEST1_PK: &str = "test-1:phJwZM/VVQNzHIDiUHofWscqYcc+LN4vfLLloS1fsJI=";

    #[test]
    fn round_trips_nix_output_byte_for_byte() {
        for text in [APP, DEP, HELLO_CA] {
            assert_eq!(NarInfo::parse(text).unwrap().render().unwrap(), text);
        }
    }

    #[test]
    fn reads_every_field() {
        let app = NarInfo::parse(APP).unwrap();
        assert_eq!(app.store_path.name(), "app-1.0");
        assert_eq!(app.compression, "xz");
        assert_eq!(app.nar_size, 3264);
        assert_eq!(app.file_size, Some(328));
        assert_eq!(app.references[0].base_name(), "56wl2m2q4pck0n6hclmqrsm3la18x1l9-dep");
        assert_eq!(app.deriver.as_deref(), Some("r8688abvlbqwnhng7paa99zivz9nw7sn-app-1.0.drv"));
        assert_eq!(app.signatures.len(), 2);
        let dep = NarInfo::parse(DEP).unwrap();
        assert!(dep.references.is_empty());
        assert!(DEP.contains("References: \n"));
        let hello = NarInfo::parse(HELLO_CA).unwrap();
        assert_eq!(hello.ca.as_deref(), Some("fixed:r:sha256:04zwf782yjwnh3q6hz5izfd6jyip8kgw6g6yj43fiqhbyhdd0dqw"));
        assert_eq!(hello.deriver, None);
    }

    #[test]
    fn signatures_made_by_nix_verify() {
        let pk = PublicKey::parse(TEST1_PK).unwrap();
        for text in [APP, DEP, HELLO_CA] {
            assert!(NarInfo::parse(text).unwrap().is_signed_by_any(std::slice::from_ref(&pk)));
        }
        let mut tampered = NarInfo::parse(APP).unwrap();
        tampered.references.clear();
        assert!(!tampered.is_signed_by_any(&[pk]));
    }

    #[test]
    fn missing_compression_means_bzip2_and_unknown_keys_are_ignored() {
        let text = DEP.replace("Compression: xz\n", "System: x86_64-linux\n");
        assert_eq!(NarInfo::parse(&text).unwrap().compression, "bzip2");
    }

    #[test]
    fn rejects_broken_narinfos() {
        let cases = [
            (DEP.replace("NarSize: 128\n", ""), "Missing(\"NarSize\")"),
            (DEP.replace("NarSize: 128", "NarSize: 0"), "Invalid"),
            (DEP.replace("StorePath: /nix/store/", "StorePath: /tmp/"), "Invalid"),
            (DEP.replace("NarHash: sha256:", "NarHash: md5:"), "Invalid"),
            (DEP.replace("References: ", "References: ../etc"), "Invalid"),
            (format!("{DEP}NarSize: 1\n"), "Duplicate"),
            (format!("{DEP}garbage\n"), "Syntax"),
            (DEP.replace("URL: ", "Url: "), "Missing(\"URL\")"),
        ];
        for (text, kind) in cases {
            let err = NarInfo::parse(&text).unwrap_err();
            assert!(format!("{err:?}").starts_with(kind.split('(').next().unwrap()), "{kind}: {err:?}");
            assert!(format!("{err:?}").contains(kind) || !kind.contains('('), "{kind}: {err:?}");
        }
    }
}
