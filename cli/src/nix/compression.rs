//! The compressions of NAR files in binary caches, with Nix's names and file extensions.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Bzip2,
    Brotli,
    Gzip,
}

impl Compression {
    pub const ALL: [Compression; 6] = [Self::None, Self::Xz, Self::Zstd, Self::Bzip2, Self::Brotli, Self::Gzip];

    /// The value of the narinfo `Compression:` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Xz => "xz",
            Self::Zstd => "zstd",
            Self::Bzip2 => "bzip2",
            Self::Brotli => "br",
            Self::Gzip => "gzip",
        }
    }

    /// What follows `.nar` in file names (Nix 2.8 writes gzip NARs as plain `.nar`).
    pub fn extension(self) -> &'static str {
        match self {
            Self::None | Self::Gzip => "",
            Self::Xz => ".xz",
            Self::Zstd => ".zst",
            Self::Bzip2 => ".bz2",
            Self::Brotli => ".br",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The compression a NAR file name implies; `.nar` is `None` (or gzip, see [`Self::sniff`]).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext {
            ".gz" => Some(Self::Gzip),
            _ => Self::ALL.into_iter().find(|c| *c != Self::Gzip && c.extension() == ext),
        }
    }

    /// Tells gzip from a raw NAR by the first bytes, for files named plain `.nar`.
    pub fn sniff(first_bytes: &[u8]) -> Self {
        if first_bytes.starts_with(&[0x1f, 0x8b]) { Self::Gzip } else { Self::None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_extensions_round_trip() {
        for c in Compression::ALL {
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
        assert_eq!(Compression::from_extension(".zst"), Some(Compression::Zstd));
        assert_eq!(Compression::from_extension(""), Some(Compression::None));
        assert_eq!(Compression::from_extension(".lz4"), None);
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::sniff(b"\x0d\0\0\0"), Compression::None);
    }
}
