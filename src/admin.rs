//! `hibernation-server admin ...`: bootstrap users, caches, keys and tokens without the UI.

use std::process::ExitCode;

use anyhow::{Context, bail};
use chrono::Duration;
use clap::Subcommand;

use crate::config::{Config, parse_lifetime};
use crate::db::ids::{CacheId, UserId};
use crate::db::models::{GrantLevel, QuotaPolicy};
use crate::db::{Db, caches, is_unique_violation, now, users};
use crate::services::caches as cache_rules;
use crate::services::{identity::auth, identity::grants, identity::passwords, identity::trusted_publishing};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
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
    /// Create a cache. Pushes must be signed by one of its public keys.
    CreateCache {
        name: String,
        /// Anyone may read the cache (pushing always needs a token).
        #[arg(long)]
        public: bool,
        /// Substituter priority announced in nix-cache-info (lower wins; cache.nixos.org is 40).
        #[arg(long, default_value_t = 41)]
        priority: i32,
        /// A Nix public key (`name:base64`, from `nix key convert-secret-to-public`); repeatable.
        #[arg(long = "public-key")]
        public_keys: Vec<String>,
        /// Most bytes of NAR files the cache may hold, in GiB (e.g. 50 or 0.5); no limit when absent.
        #[arg(long)]
        quota_gib: Option<String>,
        /// An upstream cache whose paths pushes skip: `"<url> <public key>"`; repeatable.
        /// Without it the cache starts with https://cache.nixos.org.
        #[arg(long = "upstream", value_name = "URL KEY", conflicts_with = "no_upstream")]
        upstreams: Vec<String>,
        /// Start with no upstream cache: every pushed path is stored.
        #[arg(long)]
        no_upstream: bool,
        /// Let `hibernation push --force` store paths an upstream already holds.
        #[arg(long)]
        allow_force_push: bool,
        #[command(flatten)]
        lifecycle: LifecycleArgs,
    },
    /// Change a cache's quota, quota policy or retention; a lowered quota evicts at once when
    /// the policy evicts.
    UpdateCache {
        name: String,
        /// Most bytes of NAR files, in GiB; `none` for no limit.
        #[arg(long)]
        quota_gib: Option<String>,
        #[command(flatten)]
        lifecycle: LifecycleArgs,
    },
    /// Delete NARs no path has used for GC_GRACE, objects no row owns that are older than that,
    /// uploads whose narinfo never came, and expired rows. Waits for nothing: fails when another
    /// process is collecting.
    Gc {
        /// Report what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-read every stored NAR and check it against the database; report missing and corrupt
    /// objects, objects no row owns, and paths whose references are missing. Exit status: 0
    /// when nothing is damaged, 1 when damage was found and repaired, 2 when damage is left.
    Fsck {
        /// Only this cache's paths and the NARs they use.
        #[arg(long)]
        cache: Option<String>,
        /// Remove every broken path together with what references it (a broken NAR from every
        /// cache), the broken NARs, and orphan objects older than GC_GRACE.
        #[arg(long)]
        repair: bool,
    },
    /// Add a public signing key to a cache.
    AddKey { cache: String, public_key: String },
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
    /// Trusted publishing: let CI trade ID tokens from an issuer for short-lived tokens on
    /// this cache, when every --claim matches (e.g. GitHub Actions:
    /// `--issuer https://token.actions.githubusercontent.com --claim repository=acme/app
    /// --claim ref=refs/heads/main --push`). Without --push the tokens only read.
    Trust {
        cache: String,
        #[arg(long)]
        issuer: String,
        /// A condition `claim=value` the token must meet; repeat for more (at least one).
        #[arg(long = "claim", value_name = "CLAIM=VALUE", required = true)]
        claims: Vec<String>,
        #[arg(long)]
        push: bool,
    },
    /// List a cache's trusted publishing rules.
    TrustRules { cache: String },
    /// Remove a trusted publishing rule (its number from trust-rules).
    Untrust { cache: String, rule: i64 },
    /// Remove the single sign-on settings saved on the settings page: the way back in when a
    /// single-sign-on-only setup does not work (OIDC_* variables are not affected).
    ResetSso,
}

