//! Unguessable names: upload ids, temporary files, session and link secrets. Its own module
//! because every layer (storage, services, web) needs it and none should depend on another
//! for it.

use rand::Rng;

/// 128 random bits as hex.
pub fn random_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    hex::encode(bytes)
}
