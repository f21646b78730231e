//! Where the CLI keeps the server URL and token: `$XDG_CONFIG_HOME/hibernation/config.json`
//! (or `~/.config/...`), readable only by its owner. `HIBERNATION_CONFIG` overrides the path.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Config {
    pub url: Option<String>,
    pub token: Option<String>,
}

pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HIBERNATION_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; set HIBERNATION_CONFIG")?).join(".config")
        }
    };
    Ok(base.join("hibernation").join("config.json"))
}

impl Config {
    pub fn load() -> anyhow::Result<Self> {
        let path = config_path()?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the file with mode 0600 (it holds a secret), replacing it atomically.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = config_path()?;
        let dir = path.parent().context("config path has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// The server URL and token to use: flags and environment first, then the file.
    pub fn resolve(url: Option<String>, token: Option<String>) -> anyhow::Result<(String, Option<String>)> {
        let file = Self::load()?;
        let Some(url) = url.or(file.url) else {
            bail!("no server URL: run `hibernation login <url> --token <token>` or set HIBERNATION_URL");
        };
        let token = token.filter(|t| !t.trim().is_empty());
        Ok((url, token.or(file.token)))
    }
}
