//! Getting in: first-run setup, sign-in and sign-out (`auth`), single sign-on (`oidc`), the
//! pages behind mailed links (`links`), and approving a CLI login (`cli_login`).

pub(super) mod auth;
pub(super) mod cli_login;
pub(super) mod links;
pub(super) mod oidc;
