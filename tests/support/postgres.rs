//! A throwaway PostgreSQL cluster per test: initdb into a temp dir, trust auth, own port.

use std::path::PathBuf;
use std::process::Command;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub url: String,
    dir: tempfile::TempDir,
    /// The server's options (port, socket directory, durability), for every start.
    options: String,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}

/// Runs a PostgreSQL tool, as the postgres user when we are root (initdb refuses root).
fn pg_command(tool: &str, args: &[String]) -> Command {
    let program = PathBuf::from(PG_BIN).join(tool);
    assert!(program.exists(), "{} is missing: install postgresql-15 (the test command does)", program.display());
    if is_root() {
        let mut line = format!("'{}'", program.display());
        for a in args {
            line.push_str(&format!(" '{a}'"));
        }
        let mut cmd = Command::new("su");
        cmd.args(["postgres", "-s", "/bin/sh", "-c", &line]);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{what} failed: {}", super::output_text(&out));
}

impl Postgres {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("hib-pg").tempdir().unwrap();
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres", &dir.path().display().to_string()]), "chown");
            // The postgres user must be able to reach the directory.
            run(Command::new("chmod").args(["755", &dir.path().display().to_string()]), "chmod");
        }
        let data = dir.path().join("data").display().to_string();
        let port = super::free_port();
        run(
            &mut pg_command(
                "initdb",
                &[
                    "-D".into(),
                    data.clone(),
                    "-A".into(),
                    "trust".into(),
                    "-U".into(),
                    "postgres".into(),
                    "--no-sync".into(),
                ],
            ),
            "initdb",
        );
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c full_page_writes=off",
            dir.path().display()
        );
        let log = dir.path().join("log").display().to_string();
        run(
            &mut pg_command(
                "pg_ctl",
                &["-D".into(), data, "-l".into(), log, "-o".into(), options.clone(), "-w".into(), "start".into()],
            ),
            "pg_ctl start",
        );
        Self { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, options }
    }
}

impl Postgres {
    fn control(&self, action: &str) {
        let data = self.dir.path().join("data").display().to_string();
        // With its log file, or a started server would hold this command's output pipe open.
        let log = self.dir.path().join("log").display().to_string();
        let args = ["-D", &data, "-l", &log, "-o", &self.options, "-m", "fast", "-w", action].map(String::from);
        run(&mut pg_command("pg_ctl", &args), &format!("pg_ctl {action}"));
    }

    /// Stops the server (fast shutdown: open connections are ended) and starts it again with
    /// the same options, as an upgrade or a crash-restart would.
    pub fn restart(&self) {
        self.control("restart");
    }

    /// Stops the server until [`Postgres::start_again`].
    pub fn stop(&self) {
        self.control("stop");
    }

    pub fn start_again(&self) {
        self.control("start");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = pg_command("pg_ctl", &["-D".into(), data, "-m".into(), "immediate".into(), "-w".into(), "stop".into()])
            .output();
    }
}
