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

use crate::db::Db;
use crate::services::serving::replication::Replication;
use crate::storage::Storage;

/// Where a path lands when its push commits, and what the commit must not disturb: paths
/// pushed within `eviction_min_age` (EVICTION_MIN_AGE) are never evicted to make room.
#[derive(Clone, Copy)]
pub struct Destination<'a> {
    pub db: &'a Db,
    pub storage: &'a Storage,
    pub replication: &'a Replication,
    pub eviction_min_age: chrono::Duration,
}
