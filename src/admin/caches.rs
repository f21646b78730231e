//! `admin create-cache`, `update-cache`, `add-key`, and the trusted publishing rules
//! (`trust`, `trust-rules`, `untrust`): caches set up from the host, under the dashboard's
//! rules for names, keys, quotas and upstreams.

use anyhow::bail;
use chrono::Duration;
use clap::Subcommand;

use crate::config::{Config, parse_lifetime};
use crate::db::caches::{CacheSettings, LifecycleChange};
use crate::db::ids::CacheId;
use crate::db::models::{Cache, QuotaPolicy};
use crate::db::{Db, DbResult};
use crate::services::caches::{self, NamedCacheError};
use crate::services::identity::trusted_publishing;

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
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
    /// Add a public signing key to a cache.
    AddKey { cache: String, public_key: String },
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

/// The cache named `name`, if it exists.
pub async fn find(db: &Db, name: &str) -> DbResult<Option<Cache>> {
    let name = name.to_string();
    db.read(move |c| crate::db::caches::find_by_name(c, &name)).await
}

/// The cache named `name`, or the error that says it does not exist.
pub async fn existing(db: &Db, name: &str) -> anyhow::Result<Cache> {
    Ok(find(db, name).await?.ok_or_else(|| NamedCacheError::NotFound(name.to_string()))?)
}

pub async fn run(db: &Db, config: &Config, command: CacheCommand) -> anyhow::Result<()> {
    match command {
        CacheCommand::CreateCache {
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
            caches::check_name(&name)?;
            let keys = caches::check_keys(public_keys.iter().map(String::as_str))?;
            let quota_bytes = caches::parse_quota_gib(quota_gib.as_deref().unwrap_or_default())?;
            let upstreams = match (no_upstream, upstreams.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, true) => None,
                (false, false) => Some(caches::parse_upstreams(upstreams.iter().map(String::as_str))?),
            };
            let settings = CacheSettings {
                is_public: public,
                priority,
                quota_bytes,
                keys,
                upstreams,
                allow_force_push: Some(allow_force_push),
                quota_policy: lifecycle.policy().unwrap_or(QuotaPolicy::Refuse),
                retention_seconds: lifecycle.retention_seconds()?.flatten(),
            };
            caches::create(db, None, &name, settings).await?;
            println!("created {} cache {name}", if public { "public" } else { "private" });
        }
        CacheCommand::UpdateCache { name, quota_gib, lifecycle } => {
            let change = LifecycleChange {
                quota_bytes: quota_gib.as_deref().map(caches::parse_quota_gib).transpose()?,
                quota_policy: lifecycle.policy(),
                retention_seconds: lifecycle.retention_seconds()?,
            };
            let min_age = config.lifecycle.eviction_min_age;
            let evicted = caches::change_lifecycle(db, &name, change, min_age).await?;
            println!("updated cache {name}");
            if evicted.paths > 0 {
                let bytes = hibernation::human::gib(evicted.bytes as u64);
                println!("evicted {} paths ({bytes}) to fit the quota", evicted.paths);
            }
        }
        CacheCommand::AddKey { cache, public_key } => {
            caches::add_key(db, &cache, &public_key).await?;
            println!("added key to cache {cache}");
        }
        CacheCommand::Trust { cache, issuer, claims, push } => {
            let target = existing(db, &cache).await?;
            let conditions = trusted_publishing::parse_conditions(claims.iter().map(String::as_str))?;
            trusted_publishing::check_issuer(&issuer)?;
            trusted_publishing::trust(db, CacheId(target.id), &issuer, &conditions, push).await?;
            println!("cache {cache} trusts tokens from {issuer} for {}", if push { "push" } else { "read" });
        }
        CacheCommand::TrustRules { cache } => {
            let target = existing(db, &cache).await?;
            for rule in trusted_publishing::rules(db, CacheId(target.id)).await? {
                let right = if rule.can_push { "push" } else { "read" };
                println!("{}\t{}\t{right}\t{}", rule.id, rule.issuer, rule.conditions);
            }
        }
        CacheCommand::Untrust { cache, rule } => {
            let target = existing(db, &cache).await?;
            if !trusted_publishing::untrust(db, CacheId(target.id), rule).await? {
                bail!("cache {cache:?} has no rule {rule}");
            }
            println!("removed rule {rule} of cache {cache}");
        }
    }
    Ok(())
}
