//! `admin create-user`, `grant`, `create-token`, `revoke-token` and `reset-sso`: people and
//! their way in, through the same services (and rules) as the dashboard.

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::config::{Config, parse_lifetime};
use crate::db::ids::CacheId;
use crate::db::models::GrantLevel;
use crate::db::{Db, now};
use crate::services::identity::accounts::{self, HostAccount};
use crate::services::identity::tokens::{self, TokenError};
use crate::services::identity::{grants, oidc};

#[derive(Debug, Subcommand)]
pub enum PeopleCommand {
    /// Create a user (administrators may read and push everywhere).
    CreateUser {
        /// The login other commands name the user by; unique, and it never changes.
        login: String,
        /// The name shown for the user (its owner may change it); the login when absent.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        admin: bool,
        /// Email address for signing in to the dashboard (needs --password-stdin).
        #[arg(long, requires = "password_stdin")]
        email: Option<String>,
        /// Read the dashboard password from standard input (one line).
        #[arg(long, requires = "email")]
        password_stdin: bool,
    },
    /// Let a user read a cache, or push to it with --push.
    Grant {
        /// The user's login.
        user: String,
        cache: String,
        /// Read and push.
        #[arg(long, conflicts_with = "manage")]
        push: bool,
        /// Read, push, and manage the cache (settings, access, deleting paths, clearing, deleting).
        #[arg(long)]
        manage: bool,
    },
    /// Create an API token for a user and print it (it is shown only once).
    CreateToken {
        /// The user's login.
        user: String,
        #[arg(long)]
        name: String,
        /// Lifetime such as 90d, 12h, 30m or 45s; no expiry when absent.
        #[arg(long)]
        expires_in: Option<String>,
        /// Limit the token to this cache (repeatable); all of the user's caches when absent.
        #[arg(long = "cache")]
        caches: Vec<String>,
        /// The token may read but never push.
        #[arg(long)]
        read_only: bool,
    },
    /// Revoke a user's token by name; it stops working at once.
    RevokeToken {
        /// The user's login.
        user: String,
        #[arg(long)]
        name: String,
    },
    /// Remove the single sign-on settings saved on the settings page: the way back in when a
    /// single-sign-on-only setup does not work (OIDC_* variables are not affected).
    ResetSso,
}

pub async fn run(db: &Db, config: &Config, command: PeopleCommand) -> anyhow::Result<()> {
    match command {
        PeopleCommand::CreateUser { login, name, admin, email, password_stdin } => {
            let password = if password_stdin { Some(read_password()?) } else { None };
            let sign_in = email.as_deref().zip(password.as_deref());
            let account = HostAccount { login: &login, name: name.as_deref(), admin, sign_in };
            accounts::create_on_host(db, account).await?;
            println!("created user {login}{}", if admin { " (administrator)" } else { "" });
        }
        PeopleCommand::Grant { user, cache, push, manage } => {
            let level = match (push, manage) {
                (_, true) => GrantLevel::Manage,
                (true, false) => GrantLevel::Push,
                (false, false) => GrantLevel::Read,
            };
            let found = (accounts::find_by_login(db, &user).await?, super::caches::find(db, &cache).await?);
            let (Some(grantee), Some(target)) = found else {
                bail!("user {user:?} or cache {cache:?} does not exist");
            };
            let grantee = grants::Grantee::User(grantee.id);
            grants::grant(db, None, CacheId(target.id), grantee, level).await?;
            println!("granted {} on {cache} to {user}", level.describe());
        }
        PeopleCommand::CreateToken { user, name, expires_in, caches, read_only } => {
            let expires_at = expires_in.as_deref().map(parse_lifetime).transpose()?.map(|d| now() + d);
            match tokens::issue_on_host(db, &user, &name, expires_at, &caches, read_only).await {
                Ok(token) => println!("{token}"),
                Err(TokenError::NameTaken) => bail!("user {user:?} already has a token named {name:?}"),
                Err(e) => return Err(e.into()),
            }
        }
        PeopleCommand::RevokeToken { user, name } => {
            if !tokens::revoke_on_host(db, &user, &name).await? {
                bail!("user {user:?} has no token named {name:?}");
            }
            println!("revoked token {name} of {user}");
        }
        PeopleCommand::ResetSso => {
            let removed = oidc::SsoHandle::new(None, &config.site_url)?.reset(db).await?;
            println!(
                "{}",
                if removed {
                    "removed the single sign-on settings: password sign-in works again"
                } else {
                    "no single sign-on settings were saved on the settings page"
                }
            );
        }
    }
    Ok(())
}

/// One line of standard input, without its line ending.
fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
