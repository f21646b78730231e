//! Rendering a stored path as a narinfo and naming its NAR file.

use hibernation::nix::{Compression, NarHash, NarInfo, StorePath};

use crate::db::paths::PathEntry;

/// File extension of the stored compression, as Nix names NAR files.
pub fn nar_extension(compression: &str) -> &'static str {
    Compression::from_name(compression).map_or("", Compression::extension)
}

/// The narinfo `URL:` of a NAR: keyed by NarHash, relative to the cache root.
pub fn nar_url(nar_hash_nix32: &str, compression: &str) -> String {
    format!("nar/{nar_hash_nix32}.nar{}", nar_extension(compression))
}

/// Splits `<nix32 hash>.nar<ext>` into the file hash and the compression the name implies.
pub fn parse_nar_file_name(file: &str) -> Option<(NarHash, Compression)> {
    let (hash, ext) = file.split_once(".nar")?;
    Some((NarHash::from_nix32(hash).ok()?, Compression::from_extension(ext)?))
}

pub fn render(entry: &PathEntry) -> Result<String, String> {
    let corrupt = |what: &str| format!("stored path {} has an invalid {what}", entry.path.hash_part);
    let store_path = StorePath::from_base_name(&format!("{}-{}", entry.path.hash_part, entry.path.name))
        .map_err(|_| corrupt("name"))?;
    let references = entry
        .references
        .iter()
        .map(|r| StorePath::from_base_name(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| corrupt("reference"))?;
    let info = NarInfo {
        store_path,
        url: nar_url(&entry.nar.nar_hash, &entry.nar.compression),
        compression: entry.nar.compression.clone(),
        file_hash: Some(NarHash::from_nix32(&entry.nar.file_hash).map_err(|_| corrupt("FileHash"))?),
        file_size: Some(entry.nar.file_size as u64),
        nar_hash: NarHash::from_nix32(&entry.nar.nar_hash).map_err(|_| corrupt("NarHash"))?,
        nar_size: entry.nar.nar_size as u64,
        references,
        deriver: entry.path.deriver.clone(),
        signatures: entry.path.signatures.lines().map(str::to_string).collect(),
        ca: entry.path.ca.clone(),
    };
    info.render().map_err(|e| format!("stored path {} cannot be rendered: {e}", entry.path.hash_part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nar_file_names_round_trip() {
        let hash = NarHash::digest(b"x").to_nix32();
        let url = nar_url(&hash, "zstd");
        assert_eq!(url, format!("nar/{hash}.nar.zst"));
        let (parsed, compression) = parse_nar_file_name(&url[4..]).unwrap();
        assert_eq!((parsed.to_nix32(), compression), (hash, Compression::Zstd));
    }
}
