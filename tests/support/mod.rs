//! Test harness: real components only. Starts `hibernation-server` on SQLite or on a
//! throwaway PostgreSQL cluster, runs the `hibernation` CLI, and drives the real Nix client.

#![allow(dead_code)]

pub mod browser;
pub mod nix;
pub mod oidc;
pub mod postgres;
pub mod s3;
pub mod smtp;
pub mod web;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use self::nix::{Closure, Keys, NixClient};
pub use self::postgres::Postgres;
pub use self::s3::S3Server;

/// Generates one test per database backend from `fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $name() { super::$name($crate::support::Backend::Sqlite) } )* }
        mod postgres { $( #[test] fn $name() { super::$name($crate::support::Backend::Postgres) } )* }
    };
}

/// Generates one test per {SQLite, PostgreSQL} x {local disk, S3} combination.
#[macro_export]
macro_rules! on_full_matrix {
    ($($name:ident),* $(,)?) => {
        mod sqlite_local { $( #[test] fn $name() { super::$name($crate::support::Backend::Sqlite) } )* }
        mod postgres_local { $( #[test] fn $name() { super::$name($crate::support::Backend::Postgres) } )* }
        mod sqlite_s3 { $( #[test] fn $name() { super::$name($crate::support::Backend::SqliteS3) } )* }
        mod postgres_s3 { $( #[test] fn $name() { super::$name($crate::support::Backend::PostgresS3) } )* }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    SqliteS3,
    PostgresS3,
}

impl Backend {
    pub fn postgres(self) -> bool {
        matches!(self, Self::Postgres | Self::PostgresS3)
    }

    pub fn s3(self) -> bool {
        matches!(self, Self::SqliteS3 | Self::PostgresS3)
    }
}

/// A tag no earlier run used, so that `nix-build` makes new store paths.
pub fn unique_tag(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{nanos}")
}

/// Polls `done` until it holds; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &Child) {
    signal(child, "TERM");
}

/// Sends a signal (`TERM`, `INT`, ...) to a child process.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `target/<profile>/<name>`, next to the test executable's `deps/` directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` before the tests", path.display());
    path
}

pub fn output_text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A running server with its own data directory and database.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub db_url: String,
    child: Child,
    pub postgres: Option<Postgres>,
    pub s3: Option<S3Server>,
    /// Environment set after the defaults (so it can replace them).
    extra_env: Vec<(String, String)>,
}

/// How a [`Server`] starts: its backend, extra environment, and storage.
pub struct ServerBuilder {
    backend: Backend,
    env: Vec<(String, String)>,
    /// `Some(None)`: local storage even on an S3 backend; `Some(Some(s3))`: an S3 server the
    /// caller started; `None`: what the backend says.
    s3: Option<Option<S3Server>>,
}

impl ServerBuilder {
    /// Extra environment, set after the defaults (so it can replace them); `{port}` in a
    /// value becomes the server's port.
    pub fn env(mut self, env: &[(&str, &str)]) -> Self {
        self.env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// An S3 server the caller started (`None`: local storage).
    pub fn storage(mut self, s3: Option<S3Server>) -> Self {
        self.s3 = Some(s3);
        self
    }

    pub fn start(self) -> Server {
        Server::start_from(self)
    }
}

impl Server {
    /// A server on `backend` with the defaults: [`Server::builder`] for more.
    pub fn start(backend: Backend) -> Self {
        Self::builder(backend).start()
    }

    /// A server to set up before it starts: `.env(..)`, `.storage(..)`, then `.start()`.
    pub fn builder(backend: Backend) -> ServerBuilder {
        ServerBuilder { backend, env: Vec::new(), s3: None }
    }

    fn start_from(builder: ServerBuilder) -> Self {
        let ServerBuilder { backend, env, s3 } = builder;
        let s3 = s3.unwrap_or_else(|| backend.s3().then(S3Server::start));
        let dir = tempfile::tempdir().unwrap();
        let postgres = backend.postgres().then(Postgres::start);
        let db_url = match &postgres {
            Some(pg) => pg.url.clone(),
            None => format!("sqlite:{}/hibernation.db?mode=rwc", dir.path().display()),
        };
        let port = free_port();
        let extra_env = env.into_iter().map(|(k, v)| (k, v.replace("{port}", &port.to_string()))).collect();
        let mut server = Self { child: spawn_placeholder(), dir, port, db_url, postgres, s3, extra_env };
        server.launch();
        server
    }

    /// A second server process on the same database and storage (its own directory for
    /// temporary files), as behind a load balancer.
    pub fn sibling(&self) -> Self {
        let s3 = self.s3.as_ref().expect("siblings share S3 storage");
        assert!(self.postgres.is_some(), "siblings share PostgreSQL");
        let mut other = Self {
            child: spawn_placeholder(),
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            db_url: self.db_url.clone(),
            postgres: None,
            s3: None,
            // The shared S3 server's settings go with it, so a restart keeps them.
            extra_env: self
                .extra_env
                .iter()
                .cloned()
                .chain(s3.env().into_iter().map(|(k, v)| (k.to_string(), v)))
                .collect(),
        };
        other.launch();
        other
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.log_path()).unwrap();
        self.child = self.command(None).stdout(Stdio::null()).stderr(log).spawn().unwrap();
        self.wait_ready();
    }

    /// Kills the process (as a crash would) and starts it again on the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Kills the process; [`Server::resume`] starts it again on the same port and state.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn resume(&mut self) {
        self.launch();
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn storage_path(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The most memory the server process has held so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Runs one SQL statement on the server's database (to set up states the API cannot
    /// reach: expired links, leftovers of a crash).
    pub fn sql(&self, statement: &str) {
        use diesel::{Connection, RunQueryDsl};
        match &self.postgres {
            Some(pg) => {
                let mut conn = diesel::PgConnection::establish(&pg.url).unwrap();
                diesel::sql_query(statement).execute(&mut conn).unwrap();
            }
            None => {
                let path = self.dir.path().join("hibernation.db");
                let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                diesel::sql_query(statement).execute(&mut conn).unwrap();
            }
        }
    }

    /// The number a `SELECT COUNT(*) AS n ...` query returns.
    pub fn count(&self, query: &str) -> i64 {
        use diesel::{Connection, RunQueryDsl};
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Count> = match &self.postgres {
            Some(pg) => {
                let mut conn = diesel::PgConnection::establish(&pg.url).unwrap();
                diesel::sql_query(query).load(&mut conn).unwrap()
            }
            None => {
                let path = self.dir.path().join("hibernation.db");
                let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
                diesel::sql_query(query).load(&mut conn).unwrap()
            }
        };
        rows.first().map_or(0, |row| row.n)
    }

    /// Holds the garbage-collection lock as another server process collecting would, until
    /// the returned guard drops.
    pub fn hold_gc_lock(&self) -> Box<dyn std::any::Any> {
        use diesel::{Connection, RunQueryDsl};
        match &self.postgres {
            Some(pg) => {
                let mut conn = diesel::PgConnection::establish(&pg.url).unwrap();
                diesel::sql_query("SELECT pg_advisory_lock(7305553002)").execute(&mut conn).unwrap();
                Box::new(conn)
            }
            None => {
                use std::os::fd::AsRawFd;
                let path = self.dir.path().join("hibernation.db.gc.lock");
                let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).unwrap();
                // SAFETY: flock on a descriptor owned here.
                assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
                Box::new(file)
            }
        }
    }

    /// Where stored objects live as files: the storage directory, or the S3 bucket's.
    pub fn object_dir(&self) -> PathBuf {
        match &self.s3 {
            Some(s3) => s3.bucket_dir(),
            None => self.storage_path(),
        }
    }

    /// `admin create-user <login> --email <email> --password-stdin`, which must succeed.
    pub fn create_user_with_password(&self, login: &str, email: &str, password: &str) {
        use std::io::Write;
        let mut create = self.command(Some(&["admin", "create-user", login, "--email", email, "--password-stdin"]));
        let mut child = create.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        assert!(child.wait().unwrap().success(), "creating user {login} failed");
    }

    /// The one-time setup code a fresh server prints in its log.
    pub fn setup_code(&self) -> String {
        let log = self.log();
        let start = log.find("setup code ").expect("a fresh server prints its setup code") + "setup code ".len();
        log[start..].split_whitespace().next().unwrap().to_string()
    }

    /// The server binary with this server's environment; `args` None means `serve`.
    pub fn command(&self, args: Option<&[&str]>) -> Command {
        let mut cmd = Command::new(binary("hibernation-server"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DB_URL", &self.db_url)
            .env("STORAGE_PATH", self.storage_path())
            .env("PORT", self.port.to_string())
            .env("SITE_URL", self.url())
            .env("LOG_LEVEL", "info,poem=warn")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path());
        if let Some(s3) = &self.s3 {
            cmd.envs(s3.env());
        }
        if let Some(args) = args {
            cmd.args(args);
        }
        cmd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited with {status}:\n{}", self.log());
            }
            if reqwest::blocking::get(format!("{}/health", self.url())).is_ok_and(|r| r.status().is_success()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not start:\n{}", self.log());
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cache_url(&self, cache: &str) -> String {
        format!("{}/api/nix/{cache}", self.url())
    }

    /// Runs `hibernation-server admin <args>` and returns its standard output.
    pub fn admin(&self, args: &[&str]) -> String {
        let mut full = vec!["admin"];
        full.extend_from_slice(args);
        let out = self.command(Some(&full)).output().unwrap();
        assert!(out.status.success(), "admin {args:?} failed: {}", output_text(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Evicts every path of `cache` at once (a quota of next to nothing, oldest first), then
    /// lifts the quota: their NARs become unused, due for collection after GC_GRACE.
    #[allow(dead_code)]
    pub fn evict_everything(&self, cache: &str) {
        self.admin(&["update-cache", cache, "--quota-gib", "0.000000001", "--quota-policy", "oldest"]);
        self.admin(&["update-cache", cache, "--quota-gib", "none"]);
    }

    /// An administrator, a private cache `main` trusting `keys`, and an admin token. The cache
    /// has no upstream: cache.nixos.org cannot be reached from the test machines.
    pub fn bootstrap(&self, keys: &Keys, public: bool) -> String {
        self.admin(&["create-user", "admin", "--admin"]);
        let mut args = vec!["create-cache", "main", "--no-upstream", "--public-key", &keys.public];
        if public {
            args.push("--public");
        }
        self.admin(&args);
        self.admin(&["create-token", "admin", "--name", "ci"])
    }

    /// Files under the storage directory (NARs and leftovers), excluding directories.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    walk(&entry.path(), out);
                } else {
                    out.push(entry.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.storage_path(), &mut out);
        if let Some(s3) = &self.s3 {
            walk(&s3.bucket_dir(), &mut out);
        }
        // s3s-fs keeps its own metadata in hidden files.
        out.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
        out.sort();
        out
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
        let mut request = reqwest::blocking::Client::new().get(format!("{}{path}", self.url()));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request.send().unwrap()
    }
}

fn spawn_placeholder() -> Child {
    Command::new("true").spawn().unwrap()
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

/// The `hibernation` CLI with its own config file.
pub struct Cli {
    pub dir: tempfile::TempDir,
}

impl Cli {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("hibernation"));
        cmd.args(args)
            .env("HIBERNATION_CONFIG", self.dir.path().join("config.json"))
            .env_remove("HIBERNATION_URL")
            .env_remove("HIBERNATION_TOKEN")
            .env_remove("HIBERNATION_SIGNING_KEY")
            .env("NIX_CONFIG", nix::NIX_CONFIG);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "hibernation {args:?} failed: {}", output_text(&out));
        output_text(&out)
    }

    pub fn login(&self, server: &Server, token: &str) {
        self.run_ok(&["login", &server.url(), "--token", token]);
    }
}

/// `hibernation login <url> --browser` with a "browser" that writes the URL it is given.
pub struct PendingLogin {
    child: Child,
    opened: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl PendingLogin {
    pub fn start(cli: &Cli, server: &Server) -> Self {
        let opened = cli.dir.path().join("opened-url");
        let browser = cli.dir.path().join("browser.sh");
        std::fs::write(&browser, format!("#!/bin/sh\necho \"$1\" > {}\n", opened.display())).unwrap();
        let mut perms = std::fs::metadata(&browser).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&browser, perms).unwrap();
        let log = cli.dir.path().join("login.log");
        let child = cli
            .command(&["login", &server.url(), "--browser"])
            .env("BROWSER", &browser)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let pending = Self { child, opened, log };
        wait_until(Duration::from_secs(20), "the CLI to open the browser", || {
            std::fs::read_to_string(&pending.opened).is_ok_and(|u| u.trim().len() > 10)
        });
        let opened = std::fs::read_to_string(&pending.opened).unwrap();
        assert_eq!(opened.trim(), format!("{}/cli-login", server.url()), "the browser opens the approval page");
        pending
    }

    /// The code the CLI shows in the terminal.
    pub fn code(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap();
        let line = log.lines().find_map(|l| l.trim().strip_prefix("code: ")).expect("the CLI shows a code");
        line.trim().to_string()
    }

    /// The exit status and everything the CLI printed.
    pub fn finish(self) -> (std::process::ExitStatus, String) {
        let out = self.child.wait_with_output().unwrap();
        (out.status, format!("{}{}", String::from_utf8_lossy(&out.stdout), std::fs::read_to_string(&self.log).unwrap()))
    }
}

/// A hand-made push request, for tests that send what the CLI never would.
pub struct RawUpload {
    pub info: hibernation::api::PathUpload,
    pub nar: Vec<u8>,
}

impl RawUpload {
    /// The correctly signed metadata and NAR of a local store path.
    pub fn of(store_path: &str, key_file: &str) -> Self {
        use hibernation::nix::{NarHash, SecretKey, StorePath, nar, signing};
        let path = StorePath::parse(store_path).unwrap();
        let mut bytes = Vec::new();
        nar::dump_path(std::path::Path::new(store_path), &mut bytes).unwrap();
        let refs_text = nix::run_ok(nix::nix(&["nix-store", "--query", "--references", store_path]));
        let references: Vec<StorePath> = refs_text.lines().map(|l| StorePath::parse(l).unwrap()).collect();
        let nar_hash = NarHash::digest(&bytes);
        let key = SecretKey::parse(&std::fs::read_to_string(key_file).unwrap()).unwrap();
        let signature = key.sign(&signing::fingerprint(&path, &nar_hash, bytes.len() as u64, &references));
        let info = hibernation::api::PathUpload {
            store_path: store_path.to_string(),
            nar_hash,
            nar_size: bytes.len() as u64,
            references: references.iter().map(|r| r.base_name().to_string()).collect(),
            deriver: None,
            ca: None,
            signatures: vec![signature],
        };
        Self { info, nar: bytes }
    }

    /// Re-signs the (possibly altered) metadata with `key_file`.
    pub fn resign(&mut self, key_file: &str) {
        use hibernation::nix::{SecretKey, StorePath, signing};
        let key = SecretKey::parse(&std::fs::read_to_string(key_file).unwrap()).unwrap();
        let path = StorePath::parse(&self.info.store_path).unwrap();
        let refs: Vec<StorePath> = self.info.references.iter().map(|r| StorePath::parse(r).unwrap()).collect();
        self.info.signatures =
            vec![key.sign(&signing::fingerprint(&path, &self.info.nar_hash, self.info.nar_size, &refs))];
    }

    pub fn hash_part(&self) -> &str {
        &self.info.store_path[11..43]
    }

    pub fn header(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.info).unwrap())
    }

    /// PUTs `body` (already compressed, or empty to attach) to the push API.
    pub fn send(&self, server: &Server, cache: &str, token: &str, body: Vec<u8>) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .put(format!("{}/api/v1/caches/{cache}/paths/{}", server.url(), self.hash_part()))
            .bearer_auth(token)
            .header(hibernation::api::PATH_INFO_HEADER, self.header())
            .body(body)
            .send()
            .unwrap()
    }

    pub fn compressed(&self) -> Vec<u8> {
        zstd::encode_all(self.nar.as_slice(), 3).unwrap()
    }
}

/// The `error` message of a JSON error response, with its status.
pub fn error_of(response: reqwest::blocking::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().unwrap();
    (status, body["error"].as_str().unwrap_or_default().to_string())
}

/// A TCP proxy in front of a server that cuts the first `failures` connections, to make a
/// client meet real connection errors.
pub struct FlakyProxy {
    pub port: u16,
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyProxy {
    pub fn start(target_port: u16, failures: usize) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = dropped.clone();
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                let Ok(client) = incoming else { continue };
                if counter.load(Ordering::SeqCst) < failures {
                    counter.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let Ok(upstream) = std::net::TcpStream::connect(("127.0.0.1", target_port)) else { continue };
                for (mut from, mut to) in
                    [(client.try_clone().unwrap(), upstream.try_clone().unwrap()), (upstream, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Self { port, dropped }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
