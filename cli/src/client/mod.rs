//! The `hibernation` command's building blocks: configuration, the HTTP client, the local
//! Nix store, NAR streaming, the push pipeline, the store watcher, browser login and
//! machine set-up.

pub mod config;
pub mod http;
pub mod login;
pub mod nar_stream;
pub mod oidc;
pub mod push;
pub mod store;
pub mod use_cache;
pub mod watch;
