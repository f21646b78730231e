//! The store paths the soak pushes: `roots` closures that share their leaves, so pushers
//! race on the same paths, with incompressible data of varied sizes.

use crate::support::nix::{nix, run_ok};

pub const LEAVES: usize = 24;

/// A root and its closure (itself, its three leaves), as full store paths.
#[derive(Clone, Debug)]
pub struct Root {
    pub path: String,
    pub closure: Vec<String>,
}

/// Builds `roots` roots over [`LEAVES`] shared leaves with `nix-build` (unique per run).
pub fn build(tag: &str, roots: usize) -> Vec<Root> {
    let dir = tempfile::tempdir().unwrap();
    let expr = format!(
        r#"let
  sh = script: ["-c" script];
  leaf = i: derivation {{ name = "soak-leaf-${{toString i}}-{tag}"; system = builtins.currentSystem; builder = "/bin/sh";
    args = sh "/usr/bin/head -c ${{toString (512 + i * 4096)}} /dev/urandom > $out"; }};
  leaves = builtins.genList leaf {LEAVES};
  pick = n: builtins.elemAt leaves (n - {LEAVES} * (n / {LEAVES}));
  root = i: derivation {{ name = "soak-root-${{toString i}}-{tag}"; system = builtins.currentSystem; builder = "/bin/sh";
    a = pick i; b = pick (i * 7 + 3); c = pick (i * 13 + 5);
    args = sh "/usr/bin/mkdir $out; echo $a $b $c > $out/uses; /usr/bin/head -c ${{toString (1024 + i * 1500)}} /dev/urandom > $out/data"; }};
in builtins.genList root {roots}"#
    );
    let file = dir.path().join("soak.nix");
    std::fs::write(&file, expr).unwrap();
    let built = run_ok(nix(&["nix-build", "--no-out-link", "--max-jobs", "4", file.to_str().unwrap()]));
    built
        .lines()
        .map(|root| {
            let closure = run_ok(nix(&["nix-store", "--query", "--requisites", root]));
            Root { path: root.to_string(), closure: closure.lines().map(String::from).collect() }
        })
        .collect()
}
