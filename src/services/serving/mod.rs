//! Answering Nix: narinfos and NAR look-ups from memory where it can (`hot_cache`, the
//! `presence` filter), kept true to the database on every replica (`replication`), and what
//! was downloaded (`access_log`).

pub mod access_log;
pub mod answers;
pub mod cache_info;
mod deadline;
pub mod hot_cache;
pub mod narinfo;
pub mod presence;
pub mod replication;
pub mod rights;
