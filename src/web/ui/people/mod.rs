//! People: users and their pages, groups, API tokens, one's own account and avatar.

pub(super) mod account;
pub(super) mod avatar;
pub(super) mod groups;
pub(super) mod tokens;
pub(super) mod user_page;
pub(super) mod users;
