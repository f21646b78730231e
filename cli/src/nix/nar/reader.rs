use std::io::{self, Read};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{MAGIC, MAX_DEPTH, padding};
use crate::nix::NarHash;

/// Longest file name or symlink target accepted (Linux's PATH_MAX).
const MAX_NAME_LEN: u64 = 4096;
/// What a listing may cost: entries are counted with their names and symlink targets, and a
/// NAR past this (a million tiny files, say) gets no listing instead of one that takes
/// gigabytes to build and megabytes to serve per request.
pub const MAX_LISTING_COST: u64 = 16 << 20;
/// The cost of one entry besides its name or target (its JSON and in-memory overhead).
const LISTING_ENTRY_COST: u64 = 128;

#[derive(Debug, thiserror::Error)]
pub enum NarError {
    #[error("I/O error while reading the NAR: {0}")]
    Io(#[from] io::Error),
    #[error("the NAR ended early")]
    Truncated,
    #[error("not a NAR: the magic header is missing")]
    BadMagic,
    #[error("malformed NAR: expected {expected:?}, found {found:?}")]
    UnexpectedToken { expected: String, found: String },
    #[error("malformed NAR: invalid entry name {0:?}")]
    BadName(String),
    #[error("malformed NAR: entries are not strictly sorted ({previous:?} before {name:?})")]
    Unsorted { previous: String, name: String },
    #[error("malformed NAR: invalid symlink target {0:?}")]
    BadTarget(String),
    #[error("malformed NAR: a string of {0} bytes is longer than allowed")]
    TooLong(u64),
    #[error("malformed NAR: non-zero padding")]
    BadPadding,
    #[error("malformed NAR: nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("malformed NAR: data after the end of the archive")]
    TrailingData,
}

/// What a validated NAR contains.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NarSummary {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    /// The NAR listing Nix writes as `<hash>.ls`: `{"version":1,"root":<node>}`, with the
    /// offset of every file's contents in the NAR (`narOffset`); `None` when the NAR has
    /// more entries than [`MAX_LISTING_COST`] allows.
    pub listing: Option<Value>,
}

/// Wraps a reader and computes SHA-256 and the byte count of everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(self) -> (NarHash, u64, R) {
        (NarHash::from_hasher(self.hasher), self.count, self.inner)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Reads a whole NAR from `reader`, checking it the way Nix does when unpacking: known
/// tokens only, names not empty, `.`, `..` and free of `/` and NUL, entries strictly sorted,
/// symlink targets non-empty and NUL-free, zero padding, depth limit, nothing after the end.
/// File contents are streamed, never held in memory.
pub fn validate<R: Read>(reader: R) -> Result<NarSummary, NarError> {
    let mut nar = Parser { reader, offset: 0, summary: NarSummary::default(), listing_cost: 0 };
    let magic = nar.read_string(MAGIC.len() as u64).map_err(|e| match e {
        NarError::Io(e) => NarError::Io(e),
        _ => NarError::BadMagic,
    })?;
    if magic != MAGIC {
        return Err(NarError::BadMagic);
    }
    let root = nar.node(0)?;
    if nar.listing_cost <= MAX_LISTING_COST {
        nar.summary.listing = Some(json!({"version": 1, "root": root}));
    }
    let mut probe = [0u8; 1];
    if nar.reader.read(&mut probe)? != 0 {
        return Err(NarError::TrailingData);
    }
    Ok(nar.summary)
}

struct Parser<R> {
    reader: R,
    /// Bytes consumed so far, for `narOffset` in the listing.
    offset: u64,
    summary: NarSummary,
    /// What the listing has cost so far; past [`MAX_LISTING_COST`] it is no longer built.
    listing_cost: u64,
}

