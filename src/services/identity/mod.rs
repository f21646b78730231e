//! Who is calling and what they may do. Words used throughout:
//! - a **caller** is who sent a request: anonymous, a user (session), or an API token (`auth`);
//! - **access** is what a caller may do in one cache: nothing, read, push or manage (`access`);
//! - a **grant** gives a user or a group a level in one cache (`grants`);
//! - a **permission** is server-wide (manage users, create caches...), held through groups;
//! - a **right** is an access decision remembered for a moment (`web::rights`, `hot_cache`).

pub mod access;
pub mod accounts;
pub mod auth;
pub mod avatars;
pub mod cli_login;
pub mod email_change;
pub mod grants;
pub mod groups;
pub mod oidc;
pub mod passwords;
pub mod sessions;
pub mod tokens;
pub mod trusted_publishing;
pub mod user_links;
