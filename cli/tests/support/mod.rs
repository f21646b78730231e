//! What the format tests share: stock Nix unpacking a NAR.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Unpacks `nar` with stock Nix into a new directory; the restored root, or Nix's complaint.
pub fn restore_with_nix(nar: &[u8], dir: &tempfile::TempDir) -> Result<PathBuf, String> {
    let root = dir.path().join("root");
    let mut child = Command::new("nix-store")
        .arg("--restore")
        .arg(&root)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nix-store runs (the test command installs nix-bin)");
    child.stdin.take().unwrap().write_all(nar).unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() { Ok(root) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}