impl<R: Read> Parser<R> {
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), NarError> {
        self.reader.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => NarError::Truncated,
            _ => NarError::Io(e),
        })?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn read_u64(&mut self) -> Result<u64, NarError> {
        let mut buf = [0u8; 8];
        self.read_exact(&mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }

    fn read_padding(&mut self, len: u64) -> Result<(), NarError> {
        let mut pad = [0u8; 8];
        let n = padding(len);
        self.read_exact(&mut pad[..n])?;
        if pad[..n].iter().any(|b| *b != 0) {
            return Err(NarError::BadPadding);
        }
        Ok(())
    }

    fn read_string(&mut self, max: u64) -> Result<Vec<u8>, NarError> {
        let len = self.read_u64()?;
        if len > max {
            return Err(NarError::TooLong(len));
        }
        let mut buf = vec![0u8; len as usize];
        self.read_exact(&mut buf)?;
        self.read_padding(len)?;
        Ok(buf)
    }

    /// Reads a protocol keyword (all are short).
    fn token(&mut self) -> Result<String, NarError> {
        let bytes = self.read_string(16)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn expect(&mut self, expected: &str) -> Result<(), NarError> {
        let found = self.token()?;
        if found != expected {
            return Err(NarError::UnexpectedToken { expected: expected.to_string(), found });
        }
        Ok(())
    }

    /// Counts `bytes` against the listing budget; false once it is spent.
    fn listing_affordable(&mut self, bytes: u64) -> bool {
        self.listing_cost = self.listing_cost.saturating_add(bytes);
        self.listing_cost <= MAX_LISTING_COST
    }

    fn node(&mut self, depth: usize) -> Result<Value, NarError> {
        if depth >= MAX_DEPTH {
            return Err(NarError::TooDeep);
        }
        self.listing_affordable(LISTING_ENTRY_COST);
        self.expect("(")?;
        self.expect("type")?;
        let node = match self.token()?.as_str() {
            "regular" => self.regular()?,
            "symlink" => self.symlink()?,
            "directory" => return self.directory(depth),
            other => {
                return Err(NarError::UnexpectedToken {
                    expected: "regular, symlink or directory".into(),
                    found: other.into(),
                });
            }
        };
        self.expect(")")?;
        Ok(node)
    }

    fn regular(&mut self) -> Result<Value, NarError> {
        let mut tag = self.token()?;
        let executable = tag == "executable";
        if executable {
            if !self.read_string(0)?.is_empty() {
                return Err(NarError::UnexpectedToken {
                    expected: "empty executable marker".into(),
                    found: "data".into(),
                });
            }
            tag = self.token()?;
        }
        if tag != "contents" {
            return Err(NarError::UnexpectedToken { expected: "contents".into(), found: tag });
        }
        let len = self.read_u64()?;
        let nar_offset = self.offset;
        let copied = io::copy(&mut (&mut self.reader).take(len), &mut io::sink())?;
        if copied != len {
            return Err(NarError::Truncated);
        }
        self.offset += len;
        self.read_padding(len)?;
        self.summary.files += 1;
        let mut node = json!({"type": "regular", "size": len, "narOffset": nar_offset});
        if executable {
            node["executable"] = Value::Bool(true);
        }
        Ok(node)
    }

    fn symlink(&mut self) -> Result<Value, NarError> {
        self.expect("target")?;
        let target = self.read_string(MAX_NAME_LEN)?;
        if target.is_empty() || target.contains(&0) {
            return Err(NarError::BadTarget(String::from_utf8_lossy(&target).into_owned()));
        }
        self.summary.symlinks += 1;
        if !self.listing_affordable(target.len() as u64) {
            return Ok(Value::Null);
        }
        Ok(json!({"type": "symlink", "target": String::from_utf8_lossy(&target)}))
    }

    fn directory(&mut self, depth: usize) -> Result<Value, NarError> {
        self.summary.directories += 1;
        let mut previous: Option<Vec<u8>> = None;
        let mut entries = Map::new();
        loop {
            match self.token()?.as_str() {
                ")" => return Ok(json!({"type": "directory", "entries": entries})),
                "entry" => {}
                other => {
                    return Err(NarError::UnexpectedToken { expected: "entry or )".into(), found: other.into() });
                }
            }
            self.expect("(")?;
            self.expect("name")?;
            let name = self.read_string(MAX_NAME_LEN)?;
            let shown = || String::from_utf8_lossy(&name).into_owned();
            if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                return Err(NarError::BadName(shown()));
            }
            if let Some(prev) = &previous
                && prev.as_slice() >= name.as_slice()
            {
                return Err(NarError::Unsorted { previous: String::from_utf8_lossy(prev).into_owned(), name: shown() });
            }
            self.expect("node")?;
            let node = self.node(depth + 1)?;
            self.expect(")")?;
            // Past the budget the listing is dropped: keep validating, stop growing it.
            if self.listing_affordable(name.len() as u64) {
                entries.insert(shown(), node);
            }
            previous = Some(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &[u8] = include_bytes!("../../../tests/fixtures/tree.nar");

    fn token(bytes: &[u8]) -> Vec<u8> {
        let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        out.resize(out.len() + padding(bytes.len() as u64), 0);
        out
    }

    fn nar(tokens: &[&[u8]]) -> Vec<u8> {
        tokens.iter().flat_map(|t| token(t)).collect()
    }

    fn dir_with(names: &[&[u8]]) -> Vec<u8> {
        let mut tokens: Vec<&[u8]> = vec![MAGIC, b"(", b"type", b"directory"];
        for name in names {
            tokens.extend_from_slice(&[
                b"entry",
                b"(",
                b"name",
                name,
                b"node",
                b"(",
                b"type",
                b"regular",
                b"contents",
                b"",
                b")",
                b")",
            ]);
        }
        tokens.push(b")");
        nar(&tokens)
    }

    #[test]
    fn a_nar_with_too_many_entries_is_valid_but_gets_no_listing() {
        let names: Vec<Vec<u8>> =
            (0..MAX_LISTING_COST / LISTING_ENTRY_COST + 1).map(|i| format!("{i:08}").into_bytes()).collect();
        let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let summary = validate(dir_with(&refs).as_slice()).unwrap();
        assert_eq!(summary.files, names.len() as u64);
        assert_eq!(summary.listing, None);
        let few = validate(dir_with(&refs[..10]).as_slice()).unwrap();
        assert_eq!(few.listing.unwrap()["root"]["entries"].as_object().unwrap().len(), 10);
    }

    #[test]
    fn accepts_nix_output_and_hashes_it_like_nix() {
        let mut reader = HashingReader::new(TREE);
        let summary = validate(&mut reader).unwrap();
        assert_eq!((summary.files, summary.directories, summary.symlinks), (5, 6, 2));
        let (hash, size, _) = reader.finish();
        // `nix-hash --type sha256 --base32` of the fixture tree.
        assert_eq!(hash.to_nix32(), "1j3lr13h29328h1bafp1zz81ffp80rnh60pbkjxcc6pyzrp9fd50");
        assert_eq!(size, TREE.len() as u64);
    }

    #[test]
    fn lists_entries_with_nar_offsets_like_nix() {
        // Checked against `nix copy --to file://...?write-nar-listing=true` for the same tree.
        let listing = validate(TREE).unwrap().listing.unwrap();
        assert_eq!(listing["version"], 1);
        let entries = &listing["root"]["entries"];
        assert_eq!(entries["link"], json!({"type": "symlink", "target": "bin/app"}));
        assert_eq!(entries["bin"]["entries"]["app"]["executable"], true);
        assert_eq!(entries["empty"], json!({"type": "directory", "entries": {}}));
        let file = &entries["file.txt"];
        assert_eq!(file["size"], 6);
        assert!(file.get("executable").is_none());
        let offset = file["narOffset"].as_u64().unwrap() as usize;
        assert_eq!(&TREE[offset..offset + 6], b"hello\n");
    }

    #[test]
    fn rejects_truncation_at_every_length() {
        for len in [0, 7, 16, 100, TREE.len() / 2, TREE.len() - 1] {
            let err = validate(&TREE[..len]).unwrap_err();
            assert!(matches!(err, NarError::Truncated | NarError::BadMagic), "{len}: {err:?}");
        }
    }

    #[test]
    fn rejects_trailing_data_and_bad_magic() {
        let mut long = TREE.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert!(matches!(validate(long.as_slice()), Err(NarError::TrailingData)));
        assert!(matches!(validate(&nar(&[b"nix-archive-2"])[..]), Err(NarError::BadMagic)));
    }

    #[test]
    fn rejects_bad_names_and_order() {
        assert!(validate(dir_with(&[b"a", b"b"]).as_slice()).is_ok());
        for bad in [&b"."[..], b"..", b"a/b", b"", b"nul\0"] {
            assert!(matches!(validate(dir_with(&[bad]).as_slice()), Err(NarError::BadName(_))), "{bad:?}");
        }
        assert!(matches!(validate(dir_with(&[b"b", b"a"]).as_slice()), Err(NarError::Unsorted { .. })));
        assert!(matches!(validate(dir_with(&[b"a", b"a"]).as_slice()), Err(NarError::Unsorted { .. })));
    }

    #[test]
    fn rejects_bad_tokens_padding_targets_and_depth() {
        let unknown = nar(&[MAGIC, b"(", b"type", b"fifo", b")"]);
        assert!(matches!(validate(unknown.as_slice()), Err(NarError::UnexpectedToken { .. })));
        let empty_target = nar(&[MAGIC, b"(", b"type", b"symlink", b"target", b"", b")"]);
        assert!(matches!(validate(empty_target.as_slice()), Err(NarError::BadTarget(_))));
        let mut bad_pad = nar(&[MAGIC, b"(", b"type", b"regular", b"contents", b"x", b")"]);
        let pad_at = 8 + 16 + 3 * 16 + 16 + 8 + 1;
        bad_pad[pad_at] = 1;
        assert!(matches!(validate(bad_pad.as_slice()), Err(NarError::BadPadding)));
        let mut deep: Vec<&[u8]> = vec![MAGIC];
        for _ in 0..MAX_DEPTH {
            deep.extend_from_slice(&[b"(", b"type", b"directory", b"entry", b"(", b"name", b"d", b"node"]);
        }
        assert!(matches!(validate(nar(&deep).as_slice()), Err(NarError::TooDeep)));
        let huge_name = [&7u64.to_le_bytes()[..], &u64::MAX.to_le_bytes()].concat();
        assert!(validate(huge_name.as_slice()).is_err());
    }
}
