//! Server configuration, read once from the environment at startup.

use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::services::lifecycle::Timing;
use crate::storage::S3Config;
use crate::web::Limits;

#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// The `service_name` label on every series.
    pub name: String,
    /// A separate listener for the exposition; `None` serves `/metrics` on the main port.
    pub port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub db_url: String,
    pub database_logging: bool,
    pub storage_path: PathBuf,
    pub site_url: String,
    pub log_level: String,
    pub port: u16,
    /// `{cache}.{site host}` serves that cache's protocol at `/` (VIRTUAL_HOST_ROUTING).
    pub virtual_host_routing: bool,
    /// Prometheus metrics (METRICS_ENABLED, METRICS_NAME, METRICS_PORT).
    pub metrics: Option<MetricsConfig>,
    /// Reverse proxies whose X-Forwarded-For names the client (TRUSTED_PROXIES).
    pub trusted_proxies: Vec<crate::web::client_address::Network>,
    /// Mail settings from SMTP_* variables; they lock the dashboard's mail settings.
    pub smtp: Option<crate::services::mail::SmtpSettings>,
    /// Single sign-on from OIDC_* variables.
    pub oidc: Option<crate::services::identity::oidc::OidcSettings>,
    /// Set when NARs go to S3; `storage_path` then only holds temporary upload files.
    pub s3: Option<S3Config>,
    pub limits: Limits,
    /// CLIENT_TIMEOUT: a connection that sends and receives nothing this long is closed (after
    /// answering its request in flight, if any), and a request body that stalls this long is
    /// cut off. 60 s by default.
    pub client_timeout: std::time::Duration,
    pub lifecycle: Timing,
}

impl Config {
    /// Which database the server runs on, for people (the first-run page).
    pub fn describe_database(&self) -> String {
        crate::db::DbUrl::parse(&self.db_url).map_or_else(|e| e.to_string(), |url| url.describe())
    }

    /// Where NARs are stored, for people (the first-run page).
    pub fn describe_storage(&self) -> String {
        match &self.s3 {
            Some(s3) => format!("S3, bucket {} at {}", s3.bucket, s3.host),
            None => format!("local disk, under {}", self.storage_path.display()),
        }
    }
}

fn lifecycle_from_env() -> anyhow::Result<Timing> {
    let defaults = Timing::default();
    let duration = |name: &str, default: chrono::Duration| -> anyhow::Result<chrono::Duration> {
        match var(name) {
            Some(text) => parse_lifetime(text.trim())
                .with_context(|| format!("{name} must be a duration such as 1h, 30m or 45s, got {text:?}")),
            None => Ok(default),
        }
    };
    let gc_interval = duration("GC_INTERVAL", chrono::Duration::from_std(defaults.gc_interval)?)?;
    if gc_interval <= chrono::Duration::zero() {
        bail!("GC_INTERVAL must be above zero");
    }
    Ok(Timing {
        gc_grace: duration("GC_GRACE", defaults.gc_grace)?,
        gc_interval: gc_interval.to_std()?,
        eviction_min_age: duration("EVICTION_MIN_AGE", defaults.eviction_min_age)?,
    })
}

/// A size such as `1048576`, `512M`, `16G` or `16GiB` (binary units).
fn parse_size(name: &str, text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => bail!("{name} must be a size such as 512M or 16G, got {text:?}"),
    };
    let number: u64 =
        number.parse().with_context(|| format!("{name} must be a size such as 512M or 16G, got {text:?}"))?;
    match number.checked_mul(1 << shift) {
        Some(0) | None => bail!("{name} must be a size above zero and below 16 EiB, got {text:?}"),
        Some(bytes) => Ok(bytes),
    }
}

fn limits_from_env() -> anyhow::Result<Limits> {
    let defaults = Limits::default();
    let size = |name: &str, default: u64| var(name).map_or(Ok(default), |v| parse_size(name, &v));
    Ok(Limits {
        max_nar_size: size("MAX_NAR_SIZE", defaults.max_nar_size)?,
        max_log_size: size("MAX_LOG_SIZE", defaults.max_log_size)?,
        decompression_memory: decompression_memory(size("DECOMPRESSION_MEMORY", defaults.decompression_memory)?)?,
    })
}

