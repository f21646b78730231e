//! Hibernation's client library.
//!
//! * [`nix`]: the Nix formats (Nix base32, hashes, store paths, narinfo, signatures, NAR
//!   writer and validating reader). The server uses these same definitions.
//! * [`http`]: the `Authorization` and `Range` header values the cache protocol reads.
//! * [`api`]: request and response types of the push API, shared by server and CLI.
//! * `client` (feature `client`): the HTTP client and the `hibernation` command.

pub mod api;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod human;
pub mod nix;

#[cfg(feature = "client")]
pub mod client;
