//! What leaves the store and when: eviction under a quota, pins that keep paths, garbage
//! collection of what nothing uses, fsck, and the janitor that runs them on schedule.

pub mod eviction;
pub mod fsck;
pub mod gc;
pub mod janitor;
pub mod pins;
