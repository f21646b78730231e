//! The Nix archive format (NAR): a streaming writer that matches `nix-store --dump` byte for
//! byte, and a streaming reader that validates structure while the caller hashes.
//!
//! Tokens are `u64` little-endian lengths followed by the bytes and zero padding to 8 bytes.

mod reader;
mod writer;

pub use reader::{HashingReader, NarError, NarSummary, validate};
pub use writer::dump_path;

pub(crate) const MAGIC: &[u8] = b"nix-archive-1";

/// Nix refuses NARs nested deeper than this when unpacking.
pub const MAX_DEPTH: usize = 64;

pub(crate) fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}