/// The budget must hold the largest single upload's need, or such an upload could never start.
fn decompression_memory(bytes: u64) -> anyhow::Result<u64> {
    let least = crate::services::upload::decode_memory::MAX_RESERVATION;
    if bytes < least {
        bail!(
            "DECOMPRESSION_MEMORY must be at least {} (what one upload may need to decompress), got {}",
            hibernation::human::human_bytes(least),
            hibernation::human::human_bytes(bytes)
        );
    }
    Ok(bytes)
}

/// Where state goes when nothing is configured: `data/` under the working directory.
/// The container image sets `DB_URL` and `STORAGE_PATH` under `/data` instead.
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        other => bail!("{name} must be true or false, got {other:?}"),
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let data_dir = default_data_dir();
        let uses_default_dir = var("DB_URL").is_none() || var("STORAGE_PATH").is_none();
        if uses_default_dir {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        }
        let data_dir = std::path::absolute(&data_dir)?;
        let db_url = var("DB_URL").unwrap_or_else(|| format!("sqlite:{}/hibernation.db?mode=rwc", data_dir.display()));
        let port = match var("PORT") {
            Some(p) => p.parse().with_context(|| format!("PORT must be a port number, got {p:?}"))?,
            None => 8000,
        };
        let site_url =
            var("SITE_URL").unwrap_or_else(|| format!("http://localhost:{port}")).trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&site_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
        if parsed.is_none() {
            bail!("SITE_URL must be the URL people open, such as https://cache.example.com, got {site_url:?}");
        }
        Ok(Self {
            db_url,
            database_logging: var("DATABASE_LOGGING")
                .map(|v| parse_bool("DATABASE_LOGGING", &v))
                .transpose()?
                .unwrap_or(false),
            storage_path: var("STORAGE_PATH").map(PathBuf::from).unwrap_or_else(|| data_dir.join("storage")),
            site_url,
            log_level: var("LOG_LEVEL").unwrap_or_else(|| "info".to_string()),
            port,
            virtual_host_routing: var("VIRTUAL_HOST_ROUTING")
                .map(|v| parse_bool("VIRTUAL_HOST_ROUTING", &v))
                .transpose()?
                .unwrap_or(false),
            metrics: metrics_from_env(port)?,
            smtp: smtp_from_env()?,
            oidc: oidc_from_env()?,
            trusted_proxies: match var("TRUSTED_PROXIES") {
                Some(list) => list
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| {
                        crate::web::client_address::Network::parse(s).with_context(|| {
                            format!("TRUSTED_PROXIES: {s:?} is not an address or network such as 10.0.0.0/8")
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                None => Vec::new(),
            },
            s3: s3_from_env()?,
            limits: limits_from_env()?,
            client_timeout: match var("CLIENT_TIMEOUT") {
                Some(text) => client_timeout(&text)?,
                None => std::time::Duration::from_secs(60),
            },
            lifecycle: lifecycle_from_env()?,
        })
    }

    /// The storage this names: S3 when S3_* is set, else the local directory.
    pub async fn open_storage(&self) -> anyhow::Result<crate::storage::Storage> {
        match &self.s3 {
            Some(s3) => crate::storage::Storage::s3(s3.clone(), &self.storage_path).await,
            None => crate::storage::Storage::local(&self.storage_path),
        }
    }

    /// What the HTTP layer needs of all this.
    pub fn site(&self) -> crate::web::Site {
        crate::web::Site {
            url: self.site_url.clone(),
            virtual_host_routing: self.virtual_host_routing,
            trusted_proxies: self.trusted_proxies.clone(),
            smtp: self.smtp.clone(),
            oidc: self.oidc.clone(),
            limits: self.limits,
            client_timeout: self.client_timeout,
            database: self.describe_database(),
            storage: self.describe_storage(),
        }
    }
}

/// Single sign-on is on when OIDC_ISSUER_URL is set; then the client id and secret are
/// required, and a partial set is an error, never a silent fallback to passwords only.
fn oidc_from_env() -> anyhow::Result<Option<crate::services::identity::oidc::OidcSettings>> {
    const OTHERS: [&str; 7] = [
        "OIDC_CLIENT_ID",
        "OIDC_CLIENT_SECRET",
        "OIDC_SCOPES",
        "OIDC_GROUPS_CLAIM",
        "OIDC_CREATE_USERS",
        "OIDC_ONLY",
        "OIDC_NAME",
    ];
    let Some(issuer_url) = var("OIDC_ISSUER_URL") else {
        if let Some(name) = OTHERS.into_iter().find(|n| var(n).is_some()) {
            bail!("{name} is set but OIDC_ISSUER_URL is not: set OIDC_ISSUER_URL too (or unset every OIDC_ variable)");
        }
        return Ok(None);
    };
    if !issuer_url.starts_with("https://") && !issuer_url.starts_with("http://") {
        bail!(
            "OIDC_ISSUER_URL must be the provider's URL, e.g. https://id.example.com/realms/main, got {issuer_url:?}"
        );
    }
    let required = |name: &str| var(name).with_context(|| format!("{name} is required with OIDC_ISSUER_URL"));
    let flag = |name: &str| var(name).map(|v| parse_bool(name, &v)).transpose().map(Option::unwrap_or_default);
    let scopes = var("OIDC_SCOPES").unwrap_or_else(|| "email profile".to_string());
    Ok(Some(crate::services::identity::oidc::OidcSettings {
        issuer_url: issuer_url.trim_end_matches('/').to_string(),
        client_id: required("OIDC_CLIENT_ID")?,
        client_secret: required("OIDC_CLIENT_SECRET")?,
        scopes: scopes.split([' ', ',']).filter(|s| !s.is_empty() && *s != "openid").map(str::to_string).collect(),
        groups_claim: var("OIDC_GROUPS_CLAIM"),
        create_users: flag("OIDC_CREATE_USERS")?,
        only: flag("OIDC_ONLY")?,
        display_name: var("OIDC_NAME").unwrap_or_else(|| "single sign-on".to_string()),
    }))
}

fn smtp_from_env() -> anyhow::Result<Option<crate::services::mail::SmtpSettings>> {
    use crate::services::mail::{Security, SmtpSettings};
    let Some(host) = var("SMTP_HOST") else {
        let stray = ["SMTP_PORT", "SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_FROM"]
            .into_iter()
            .find(|n| var(n).is_some());
        if let Some(name) = stray {
            bail!("{name} is set but SMTP_HOST is not: set SMTP_HOST too (or unset every SMTP_ variable)");
        }
        return Ok(None);
    };
    let security = match var("SMTP_SECURITY") {
        Some(text) => Security::parse(&text)
            .with_context(|| format!("SMTP_SECURITY must be none, starttls or tls, got {text:?}"))?,
        None => Security::StartTls,
    };
    let port = match var("SMTP_PORT") {
        Some(p) => p.parse().with_context(|| format!("SMTP_PORT must be a port number, got {p:?}"))?,
        None => security.default_port(),
    };
    let settings = SmtpSettings {
        host,
        port,
        security,
        username: var("SMTP_USERNAME"),
        password: var("SMTP_PASSWORD"),
        from: var("SMTP_FROM")
            .context("SMTP_FROM is required with SMTP_HOST, e.g. \"Hibernation <cache@example.com>\"")?,
    };
    settings.validate().map_err(|(field, message)| anyhow::anyhow!("SMTP settings ({field}): {message}"))?;
    Ok(Some(settings))
}

fn metrics_from_env(main_port: u16) -> anyhow::Result<Option<MetricsConfig>> {
    let enabled = var("METRICS_ENABLED").map(|v| parse_bool("METRICS_ENABLED", &v)).transpose()?.unwrap_or(false);
    if !enabled {
        return Ok(None);
    }
    let name = var("METRICS_NAME").unwrap_or_else(|| "hibernation".to_string());
    let port = match var("METRICS_PORT") {
        Some(p) => Some(p.parse::<u16>().with_context(|| format!("METRICS_PORT must be a port number, got {p:?}"))?),
        None => None,
    };
    if port == Some(main_port) {
        bail!("METRICS_PORT must differ from PORT ({main_port}); leave it unset to serve /metrics on PORT");
    }
    Ok(Some(MetricsConfig { name, port }))
}

/// S3 is used when its variables are set; a partial set is an error, never a silent fallback.
fn s3_from_env() -> anyhow::Result<Option<S3Config>> {
    const REQUIRED: [&str; 4] = ["S3_HOST", "S3_BUCKET", "S3_ACCESS_KEY", "S3_SECRET_KEY"];
    let values: Vec<Option<String>> = REQUIRED.iter().map(|n| var(n)).collect();
    let any_s3 =
        values.iter().any(Option::is_some) || var("S3_REGION").is_some() || var("S3_FORCE_PATH_STYLE").is_some();
    if !any_s3 {
        return Ok(None);
    }
    let missing: Vec<&str> = REQUIRED.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
    if !missing.is_empty() {
        bail!("S3 storage is partly configured: set {} as well (or unset every S3_ variable)", missing.join(", "));
    }
    let [host, bucket, access_key, secret_key] =
        <[Option<String>; 4]>::try_from(values).expect("four values").map(Option::unwrap);
    if !host.starts_with("http://") && !host.starts_with("https://") {
        bail!("S3_HOST must be a URL such as https://s3.example.com, got {host:?}");
    }
    Ok(Some(S3Config {
        host: host.trim_end_matches('/').to_string(),
        access_key,
        secret_key,
        region: var("S3_REGION").unwrap_or_else(|| "us-east-1".to_string()),
        bucket,
        force_path_style: var("S3_FORCE_PATH_STYLE")
            .map(|v| parse_bool("S3_FORCE_PATH_STYLE", &v))
            .transpose()?
            .unwrap_or(false),
    }))
}

/// A lifetime such as `90d`, `12h`, `30m` or `45s` (admin options and environment).
/// CLIENT_TIMEOUT: seconds (`60`) or a duration like the other timings (`60s`, `2m`).
fn client_timeout(text: &str) -> anyhow::Result<std::time::Duration> {
    match hibernation::human::parse_lifetime_seconds(text) {
        Some(seconds) if seconds > 0 => Ok(std::time::Duration::from_secs(seconds as u64)),
        _ => bail!("CLIENT_TIMEOUT must be a duration above zero such as 60, 60s or 2m, got {text:?}"),
    }
}

pub fn parse_lifetime(text: &str) -> anyhow::Result<chrono::Duration> {
    use hibernation::human::{LIFETIME_RULE, parse_lifetime_seconds};
    let seconds =
        parse_lifetime_seconds(text).with_context(|| format!("invalid lifetime {text:?}: {LIFETIME_RULE}"))?;
    Ok(chrono::Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::{client_timeout, decompression_memory, parse_lifetime, parse_size};

    #[test]
    fn client_timeouts_take_seconds_or_durations() {
        assert_eq!(client_timeout("60").unwrap().as_secs(), 60);
        assert_eq!(client_timeout("15s").unwrap().as_secs(), 15);
        assert_eq!(client_timeout(" 2m ").unwrap().as_secs(), 120);
        for bad in ["0", "0s", "", "soon", "-5", "5w"] {
            let error = client_timeout(bad).unwrap_err().to_string();
            assert!(error.contains("CLIENT_TIMEOUT must be a duration above zero"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_decompression_budget_holds_at_least_one_upload() {
        assert_eq!(decompression_memory(512 << 20).unwrap(), 512 << 20);
        let error = decompression_memory(64 << 20).unwrap_err().to_string();
        assert!(error.contains("DECOMPRESSION_MEMORY must be at least 131.0 MiB"), "{error}");
    }

    #[test]
    fn lifetimes_take_days_hours_minutes_or_seconds() {
        assert_eq!(parse_lifetime("90d").unwrap(), chrono::Duration::days(90));
        assert_eq!(parse_lifetime("12h").unwrap(), chrono::Duration::hours(12));
        assert_eq!(parse_lifetime("5").unwrap(), chrono::Duration::seconds(5));
        assert!(parse_lifetime("soon").is_err());
        assert!(parse_lifetime("5w").is_err());
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("X", "1024").unwrap(), 1024);
        assert_eq!(parse_size("X", "512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("X", "16GiB").unwrap(), 16 << 30);
        assert_eq!(parse_size("X", "2 t").unwrap(), 2 << 40);
        for bad in ["", "0", "12Q", "-1G", "G", "99999999999T"] {
            let err = parse_size("MAX_NAR_SIZE", bad).unwrap_err().to_string();
            assert!(err.contains("MAX_NAR_SIZE"), "{bad:?}: {err}");
        }
    }
}
