//! `hibernation use <cache>`: make this machine's Nix substitute from a cache, by adding the
//! substituter and its keys to the user's `nix.conf` and, for a private cache, the token to a
//! netrc file. Running it twice changes nothing the second time.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use reqwest::Url;

use crate::api::CacheInfo;
use crate::nix::PublicKey;

/// The user's `nix.conf`: `$XDG_CONFIG_HOME/nix/nix.conf`, or `~/.config/nix/nix.conf`.
pub fn user_nix_conf() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --nix-conf <file>")?).join(".config")
        }
    };
    Ok(base.join("nix").join("nix.conf"))
}

/// The values of every `name = ...` and `extra-name = ...` line.
fn setting_values(text: &str, name: &str) -> Vec<String> {
    let extra = format!("extra-{name}");
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default();
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            (key == name || key == extra).then(|| value.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// The `netrc-file` the configuration sets, if any.
pub fn netrc_file_setting(text: &str) -> Option<String> {
    setting_values(text, "netrc-file").pop()
}

/// `text` with the lines that make Nix use `substituters` trusting `keys` (and read
/// `netrc_file` when given and not yet set); lines already present are not repeated.
pub fn add_to_nix_conf(text: &str, substituters: &[String], keys: &[String], netrc_file: Option<&Path>) -> String {
    let mut additions = Vec::new();
    // What is configured, and grows with what is added, so nothing is added twice.
    let mut configured: Vec<String> =
        setting_values(text, "substituters").iter().map(|s| s.trim_end_matches('/').to_string()).collect();
    for substituter in substituters {
        let bare = substituter.trim_end_matches('/');
        if !configured.iter().any(|s| s == bare) {
            configured.push(bare.to_string());
            additions.push(format!("extra-substituters = {substituter}"));
        }
    }
    let mut trusted = setting_values(text, "trusted-public-keys");
    for key in keys {
        if !trusted.contains(key) {
            trusted.push(key.clone());
            additions.push(format!("extra-trusted-public-keys = {key}"));
        }
    }
    if let Some(netrc) = netrc_file
        && netrc_file_setting(text).is_none()
    {
        additions.push(format!("netrc-file = {}", netrc.display()));
    }
    if additions.is_empty() {
        return text.to_string();
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&additions.join("\n"));
    out.push('\n');
    out
}

/// `text` with a `machine <host> ... password <token>` line for `host`, replacing an older
/// one-line entry for the same host.
pub fn add_to_netrc(text: &str, host: &str, token: &str) -> String {
    let entry = format!("machine {host} login hibernation password {token}");
    let mut replaced = false;
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            if words.next() == Some("machine") && words.next() == Some(host) {
                replaced = true;
                entry.clone()
            } else {
                line.to_string()
            }
        })
        .collect();
    if !replaced {
        lines.push(entry);
    }
    lines.join("\n") + "\n"
}

/// The host part of a substituter URL, as netrc names it (no port).
pub fn netrc_host(substituter: &str) -> anyhow::Result<String> {
    let url = Url::parse(substituter).with_context(|| format!("the server gave an invalid URL {substituter:?}"))?;
    url.host_str().map(str::to_string).with_context(|| format!("{substituter} has no host"))
}