/// Quota policy and retention, as `create-cache` and `update-cache` take them.
#[derive(Debug, clap::Args)]
pub struct LifecycleArgs {
    /// What a push past the quota does: refuse (413), or evict by lru, lfu or oldest.
    #[arg(long, value_parser = ["refuse", "lru", "lfu", "oldest"])]
    quota_policy: Option<String>,
    /// Remove paths unused for this long (e.g. 30d, 12h; `none` keeps them), with the closure rule.
    #[arg(long)]
    retention: Option<String>,
}

impl LifecycleArgs {
    fn policy(&self) -> Option<QuotaPolicy> {
        self.quota_policy.as_deref().and_then(QuotaPolicy::parse)
    }

    /// `None`: unchanged; `Some(None)`: no retention.
    fn retention_seconds(&self) -> anyhow::Result<Option<Option<i64>>> {
        match self.retention.as_deref() {
            None => Ok(None),
            Some("none") => Ok(Some(None)),
            Some(text) => {
                let lifetime = parse_lifetime(text)?;
                if lifetime <= Duration::zero() {
                    bail!("--retention must be above zero (or none)");
                }
                Ok(Some(Some(lifetime.num_seconds())))
            }
        }
    }
}

fn find_cache(db: &Db, name: &str) -> anyhow::Result<crate::db::models::Cache> {
    db.write_blocking(|c| caches::find_by_name(c, name))?.with_context(|| format!("cache {name:?} does not exist"))
}

