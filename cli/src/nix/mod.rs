//! Nix wire and file formats, each defined once for client and server.

pub mod base32;
pub mod compression;
pub mod content_address;
pub mod hash;
pub mod nar;
pub mod narinfo;
pub mod signing;
pub mod store_path;

pub use compression::Compression;
pub use hash::NarHash;
pub use narinfo::NarInfo;
pub use signing::{PublicKey, SecretKey};
pub use store_path::StorePath;

/// The only store directory Hibernation serves.
pub const STORE_DIR: &str = "/nix/store";