fn read_or_empty(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `text` to `path` (creating its directory), with `mode` for new files; unchanged
/// text is not written. Returns whether the file changed.
pub fn write_if_changed(path: &Path, old: &str, text: &str, mode: u32) -> std::io::Result<bool> {
    if old == text {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("hibernation-tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

/// What `use` would write, for a person to add by hand where it cannot.
pub struct Plan {
    pub nix_conf: PathBuf,
    pub nix_conf_old: String,
    pub nix_conf_new: String,
    /// The netrc file, its old and new text (private caches only).
    pub netrc: Option<(PathBuf, String, String)>,
}

/// What the server says to add, checked: a URL and keys cannot smuggle in other settings.
fn checked(info: &CacheInfo) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut substituters = vec![info.substituter.clone()];
    substituters.extend(info.upstreams.iter().map(|u| u.url.clone()));
    let mut keys = info.public_keys.clone();
    keys.extend(info.upstreams.iter().flat_map(|u| u.public_keys.clone()));
    for url in &substituters {
        let parsed = Url::parse(url).with_context(|| format!("the server gave an invalid URL {url:?}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("the server gave an unusable substituter URL {url:?}");
        }
    }
    for key in &keys {
        PublicKey::parse(key).with_context(|| format!("the server gave an invalid public key {key:?}"))?;
    }
    Ok((substituters, keys))
}

/// Works out the new `nix.conf` (and netrc) for using the cache described by `info`: its
/// substituter and keys, and those of its upstreams, which serve the paths it skipped.
pub fn plan(nix_conf: PathBuf, info: &CacheInfo, private_token: Option<&str>) -> anyhow::Result<Plan> {
    let (substituters, keys) = checked(info)?;
    let substituter = info.substituter.as_str();
    // Write through a symlinked nix.conf to the file it names.
    let nix_conf = std::fs::canonicalize(&nix_conf).unwrap_or(nix_conf);
    let old = read_or_empty(&nix_conf)?;
    let netrc = match private_token {
        Some(token) => {
            let path = match netrc_file_setting(&old) {
                Some(set) => PathBuf::from(set),
                None => nix_conf.with_file_name("netrc"),
            };
            let old_netrc = read_or_empty(&path)?;
            let new_netrc = add_to_netrc(&old_netrc, &netrc_host(substituter)?, token);
            Some((path, old_netrc, new_netrc))
        }
        None => None,
    };
    let nix_conf_new = add_to_nix_conf(&old, &substituters, &keys, netrc.as_ref().map(|(p, _, _)| p.as_path()));
    Ok(Plan { nix_conf, nix_conf_old: old, nix_conf_new, netrc })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "main-1:0Rz0AyLGLvrdLvDn5cBEn6TLgSpTtEZcuV0cqiqoZHs=";

    #[test]
    fn adds_substituter_and_keys_once() {
        let main = ["http://c/api/nix/main".to_string()];
        let first = add_to_nix_conf("max-jobs = 4", &main, &[KEY.into()], None);
        assert_eq!(
            first,
            format!("max-jobs = 4\nextra-substituters = http://c/api/nix/main\nextra-trusted-public-keys = {KEY}\n")
        );
        assert_eq!(add_to_nix_conf(&first, &main, &[KEY.into()], None), first);
        let other = add_to_nix_conf(&first, &["http://c/api/nix/other".to_string()], &[KEY.into()], None);
        let twice = add_to_nix_conf("", &[main[0].clone(), format!("{}/", main[0])], &[KEY.into(), KEY.into()], None);
        assert_eq!(twice.lines().count(), 2, "a substituter or key given twice is added once: {twice}");
        assert!(other.ends_with("extra-substituters = http://c/api/nix/other\n"), "{other}");
    }

    #[test]
    fn respects_settings_already_there() {
        let text = format!(
            "substituters = https://cache.nixos.org http://c/api/nix/main/\ntrusted-public-keys = {KEY} # ours\n"
        );
        assert_eq!(add_to_nix_conf(&text, &["http://c/api/nix/main".into()], &[KEY.into()], Some(Path::new("/n"))), {
            let mut t = text.clone();
            t.push_str("netrc-file = /n\n");
            t
        });
        assert_eq!(netrc_file_setting("netrc-file = /etc/nix/netrc\n").as_deref(), Some("/etc/nix/netrc"));
    }

    #[test]
    fn server_answers_cannot_inject_settings() {
        let info = |substituter: &str, key: &str| CacheInfo {
            name: "main".into(),
            public: true,
            priority: 41,
            substituter: substituter.into(),
            public_keys: vec![key.into()],
            upstreams: vec![crate::api::Upstream::default_upstream()],
            allow_force_push: false,
            can_push: false,
            paths: None,
            stored_bytes: None,
            quota_bytes: None,
        };
        let (substituters, keys) = checked(&info("http://c/api/nix/main", KEY)).unwrap();
        assert_eq!(substituters, ["http://c/api/nix/main", "https://cache.nixos.org"], "upstreams too");
        assert_eq!(keys.len(), 2);
        assert!(checked(&info("http://c/x\npost-build-hook = /evil", KEY)).is_err());
        assert!(checked(&info("file:///etc", KEY)).is_err());
        assert!(checked(&info("http://c/api/nix/main", "k:AAAA\npost-build-hook = /evil")).is_err());
    }

    #[test]
    fn netrc_entries_are_replaced_not_repeated() {
        let once = add_to_netrc("machine other password x\n", "c.example", "hib_1");
        assert_eq!(once, "machine other password x\nmachine c.example login hibernation password hib_1\n");
        let twice = add_to_netrc(&once, "c.example", "hib_2");
        assert_eq!(twice, "machine other password x\nmachine c.example login hibernation password hib_2\n");
        assert_eq!(netrc_host("http://c.example:8080/api/nix/main").unwrap(), "c.example");
    }
}
