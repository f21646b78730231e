//! Reads path metadata from the local Nix store through `nix path-info --json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::nix::{NarHash, STORE_DIR, StorePath};

/// What the CLI needs to know about a local path to push it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPath {
    pub path: StorePath,
    pub nar_hash: NarHash,
    pub nar_size: u64,
    pub references: Vec<StorePath>,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    pub signatures: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathInfoJson {
    path: Option<String>,
    nar_hash: String,
    nar_size: u64,
    #[serde(default)]
    references: Vec<String>,
    deriver: Option<String>,
    ca: Option<String>,
    #[serde(default)]
    signatures: Vec<String>,
}

/// Turns a user argument (a store path, a path inside one, or a `result` symlink) into the
/// store path it names.
pub fn resolve_argument(arg: &str) -> anyhow::Result<StorePath> {
    let trimmed = arg.trim();
    let candidate = if trimmed.starts_with(STORE_DIR) {
        trimmed.to_string()
    } else {
        let resolved = std::fs::canonicalize(trimmed).with_context(|| {
            format!("{trimmed} does not exist: give a store path such as {STORE_DIR}/<hash>-<name>")
        })?;
        resolved.to_string_lossy().into_owned()
    };
    let rest = candidate
        .strip_prefix(&format!("{STORE_DIR}/"))
        .with_context(|| format!("{trimmed} is not in the Nix store {STORE_DIR}"))?;
    let base = rest.split('/').next().unwrap_or_default();
    StorePath::from_base_name(base).with_context(|| format!("{trimmed} is not a valid store path"))
}

/// Parses `nix path-info --json` output: a list (Nix < 2.19) or an object keyed by path.
pub fn parse_path_info(json: &str) -> anyhow::Result<Vec<LocalPath>> {
    let value: serde_json::Value = serde_json::from_str(json).context("nix path-info printed invalid JSON")?;
    let entries: Vec<(Option<String>, PathInfoJson)> = match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| serde_json::from_value::<PathInfoJson>(v).map(|p| (None, p)))
            .collect::<Result<_, _>>()?,
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| serde_json::from_value::<PathInfoJson>(v).map(|p| (Some(k), p)))
            .collect::<Result<_, _>>()?,
        _ => bail!("unexpected output from nix path-info"),
    };
    entries
        .into_iter()
        .map(|(key, info)| {
            let path_text = key.or(info.path).context("nix path-info entry without a path")?;
            let base_of = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
            Ok(LocalPath {
                path: StorePath::parse(&path_text)?,
                nar_hash: NarHash::parse(&info.nar_hash)?,
                nar_size: info.nar_size,
                references: info.references.iter().map(|r| StorePath::parse(r)).collect::<Result<_, _>>()?,
                deriver: info.deriver.as_deref().map(base_of),
                ca: info.ca,
                signatures: info.signatures,
            })
        })
        .collect()
}

/// Path metadata for `paths`, with their whole closure when `recursive`.
pub fn query_paths(paths: &[StorePath], recursive: bool) -> anyhow::Result<BTreeMap<StorePath, LocalPath>> {
    if let Some(missing) = paths.iter().find(|p| !fs_path(p).exists()) {
        bail!("{missing} is not valid: it is not in the local Nix store (build or fetch it first)");
    }
    let mut command = Command::new("nix");
    command.args(["--extra-experimental-features", "nix-command", "path-info", "--json"]);
    if recursive {
        command.arg("--recursive");
    }
    command.args(paths.iter().map(StorePath::full_path));
    let output = command.output().context("cannot run `nix`: is Nix installed and on PATH?")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let reason = lines.iter().rev().find(|l| l.starts_with("error:")).or(lines.first()).copied();
        bail!("nix path-info failed: {}", reason.unwrap_or("no message").trim_start_matches("error: "));
    }
    let infos = parse_path_info(&String::from_utf8_lossy(&output.stdout))?;
    Ok(infos.into_iter().map(|i| (i.path.clone(), i)).collect())
}

/// The directory holding a store path's contents.
pub fn fs_path(path: &StorePath) -> std::path::PathBuf {
    Path::new(STORE_DIR).join(path.base_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    // `nix path-info --json` of Nix 2.8 (a list with SRI hashes and full deriver paths).
    const NIX_2_8: &str = r#"[{"path":"/nix/store/b3f3rwivll1609w9bk8r6r18s0fqlwgd-app-1.0","narHash":"sha256-v2sGZolN/vtBj7ZWMIjOZBW6Emf0lVd6QMEoOoCuMpw=","narSize":3264,"references":["/nix/store/56wl2m2q4pck0n6hclmqrsm3la18x1l9-dep"],"deriver":"/nix/store/r8688abvlbqwnhng7paa99zivz9nw7sn-app-1.0.drv","registrationTime":1795846746,"ultimate":true,"signatures":["test-1:oReDviVVbJaL+F8903LJKOeBCF4hkuOjWkmPOPm7Y6zkrrZmEM+1OtZ7FkFc+nk9pG2AzpqBERt5WfEvcsrqCA=="]}]"#;

    #[test]
    fn parses_list_output() {
        let paths = parse_path_info(NIX_2_8).unwrap();
        assert_eq!(paths.len(), 1);
        let p = &paths[0];
        assert_eq!(p.path.name(), "app-1.0");
        assert_eq!(p.nar_size, 3264);
        assert_eq!(p.references[0].name(), "dep");
        assert_eq!(p.deriver.as_deref(), Some("r8688abvlbqwnhng7paa99zivz9nw7sn-app-1.0.drv"));
        // The same NarHash as the narinfo Nix wrote for this path.
        assert_eq!(p.nar_hash.to_string(), "sha256:171jms03la6181x5g5glcw9bl5b4rs430mmnix0zpzjdi5k0csxz");
        assert_eq!(p.signatures.len(), 1);
    }

    #[test]
    fn parses_object_output_of_newer_nix() {
        let newer = r#"{"/nix/store/56wl2m2q4pck0n6hclmqrsm3la18x1l9-dep":{"narHash":"sha256:13w19wwvpfqyfq1fixzqjphj7dil4vlv9gada02f9kpl04qnmkw4","narSize":128,"references":[],"deriver":null,"ca":null}}"#;
        let paths = parse_path_info(newer).unwrap();
        assert_eq!(paths[0].path.name(), "dep");
        assert!(paths[0].signatures.is_empty());
    }

    #[test]
    fn resolves_arguments() {
        let p = resolve_argument("/nix/store/56wl2m2q4pck0n6hclmqrsm3la18x1l9-dep/bin/x").unwrap();
        assert_eq!(p.base_name(), "56wl2m2q4pck0n6hclmqrsm3la18x1l9-dep");
        assert!(resolve_argument("/nonexistent-hibernation").unwrap_err().to_string().contains("does not exist"));
        assert!(resolve_argument("/tmp").unwrap_err().to_string().contains("not in the Nix store"));
    }
}
