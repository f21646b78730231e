//! The `hibernation` command's building blocks: configuration, the HTTP client, the local
//! Nix store, NAR streaming and the push pipeline.

pub mod config;
pub mod http;
pub mod nar_stream;
pub mod push;
pub mod store;
