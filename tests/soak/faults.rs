//! The faults, injected on a schedule while the load runs, and what the supervisor watches
//! meanwhile: each replica's peak memory and its answers by status (from its metrics).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::Server;

/// A tmpfs mounted for the S3 server's data, so the soak can fill it; unmounted on drop.
pub struct SmallFilesystem {
    pub mount_point: PathBuf,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `mib` MiB on a new directory, or says why it cannot.
    pub fn mount(mib: u64) -> Result<(Self, tempfile::TempDir), String> {
        let dir = tempfile::Builder::new().prefix("hib-soak-s3").tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (it needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok((Self { mount_point: dir.path().to_path_buf() }, dir))
    }

    /// Writes a file until the filesystem is full; returns it (remove it to free the space).
    fn fill(&self) -> std::io::Result<PathBuf> {
        let filler = self.mount_point.join("filler");
        let mut file = std::fs::File::create(&filler)?;
        let chunk = vec![0x5a_u8; 1 << 20];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e),
            }
        }
        // The last partial chunk may have left a few bytes: take them too.
        let _ = file.write_all(&chunk[..4096]);
        Ok(filler)
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount_point).status();
    }
}

/// One fault: when it happens (a fraction of the run), and what happened.
pub struct Fault {
    pub name: &'static str,
    pub outcome: String,
}

/// What the supervisor saw over the run.
#[derive(Default)]
pub struct Watch {
    /// An administrator's token: metrics are not public.
    pub token: String,
    /// Successful scrapes of the metrics, over both replicas.
    pub scrapes: u64,
    /// Peak RSS (KiB) per replica over all its lifetimes.
    pub peak_rss_kib: [u64; 2],
    /// Answers by status over all lifetimes of both replicas (5xx only).
    pub server_errors: BTreeMap<u16, u64>,
    /// Per replica, the metrics of its current lifetime at the last scrape.
    last_scrape: [BTreeMap<u16, u64>; 2],
    /// Logs of replica lifetimes that ended (a kill).
    pub earlier_logs: Vec<String>,
}

impl Watch {
    pub fn new(token: &str) -> Self {
        Self { token: token.to_string(), ..Self::default() }
    }

    fn sample(&mut self, replicas: [&Server; 2]) {
        for (i, server) in replicas.into_iter().enumerate() {
            self.peak_rss_kib[i] = self.peak_rss_kib[i].max(server.peak_rss_kib());
            let scrape = reqwest::blocking::Client::new()
                .get(format!("{}/metrics", server.url()))
                .bearer_auth(&self.token)
                .send()
                .and_then(|r| r.error_for_status())
                .and_then(|r| r.text());
            if let Ok(text) = scrape {
                self.last_scrape[i] = server_errors(&text);
                self.scrapes += 1;
            }
        }
    }

    /// Samples every 250 ms until `at`.
    fn sample_until(&mut self, at: Instant, replicas: [&Server; 2]) {
        while Instant::now() < at {
            self.sample(replicas);
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A replica's lifetime ends: what it answered joins the totals.
    fn lifetime_ended(&mut self, replica: usize, log: String) {
        for (status, n) in std::mem::take(&mut self.last_scrape[replica]) {
            *self.server_errors.entry(status).or_default() += n;
        }
        self.earlier_logs.push(log);
    }

    pub fn finish(&mut self, replicas: [&Server; 2]) {
        self.sample(replicas);
        for replica in 0..2 {
            self.lifetime_ended(replica, String::new());
        }
    }
}

/// 5xx answers by status in a Prometheus scrape of `hibernation_http_requests_total`.
fn server_errors(scrape: &str) -> BTreeMap<u16, u64> {
    let mut found = BTreeMap::new();
    for line in scrape.lines().filter(|l| l.starts_with("hibernation_http_requests_total{")) {
        let status = line.split("status=\"").nth(1).and_then(|s| s.get(..3)).and_then(|s| s.parse::<u16>().ok());
        let count = line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok());
        if let (Some(status @ 500..), Some(count)) = (status, count) {
            *found.entry(status).or_default() += count as u64;
        }
    }
    found
}

/// Runs the schedule over `duration`, sampling every 250 ms: returns the faults as injected.
pub fn supervise(
    first: &mut Server,
    second: &mut Server,
    small_filesystem: Result<&SmallFilesystem, &str>,
    duration: Duration,
    watch: &mut Watch,
) -> Vec<Fault> {
    let start = Instant::now();
    let outage = Duration::from_secs(10).min(duration / 6);
    let wait_until = |fraction: f64, first: &Server, second: &Server, watch: &mut Watch| {
        watch.sample_until(start + duration.mul_f64(fraction), [first, second]);
    };
    let mut faults = Vec::new();
    // SOAK_FAULTS picks faults by name (kill, postgres, s3, full), to find which one a
    // problem follows; all of them by default.
    let chosen = std::env::var("SOAK_FAULTS").unwrap_or_else(|_| "kill,postgres,s3,full".into());
    let enabled = |name: &str| chosen.split(',').any(|c| c.trim() == name);

    wait_until(0.15, first, second, watch);
    if enabled("kill") {
        watch.sample([first, second]);
        let log = second.log();
        println!("killing replica 2 at {}", chrono::Utc::now().format("%H:%M:%S%.3f"));
        second.stop();
        watch.lifetime_ended(1, log);
        std::thread::sleep(Duration::from_secs(2));
        let restarted = Instant::now();
        second.resume();
        faults.push(Fault {
            name: "kill -9 of replica 2, restarted 2 s later",
            outcome: format!("back and answering {:.1} s after the restart began", restarted.elapsed().as_secs_f64()),
        });
    }

    wait_until(0.35, first, second, watch);
    if enabled("postgres") {
        let begun = Instant::now();
        first.postgres.as_ref().expect("the soak runs on PostgreSQL").restart();
        faults.push(Fault {
            name: "PostgreSQL restarted (fast shutdown: every connection cut)",
            outcome: format!("down and up again in {:.1} s", begun.elapsed().as_secs_f64()),
        });
    }

    wait_until(0.55, first, second, watch);
    if enabled("s3") {
        first.s3.as_mut().expect("the soak runs on S3").stop();
        let stopped = Instant::now();
        watch.sample_until(stopped + outage, [first, second]);
        first.s3.as_mut().unwrap().resume();
        faults.push(Fault {
            name: "S3 server stopped",
            outcome: format!("for {:.1} s, then started again", stopped.elapsed().as_secs_f64()),
        });
    }

    wait_until(0.8, first, second, watch);
    if enabled("full") {
        let full = match small_filesystem {
            Ok(fs) => match fs.fill() {
                Ok(filler) => {
                    let filled = Instant::now();
                    watch.sample_until(filled + outage / 2, [first, second]);
                    std::fs::remove_file(&filler).unwrap();
                    format!("S3's filesystem (tmpfs) full for {:.1} s, then freed", filled.elapsed().as_secs_f64())
                }
                Err(e) => format!("NOT INJECTED: could not fill the filesystem: {e}"),
            },
            Err(why) => format!("NOT INJECTED: {why}"),
        };
        faults.push(Fault { name: "storage filesystem full", outcome: full });
    }

    wait_until(1.0, first, second, watch);
    faults
}
