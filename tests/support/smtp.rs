//! A real SMTP server for mail tests: aiosmtpd (Debian's python3-aiosmtpd) writing every
//! message it accepts to a maildir.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub struct MailServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl MailServer {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.path().join("maildir").join(sub)).unwrap();
        }
        let port = free_port();
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd is installed (apt package python3-aiosmtpd)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, dir, child }
    }

    /// The environment that points the server at this SMTP server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SMTP_HOST", "127.0.0.1".to_string()),
            ("SMTP_PORT", self.port.to_string()),
            ("SMTP_SECURITY", "none".to_string()),
            ("SMTP_FROM", "Hibernation <cache@example.com>".to_string()),
        ]
    }

    fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("maildir/new")).unwrap().flatten().map(|e| e.path()).collect()
    }

    /// A Hibernation server on `backend` that sends its mail here.
    #[allow(dead_code)]
    pub fn server(&self, backend: super::Backend) -> super::Server {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        super::Server::builder(backend).env(&pairs).start()
    }

    /// Every message received so far for `to`, raw.
    pub fn messages_to(&self, to: &str) -> Vec<String> {
        self.files()
            .into_iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .filter(|m| m.lines().any(|l| l.starts_with("X-RcptTo:") && l.contains(to)))
            .collect()
    }

    /// Waits for the `n`-th message to `to` and returns it.
    pub fn wait_for(&self, to: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let messages = self.messages_to(to);
            if messages.len() >= n {
                return self.newest_to(to);
            }
            assert!(Instant::now() < deadline, "no mail number {n} to {to} arrived");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Maildir file names do not sort by arrival; their modification times do.
    fn newest_to(&self, to: &str) -> String {
        let mut files: Vec<(std::time::SystemTime, String)> = self
            .files()
            .into_iter()
            .filter_map(|f| Some((f.metadata().ok()?.modified().ok()?, std::fs::read_to_string(&f).ok()?)))
            .filter(|(_, m)| m.lines().any(|l| l.starts_with("X-RcptTo:") && l.contains(to)))
            .collect();
        files.sort_by_key(|(time, _)| *time);
        files.pop().unwrap().1
    }
}

impl Drop for MailServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first `http://...` link in a message that contains `path` (e.g. `/invite/`).
pub fn link_in(message: &str, path: &str) -> String {
    message
        .split_whitespace()
        .find(|w| w.starts_with("http") && w.contains(path))
        .unwrap_or_else(|| panic!("no {path} link in:\n{message}"))
        .to_string()
}

/// The code in a mail (a change of address): the line that is nothing but `XXXX-XXXX`.
#[allow(dead_code)]
pub fn code_in(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 9 && l.as_bytes()[4] == b'-' && l.chars().all(|c| c == '-' || c.is_ascii_alphanumeric()))
        .unwrap_or_else(|| panic!("no code in:\n{message}"))
        .to_string()
}
