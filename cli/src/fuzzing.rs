//! The properties each fuzz target checks (`fuzz/fuzz_targets/*.rs`), one function per
//! parser. Each takes arbitrary bytes and panics only when a property fails: a parser may
//! refuse anything, but must never panic, and whatever it accepts must survive a round trip.
//! The unit test below runs every committed corpus input through them on stable Rust, the
//! smoke pass CI runs; `fuzz/README.md` says how to fuzz for real.

use crate::http::{ByteRange, byte_range, credentials_token};
use crate::nix::{NarHash, NarInfo, PublicKey, SecretKey, StorePath, base32, content_address, nar};

/// A fuzz target's check: panics when a property fails.
pub type Check = fn(&[u8]);

/// The targets by name, as `cargo fuzz run <name>` knows them.
pub const TARGETS: &[(&str, Check)] = &[
    ("nar", nar),
    ("narinfo", narinfo),
    ("store_path", store_path),
    ("hash", hash),
    ("base32", nix_base32),
    ("signature", signature),
    ("content_address", content_address),
    ("authorization", authorization),
    ("range", range),
];

/// The NAR reader: anything accepted has a listing, and counts that fit its size.
pub fn nar(data: &[u8]) {
    if let Ok(summary) = nar::validate(data) {
        // Each node costs at least 6 tokens of 8 bytes or more.
        let nodes = summary.files + summary.directories + summary.symlinks;
        assert!(nodes >= 1 && nodes * 48 <= data.len() as u64, "{nodes} nodes in {} bytes", data.len());
        let listing = summary.listing.expect("a small NAR always gets its listing");
        assert_eq!(listing["version"], 1);
    }
}

/// narinfo text: whatever parses renders, and parses back to the same value.
pub fn narinfo(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(info) = NarInfo::parse(text) else { return };
    // A value with a carriage return inside parses (lines end at '\n') but is not rendered.
    let Ok(rendered) = info.render() else { return };
    assert_eq!(NarInfo::parse(&rendered).as_ref(), Ok(&info), "{rendered}");
    assert_eq!(info.render().as_deref(), Ok(rendered.as_str()));
}

/// Store paths: what parses prints as itself, in both forms.
pub fn store_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(path) = StorePath::parse(text) else { return };
    assert!(text == path.base_name() || text == path.full_path());
    assert_eq!(StorePath::from_full_path(&path.full_path()).as_ref(), Ok(&path));
    assert_eq!(StorePath::from_base_name(path.base_name()).as_ref(), Ok(&path));
    assert_eq!(format!("{}-{}", path.hash_part(), path.name()), path.base_name());
}

/// Hashes in every accepted spelling: what parses has one canonical spelling that parses back.
pub fn hash(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(parsed) = NarHash::parse(text) else { return };
    assert_eq!(NarHash::parse(&parsed.to_string()).ok(), Some(parsed));
    assert_eq!(NarHash::from_nix32(&parsed.to_nix32()).ok(), Some(parsed));
}

/// Nix base32: a decoded string encodes back to itself (no two spellings of one value).
pub fn nix_base32(data: &[u8]) {
    let Some((&size, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    if let Ok(bytes) = base32::decode(text, size as usize) {
        assert_eq!(bytes.len(), size as usize);
        assert_eq!(base32::encode(&bytes), text);
    }
}

/// Keys and signatures: the key text is split from a signature and a fingerprint at the first
/// two line breaks. Parsed keys print as they were given; checking never panics.
pub fn signature(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.splitn(3, '\n');
    let (key, signature, fingerprint) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next());
    if let Ok(public) = PublicKey::parse(key) {
        assert_eq!(PublicKey::parse(&public.to_text()).ok(), Some(public.clone()));
        let _ = public.verifies(fingerprint.unwrap_or(""), signature);
    }
    if let Ok(secret) = SecretKey::parse(key) {
        assert_eq!(SecretKey::parse(&secret.to_text()).map(|k| k.to_text()).ok(), Some(secret.to_text()));
        let message = fingerprint.unwrap_or(signature);
        assert!(secret.public_key().verifies(message, &secret.sign(message)));
    }
}

/// Content addresses (`CA:`): the check never panics and refuses line breaks.
pub fn content_address(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if content_address::validate(text).is_ok() {
        assert!(!text.contains(['\n', '\r', ' ']), "{text:?}");
    }
}

/// `Authorization`: a token, when found, is non-blank-edged text from the header.
pub fn authorization(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(token) = credentials_token(text)
        && text.trim_start().get(..7).is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
    {
        assert_eq!(token, token.trim());
        assert!(text.contains(&token));
    }
}

/// `Range`: the first 8 bytes are the body's length, the rest the header. A partial answer
/// is never empty and never reaches past the end.
pub fn range(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
    let Ok(header) = std::str::from_utf8(&data[8..]) else { return };
    if let ByteRange::Partial(start, end) = byte_range(Some(header), len) {
        assert!(start < end && end <= len, "{header:?} of {len}: {start}..{end}");
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::TARGETS;

    /// The committed corpora, `fuzz/corpus/<target>/`: every input the fuzzer kept, and every
    /// input that once crashed a target (`fuzz/regressions/<target>/`).
    fn inputs(target: &str) -> Vec<PathBuf> {
        let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) {
                files.extend(entries.map(|e| e.expect("corpus entry").path()));
            }
        }
        files.sort();
        files
    }

    #[test]
    fn every_corpus_input_keeps_every_property() {
        for (target, check) in TARGETS {
            let inputs = inputs(target);
            assert!(inputs.len() >= 10, "fuzz/corpus/{target} has {} inputs: run fuzz/seed first", inputs.len());
            for input in inputs {
                let data = std::fs::read(&input).expect("read corpus input");
                if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
                    std::panic::resume_unwind(Box::new(format!("{target}: {} failed: {panic:?}", input.display())));
                }
            }
        }
    }
}
