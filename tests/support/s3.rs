//! A real S3-compatible server for tests: `s3s-fs` (installed by the test command), with
//! SigV4 enforced, on its own port and directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BUCKET: &str = "hibernation";
const ACCESS_KEY: &str = "hibernation-test";
const SECRET_KEY: &str = "hibernation-test-secret";

pub struct S3Server {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

fn s3s_binary() -> PathBuf {
    let in_cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|d| d.join("bin/s3s-fs"));
    match in_cargo_home {
        Some(p) if p.exists() => p,
        _ => PathBuf::from("s3s-fs"),
    }
}

impl S3Server {
    pub fn start() -> Self {
        Self::start_in(tempfile::Builder::new().prefix("hib-s3").tempdir().unwrap())
    }

    /// Serves the bucket from `dir` (a small filesystem, for a test that fills it).
    pub fn start_in(dir: tempfile::TempDir) -> Self {
        std::fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
        let mut server = Self { port: super::free_port(), dir, child: None };
        server.resume();
        server
    }

    /// Starts (again) on the same port and directory.
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("s3s.log")).unwrap();
        let child = Command::new(s3s_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start s3s-fs ({e}): the test command installs it with cargo install"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("S3_HOST", format!("http://127.0.0.1:{}", self.port)),
            ("S3_ACCESS_KEY", ACCESS_KEY.to_string()),
            ("S3_SECRET_KEY", SECRET_KEY.to_string()),
            ("S3_BUCKET", BUCKET.to_string()),
            ("S3_REGION", "us-east-1".to_string()),
            ("S3_FORCE_PATH_STYLE", "true".to_string()),
        ]
    }

    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join(BUCKET)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