/// Logins name users in commands: no spaces or control characters, so they cannot be mistaken.
fn is_valid_login(login: &str) -> bool {
    !login.is_empty() && login.len() <= 254 && !login.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub fn run(db: &Db, config: &Config, command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::Fsck { cache, repair } => return fsck(db, config, cache, repair),
        AdminCommand::UpdateCache { name, quota_gib, lifecycle } => {
            let quota = quota_gib.as_deref().map(cache_rules::parse_quota_gib).transpose()?;
            let change = caches::LifecycleChange {
                quota_bytes: quota,
                quota_policy: lifecycle.policy(),
                retention_seconds: lifecycle.retention_seconds()?,
            };
            let cache = db
                .write_blocking(|c| {
                    let Some(cache) = caches::find_by_name(c, &name)? else { return Ok(None) };
                    caches::change_lifecycle(c, cache.id, &change)?;
                    crate::db::replication::access_changed(c)?;
                    caches::find_by_name(c, &name)
                })?
                .with_context(|| format!("no cache named {name:?}"))?;
            let runtime = tokio::runtime::Runtime::new()?;
            let min_age = config.lifecycle.eviction_min_age;
            let evicted = runtime.block_on(crate::services::lifecycle::eviction::fit_quota(db, &cache, min_age))?;
            println!("updated cache {name}");
            if evicted.paths > 0 {
                println!(
                    "evicted {} paths ({}) to fit the quota",
                    evicted.paths,
                    hibernation::format::gib(evicted.bytes as u64)
                );
            }
        }
        AdminCommand::Gc { dry_run } => {
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(async {
                let storage = config.open_storage().await?;
                anyhow::Ok(
                    crate::services::lifecycle::gc::collect(db, &storage, config.lifecycle.gc_grace, dry_run).await?,
                )
            })?;
            println!("{report}");
        }
        AdminCommand::CreateUser { login, name, admin, email, password_stdin } => {
            let name = name.unwrap_or_else(|| login.clone());
            if !is_valid_login(&login) {
                bail!("a login is 1 to 254 characters without spaces or control characters, got {login:?}");
            }
            if let Some(error) = crate::services::display_name_error(name.trim()) {
                bail!("{error}");
            }
            let password_hash = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
                let password = line.trim_end_matches(['\r', '\n']);
                if password.chars().count() < passwords::MIN_LENGTH {
                    bail!("passwords need at least {} characters", passwords::MIN_LENGTH);
                }
                Some(passwords::hash(password))
            } else {
                None
            };
            let email = email.map(|e| e.trim().to_ascii_lowercase());
            let who = users::NewIdentity { login: &login, name: name.trim() };
            db.write_blocking(|c| match (&email, &password_hash) {
                (Some(email), Some(hash)) => users::create_with_password(c, who, email, hash, admin),
                _ => users::create(c, who.login, who.name, admin),
            })
            .map_err(|e| unique_or(e, format!("user {login:?} (or that name or email address) already exists")))?;
            println!("created user {login}{}", if admin { " (administrator)" } else { "" });
        }
        AdminCommand::CreateCache {
            name,
            public,
            priority,
            public_keys,
            quota_gib,
            upstreams,
            no_upstream,
            allow_force_push,
            lifecycle,
        } => {
            cache_rules::check_name(&name)?;
            let public_keys = cache_rules::check_keys(public_keys.iter().map(String::as_str))?;
            let quota_bytes = cache_rules::parse_quota_gib(quota_gib.as_deref().unwrap_or_default())?;
            let upstreams = match (no_upstream, upstreams.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, true) => None,
                (false, false) => Some(cache_rules::parse_upstreams(upstreams.iter().map(String::as_str))?),
            };
            let settings = caches::CacheSettings {
                is_public: public,
                priority,
                quota_bytes,
                keys: public_keys,
                upstreams,
                allow_force_push: Some(allow_force_push),
                quota_policy: lifecycle.policy().unwrap_or(QuotaPolicy::Refuse),
                retention_seconds: lifecycle.retention_seconds()?.flatten(),
            };
            tokio::runtime::Runtime::new()?.block_on(cache_rules::create(db, None, &name, settings))?;
            println!("created {} cache {name}", if public { "public" } else { "private" });
        }
        AdminCommand::AddKey { cache, public_key } => {
            cache_rules::check_keys([public_key.as_str()])?;
            db.write_blocking(|c| {
                let found = caches::find_by_name(c, &cache)?;
                found.map(|found| caches::add_key(c, found.id, &public_key)).transpose()
            })
            .map_err(|e| unique_or(e, format!("cache {cache:?} already has this key")))?
            .with_context(|| format!("cache {cache:?} does not exist"))?;
            println!("added key to cache {cache}");
        }
        AdminCommand::Grant { user, cache, push, manage } => {
            let level = match (push, manage) {
                (_, true) => GrantLevel::Manage,
                (true, false) => GrantLevel::Push,
                (false, false) => GrantLevel::Read,
            };
            let found =
                db.write_blocking(|c| Ok((users::find_by_login(c, &user)?, caches::find_by_name(c, &cache)?)))?;
            let (Some(u), Some(k)) = found else {
                bail!("user {user:?} or cache {cache:?} does not exist");
            };
            let grantee = grants::Grantee::User(UserId(u.id));
            tokio::runtime::Runtime::new()?.block_on(grants::grant(db, None, CacheId(k.id), grantee, level))?;
            println!("granted {} on {cache} to {user}", level.describe());
        }
        AdminCommand::CreateToken { user, name, expires_in, caches: cache_names, read_only } => {
            let expires_at = expires_in.as_deref().map(parse_lifetime).transpose()?.map(|d| now() + d);
            let mut cache_ids = Vec::new();
            for cache in &cache_names {
                let found = db.write_blocking(|c| caches::find_by_name(c, cache))?;
                cache_ids.push(found.with_context(|| format!("cache {cache:?} does not exist"))?.id);
            }
            let scope = users::TokenScope { cache_ids: (!cache_ids.is_empty()).then_some(cache_ids), read_only };
            let token = db
                .write_blocking(|c| {
                    let Some(u) = users::find_by_login(c, &user)? else {
                        return Ok(None);
                    };
                    auth::issue_token(c, u.id, &name, expires_at, &scope).map(Some)
                })
                .map_err(|e| unique_or(e, format!("user {user:?} already has a token named {name:?}")))?
                .with_context(|| format!("user {user:?} does not exist"))?;
            println!("{token}");
        }
        AdminCommand::Trust { cache, issuer, claims, push } => {
            let cache_row = find_cache(db, &cache)?;
            let conditions = trusted_publishing::parse_conditions(claims.iter().map(String::as_str))?;
            trusted_publishing::check_issuer(&issuer)?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(trusted_publishing::trust(db, CacheId(cache_row.id), &issuer, &conditions, push))?;
            println!("cache {cache} trusts tokens from {issuer} for {}", if push { "push" } else { "read" });
        }
        AdminCommand::TrustRules { cache } => {
            let cache_row = find_cache(db, &cache)?;
            let runtime = tokio::runtime::Runtime::new()?;
            for rule in runtime.block_on(trusted_publishing::rules(db, CacheId(cache_row.id)))? {
                let right = if rule.can_push { "push" } else { "read" };
                println!("{}\t{}\t{right}\t{}", rule.id, rule.issuer, rule.conditions);
            }
        }
        AdminCommand::Untrust { cache, rule } => {
            let cache_row = find_cache(db, &cache)?;
            let runtime = tokio::runtime::Runtime::new()?;
            if !runtime.block_on(trusted_publishing::untrust(db, CacheId(cache_row.id), rule))? {
                bail!("cache {cache:?} has no rule {rule}");
            }
            println!("removed rule {rule} of cache {cache}");
        }
        AdminCommand::ResetSso => {
            let handle = crate::services::identity::oidc::SsoHandle::new(None, &config.site_url)?;
            let removed = tokio::runtime::Runtime::new()?.block_on(handle.reset(db))?;
            println!(
                "{}",
                if removed {
                    "removed the single sign-on settings: password sign-in works again"
                } else {
                    "no single sign-on settings were saved on the settings page"
                }
            );
        }
        AdminCommand::RevokeToken { user, name } => {
            let revoked = db.write_blocking(|c| {
                let Some(u) = users::find_by_login(c, &user)? else { return Ok(0) };
                let revoked = users::revoke_token(c, u.id, &name)?;
                crate::db::replication::access_changed(c)?;
                Ok(revoked)
            })?;
            if revoked == 0 {
                bail!("user {user:?} has no token named {name:?}");
            }
            println!("revoked token {name} of {user}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fsck(db: &Db, config: &Config, cache: Option<String>, repair: bool) -> anyhow::Result<ExitCode> {
    use crate::services::lifecycle::fsck;
    use std::io::IsTerminal;
    let cache = match cache {
        Some(name) => Some(
            db.write_blocking(|c| caches::find_by_name(c, &name))?
                .with_context(|| format!("no cache named {name:?}"))?,
        ),
        None => None,
    };
    let options = fsck::Options { cache, repair, grace: config.lifecycle.gc_grace };
    let on_terminal = std::io::stderr().is_terminal();
    let progress = |done: u64, total: u64| {
        if on_terminal {
            eprint!("\rchecked {done} of {total} NARs");
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(async {
        let storage = config.open_storage().await?;
        fsck::run(db, &storage, &options, progress).await
    })?;
    if on_terminal {
        eprintln!();
    }
    println!("{report}");
    Ok(match (report.damaged(), repair) {
        (false, _) => ExitCode::SUCCESS,
        (true, true) => ExitCode::from(1),
        (true, false) => ExitCode::from(2),
    })
}

fn unique_or(e: crate::db::DbError, message: String) -> anyhow::Error {
    if is_unique_violation(&e) { anyhow::anyhow!(message) } else { e.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lifetimes() {
        assert_eq!(parse_lifetime("90d").unwrap(), Duration::days(90));
        assert_eq!(parse_lifetime("12h").unwrap(), Duration::hours(12));
        assert_eq!(parse_lifetime("5").unwrap(), Duration::seconds(5));
        assert!(parse_lifetime("soon").is_err());
        assert!(parse_lifetime("5w").is_err());
    }
}
