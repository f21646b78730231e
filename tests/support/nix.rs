//! The real Nix client: building test closures, keys, substituting into fresh stores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::output_text;

/// No default substituter (no network here), and the `nix` command enabled. Builds run as
/// the test user without build users or a sandbox: `nix-bin` installed without its
/// recommends has no `nixbld` group, and the test derivations use the host's `/bin/sh`.
pub const NIX_CONFIG: &str = "substituters =\nexperimental-features = nix-command\nnarinfo-cache-negative-ttl = 0\nnarinfo-cache-positive-ttl = 0\nbuild-users-group =\nsandbox = false";

pub fn nix(args: &[&str]) -> Command {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]).env("NIX_CONFIG", NIX_CONFIG);
    cmd
}

pub fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is nix-bin installed?)"));
    assert!(out.status.success(), "{cmd:?} failed: {}", output_text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A signing key pair made by `nix key`.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub secret_file: PathBuf,
    pub public: String,
}

impl Keys {
    pub fn generate(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let secret = run_ok(nix(&["nix", "key", "generate-secret", "--key-name", name]));
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, &secret).unwrap();
        let mut convert = nix(&["nix", "key", "convert-secret-to-public"]);
        convert.stdin(std::fs::File::open(&secret_file).unwrap());
        let public = run_ok(convert);
        Self { dir, secret_file, public }
    }

    pub fn secret_path(&self) -> &str {
        self.secret_file.to_str().unwrap()
    }
}

/// A closure built by `nix-build`: `app` (a directory with an executable, a symlink, an
/// empty directory and a data file) referencing `dep`.
pub struct Closure {
    pub app: String,
    pub dep: String,
}

impl Closure {
    /// `tag` makes the paths unique to a test.
    pub fn build(tag: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let expr = format!(
            r##"let dep = derivation {{ name = "dep-{tag}"; system = builtins.currentSystem; builder = "/bin/sh"; args = ["-c" "echo dependency {tag} > $out"]; }};
in derivation {{ name = "app-{tag}"; system = builtins.currentSystem; builder = "/bin/sh"; inherit dep;
  args = ["-c" ''
    echo building {tag}
    /usr/bin/mkdir -p $out/bin $out/share/empty
    echo "#!/bin/sh" > $out/bin/app; echo "cat $dep" >> $out/bin/app; /usr/bin/chmod +x $out/bin/app
    /usr/bin/ln -s ../bin/app $out/share/link
    /usr/bin/seq 1 20000 > $out/share/data
  '']; }}"##
        );
        let file = dir.path().join("closure.nix");
        std::fs::write(&file, expr).unwrap();
        let app = run_ok(nix(&["nix-build", "--no-out-link", file.to_str().unwrap()]));
        let refs = run_ok(nix(&["nix-store", "--query", "--references", &app]));
        let dep = refs.lines().find(|l| l.contains("-dep-")).expect("app references dep").to_string();
        Self { app, dep }
    }

    pub fn paths(&self) -> [&str; 2] {
        [&self.dep, &self.app]
    }
}

/// A Nix client with its own store, narinfo cache and netrc.
pub struct NixClient {
    pub dir: tempfile::TempDir,
}

impl NixClient {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn store(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn netrc_path(&self) -> PathBuf {
        self.dir.path().join("netrc")
    }

    pub fn write_netrc(&self, host: &str, token: &str) {
        std::fs::write(self.netrc_path(), format!("machine {host} login hibernation password {token}\n")).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = nix(args);
        cmd.env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .arg("--option")
            .arg("netrc-file")
            .arg(self.netrc_path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `nix copy --from <cache> --to <fresh store> <paths>` trusting `public_key`.
    pub fn copy_from(&self, cache_url: &str, store: &Path, public_key: &str, paths: &[&str]) -> Output {
        let mut args = vec![
            "nix",
            "copy",
            "--from",
            cache_url,
            "--to",
            store.to_str().unwrap(),
            "--option",
            "trusted-public-keys",
            public_key,
        ];
        args.extend_from_slice(paths);
        self.run(&args)
    }

    /// `nix-store --realise` into a fresh store with only this cache as substituter.
    pub fn realise(&self, cache_url: &str, store: &Path, public_key: &str, path: &str) -> Output {
        self.run(&[
            "nix-store",
            "--store",
            store.to_str().unwrap(),
            "--realise",
            path,
            "--option",
            "substituters",
            cache_url,
            "--option",
            "trusted-public-keys",
            public_key,
        ])
    }

    pub fn verify(&self, store: &Path, public_key: &str, path: &str) -> Output {
        self.run(&[
            "nix",
            "store",
            "verify",
            "--store",
            store.to_str().unwrap(),
            "-r",
            "--option",
            "trusted-public-keys",
            public_key,
            path,
        ])
    }
}

/// Adds a file of `size` pseudo-random (incompressible) bytes, from `seed`, to the store;
/// returns its store path, named `name`.
pub fn add_random_file(size: usize, seed: u64, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    let mut state = seed;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&file, data).unwrap();
    run_ok(nix(&["nix-store", "--add", file.to_str().unwrap()]))
}
