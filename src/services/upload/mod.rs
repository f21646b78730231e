//! Pushes: the CLI's (a NAR, then its path) and `nix copy`'s (NAR, then narinfo), from the
//! request body (`receive`, within `decode_memory`'s budget) to a committed, visible path
//! (`push`), with the cache's quota and upstream checks.

pub mod decode_memory;
pub mod nix_upload;
pub mod push;
pub mod push_error;
mod quota;
pub mod receive;
pub mod upstream;
