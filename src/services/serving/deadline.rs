//! A moment until which something a process remembers may be trusted, read and moved by any
//! thread without a lock. Unset (or passed), nothing remembered is trusted.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The instant deadlines count from: the first use in this process.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

#[derive(Default)]
pub struct Deadline {
    /// Nanoseconds after [`origin`]; 0 means never trusted.
    until: AtomicU64,
}

impl Deadline {
    pub fn is_ahead(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until != 0 && (Instant::now().saturating_duration_since(origin()).as_nanos() as u64) < until
    }

    /// Trusts until `until` (never moved back by a late caller with an older moment).
    pub fn extend_to(&self, until: Instant) {
        let nanos = (until.saturating_duration_since(origin()).as_nanos() as u64).max(1);
        self.until.fetch_max(nanos, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn trusted_only_until_the_moment_it_was_extended_to() {
        let deadline = Deadline::default();
        assert!(!deadline.is_ahead(), "never trusted before it is extended");
        deadline.extend_to(Instant::now() + Duration::from_secs(60));
        assert!(deadline.is_ahead());
        deadline.extend_to(Instant::now() - Duration::from_secs(1));
        assert!(deadline.is_ahead(), "an older moment does not move it back");
        let passed = Deadline::default();
        passed.extend_to(Instant::now() - Duration::from_millis(1));
        assert!(!passed.is_ahead(), "a moment already passed");
    }
}
