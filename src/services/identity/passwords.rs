//! Password hashing with argon2id (PHC strings).

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

pub const MIN_LENGTH: usize = 8;

/// argon2 is slow on purpose: it runs on the blocking pool, never on the async workers, and
/// no more hashes run at once than there are cores, so a flood of sign-ins cannot starve
/// everything else.
static HASHING: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    std::sync::Arc::new(tokio::sync::Semaphore::new(cores))
});

/// A hash to verify against when there is no account, so that unknown accounts take as long.
static DECOY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| hash("no account has this password"));

async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    // Owned and moved into the blocking task: the permit lives as long as the hashing does,
    // even if the request that asked for it is dropped meanwhile.
    let permit = HASHING.clone().acquire_owned().await.expect("the hashing semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let result = work();
        drop(permit);
        result
    })
    .await
    .expect("argon2 does not panic")
}

/// [`hash`] on the blocking pool.
pub async fn hash_async(password: &str) -> String {
    let password = password.to_string();
    off_runtime(move || hash(&password)).await
}

/// [`verify`] on the blocking pool; `None` (no account, or no password set) takes as long
/// as a real check and is false.
pub async fn verify_async(password: &str, phc: Option<&str>) -> bool {
    let (password, phc) = (password.to_string(), phc.map(str::to_string));
    off_runtime(move || match phc {
        Some(phc) => verify(&password, &phc),
        None => {
            verify(&password, &DECOY);
            false
        }
    })
    .await
}

pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default parameters").to_string()
}

pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let phc = hash("correct horse");
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse", &phc));
        assert!(!verify("wrong horse", &phc));
        assert!(!verify("correct horse", "not a hash"));
        assert_ne!(hash("correct horse"), phc, "salted");
    }
}
