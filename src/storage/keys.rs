//! Where each kind of object lives in the store: every key the server writes is made here.
//! Keys are unique per upload (a random part), so concurrent uploads never collide and a key
//! deleted late can never be a new upload's.

use hibernation::nix::{Compression, NarHash};

/// Prefixes of the keys rows own: NARs and their listings, and build logs.
pub const OWNED_PREFIXES: [&str; 2] = ["nar/", "log/"];

/// The key of a new NAR object.
pub fn new_nar_key(nar_hash: &NarHash, compression: Compression) -> String {
    format!("nar/{}.{}.nar{}", nar_hash.to_nix32(), crate::random::random_id(), compression.extension())
}

/// Where the `.ls` listing of a stored NAR lives.
pub fn listing_key(nar_key: &str) -> String {
    format!("{nar_key}.ls")
}

/// The key of a new build log of derivation `drv` (a store path's base name) in a cache.
pub fn new_log_key(cache_id: i64, drv: &str) -> String {
    format!("log/{cache_id}/{drv}.{}", crate::random::random_id())
}

/// The key of the object that owns `key`: a listing belongs to its NAR.
pub fn owner_key(key: &str) -> &str {
    key.strip_suffix(".ls").unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_belong_to_their_nar() {
        let nar = "nar/abc.x.nar.zst";
        assert_eq!(owner_key(&listing_key(nar)), nar);
        assert_eq!(owner_key(nar), nar);
        let log = new_log_key(1, "abc-hello.drv");
        assert!(log.starts_with("log/1/abc-hello.drv.") && OWNED_PREFIXES.iter().any(|p| log.starts_with(p)));
        assert_eq!(owner_key(&log), log);
    }
}
