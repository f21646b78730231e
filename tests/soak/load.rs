//! The load: pushers (half the CLI, half stock `nix copy --to`) and readers (narinfo and NAR
//! fetches, and stock Nix substituting whole closures), spread over both replicas. Every
//! operation retries on the other replica after a connection failure or a retryable answer,
//! until it succeeds or its own deadline passes; every attempt is recorded.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::closures::Root;
use crate::record::{Failure, Operation, Record};
use crate::support::{Cli, NixClient};

/// How long one operation keeps retrying (the faults last up to 10 s each).
const OPERATION_DEADLINE: Duration = Duration::from_secs(90);
/// A path pushed through one replica is visible on the other within its presence filter's
/// refresh (1 s), also where a miss was remembered (a restarted replica before its first load);
/// readers ask only for paths stored longer ago than this.
const VISIBLE_EVERYWHERE_AFTER: Duration = Duration::from_secs(3);

pub const STORED_CACHE: &str = "soak";
pub const CHURN_CACHE: &str = "churn";

/// Everything the load threads share.
pub struct Load<'a> {
    pub replicas: Vec<String>,
    pub token: String,
    pub secret_key_file: String,
    pub public_key: String,
    pub roots: Vec<Root>,
    pub until: Instant,
    pub pause: Duration,
    pub record: &'a Record,
    pub stored: Stored,
}

/// The roots (with their closures) a pusher was told are stored in [`STORED_CACHE`], and when.
#[derive(Default)]
pub struct Stored {
    roots: Mutex<Vec<(usize, Instant)>>,
}

impl Stored {
    fn add(&self, root: usize) {
        let mut roots = self.roots.lock().unwrap();
        if !roots.iter().any(|(r, _)| *r == root) {
            roots.push((root, Instant::now()));
        }
    }

    /// A root stored long enough ago to be visible on every replica, picked by `seed`.
    fn settled(&self, seed: u64) -> Option<usize> {
        let roots = self.roots.lock().unwrap();
        let settled: Vec<usize> =
            roots.iter().filter(|(_, at)| at.elapsed() > VISIBLE_EVERYWHERE_AFTER).map(|(r, _)| *r).collect();
        (!settled.is_empty()).then(|| settled[seed as usize % settled.len()])
    }

    pub fn all(&self) -> Vec<usize> {
        self.roots.lock().unwrap().iter().map(|(r, _)| *r).collect()
    }
}

/// A small xorshift generator: each thread its own, seeded by its number.
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Load<'_> {
    fn running(&self) -> bool {
        Instant::now() < self.until
    }

    /// Runs `attempt` (given a replica's URL) until it succeeds, alternating replicas and
    /// backing off; records each failed attempt and the successful attempt's latency.
    fn retrying<T>(
        &self,
        operation: Operation,
        first_replica: usize,
        mut attempt: impl FnMut(&str) -> Result<T, Failure>,
    ) -> Option<T> {
        let deadline = Instant::now() + OPERATION_DEADLINE;
        let mut last = None;
        for n in 0.. {
            let replica = &self.replicas[(first_replica + n) % self.replicas.len()];
            let started = Instant::now();
            match attempt(replica) {
                Ok(value) => {
                    self.record.success(operation, started.elapsed());
                    return Some(value);
                }
                Err(failure) => {
                    self.record.failure(operation, &failure);
                    if matches!(failure, Failure::Wrong(_)) {
                        return None;
                    }
                    last = Some(failure);
                }
            }
            if Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100 * (1 << n.min(4))));
        }
        self.record.gave_up(operation, &last.expect("at least one attempt"));
        None
    }

    /// Pusher `index`: pushes root after root into its cache with its client, through the
    /// replicas in turn. Pushers start at overlapping roots, so the same paths race.
    pub fn pusher(&self, index: usize) {
        let cache = if index % 4 < 2 { STORED_CACHE } else { CHURN_CACHE };
        let use_cli = index.is_multiple_of(2);
        let cli = Cli::new();
        let nix = NixClient::new();
        nix.write_netrc("127.0.0.1", &self.token);
        let mut round = 0;
        while self.running() {
            let root = (index * 3 + round) % self.roots.len();
            let path = &self.roots[root].path;
            let pushed = if use_cli {
                let push = |replica: &str| {
                    let mut cmd = cli.command(&["--url", replica, "--token", &self.token]);
                    cmd.args(["push", cache, "--jobs", "4", "--key", &self.secret_key_file, path]);
                    run_client(cmd)
                };
                self.retrying(Operation::PushCli, index + round, push)
            } else {
                let push = |replica: &str| {
                    let url = format!("{replica}/api/nix/{cache}?secret-key={}&compression=zstd", self.secret_key_file);
                    run_client(nix.command(&["nix", "copy", "--to", &url, path]))
                };
                self.retrying(Operation::PushNixCopy, index + round, push)
            };
            if pushed.is_some() && cache == STORED_CACHE {
                self.stored.add(root);
            }
            round += 1;
            std::thread::sleep(self.pause);
        }
    }

    /// Reader `index`: the first few substitute whole closures with stock Nix into fresh
    /// stores; the others fetch narinfos (mostly of stored paths, some absent) and NARs.
    pub fn reader(&self, index: usize, substituters: usize) {
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let nix = NixClient::new();
        nix.write_netrc("127.0.0.1", &self.token);
        let mut round = 0;
        while self.running() {
            let first = index + round;
            round += 1;
            if index < substituters {
                if let Some(root) = self.stored.settled(dice.roll()) {
                    self.substitute(&nix, &self.roots[root], round, first);
                }
            } else if dice.roll().is_multiple_of(5) {
                let hash = random_hash_part(&mut dice);
                self.retrying(Operation::NarinfoMiss, first, |replica| {
                    let url = format!("{replica}/api/nix/{STORED_CACHE}/{hash}.narinfo");
                    match get(&client, &url, &self.token)? {
                        (404, _) => Ok(()),
                        (status, _) => Err(Failure::Wrong(format!("{url}: {status} for a path no one pushed"))),
                    }
                });
            } else if let Some(root) = self.stored.settled(dice.roll()) {
                let closure = &self.roots[root].closure;
                let path = &closure[dice.roll() as usize % closure.len()];
                self.fetch_stored(&client, path, first);
            }
            std::thread::sleep(self.pause);
        }
    }

    /// A stored path's narinfo, then its NAR, which must be as long as the narinfo says.
    fn fetch_stored(&self, client: &reqwest::blocking::Client, path: &str, first: usize) {
        let hash = &path[11..43];
        let narinfo = self.retrying(Operation::Narinfo, first, |replica| {
            let url = format!("{replica}/api/nix/{STORED_CACHE}/{hash}.narinfo");
            match get(client, &url, &self.token)? {
                (200, body) => Ok(String::from_utf8_lossy(&body).into_owned()),
                (status, _) => Err(Failure::Wrong(format!("{url}: {status} for a stored path"))),
            }
        });
        let Some(narinfo) = narinfo else { return };
        let field = |name: &str| narinfo.lines().find_map(|l| l.strip_prefix(name)).map(str::to_string);
        let (Some(nar_url), Some(size)) = (field("URL: "), field("FileSize: ")) else {
            self.record
                .failure(Operation::Narinfo, &Failure::Wrong(format!("narinfo without URL or FileSize: {narinfo}")));
            return;
        };
        let size: usize = size.parse().unwrap_or(usize::MAX);
        self.retrying(Operation::Nar, first, |replica| {
            let url = format!("{replica}/api/nix/{STORED_CACHE}/{nar_url}");
            match get(client, &url, &self.token)? {
                (200, body) if body.len() == size => Ok(()),
                (status, body) => Err(Failure::Wrong(format!("{url}: {status} with {} bytes of {size}", body.len()))),
            }
        });
    }

    /// `nix copy --from` a replica into a fresh store (Nix checks every NarHash and
    /// signature on the way), then the store is removed.
    fn substitute(&self, nix: &NixClient, root: &Root, round: usize, first: usize) {
        let store = nix.store(&format!("store-{round}"));
        self.retrying(Operation::Substitute, first, |replica| {
            let cache = format!("{replica}/api/nix/{STORED_CACHE}");
            let mut cmd = nix.command(&["nix", "copy", "--from", &cache, "--to", store.to_str().unwrap(), &root.path]);
            cmd.args(["--option", "trusted-public-keys", &self.public_key]);
            run_client(cmd)
        });
        remove_store(&store);
    }
}

/// A GET with the token; a connection failure and a 503 with Retry-After are retryable,
/// other 5xx answers are never allowed.
fn get(client: &reqwest::blocking::Client, url: &str, token: &str) -> Result<(u16, Vec<u8>), Failure> {
    let response = client.get(url).bearer_auth(token).send().map_err(|_| Failure::Connection)?;
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.bytes().map_err(|_| Failure::Connection)?.to_vec();
    match status {
        503 if retry_after => Err(Failure::Unavailable),
        500.. => Err(Failure::ServerError(status)),
        _ => Ok((status, body)),
    }
}

fn run_client(mut cmd: Command) -> Result<(), Failure> {
    let out = cmd.output().unwrap();
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    // A 5xx other than 503 in a client's output is never allowed.
    if let Some(status) = ["500", "502", "504"].into_iter().find(|s| text.contains(&format!("HTTP error {s}"))) {
        return Err(Failure::ServerError(status.parse().unwrap()));
    }
    Err(Failure::Client(last))
}

fn random_hash_part(dice: &mut Dice) -> String {
    const NIX32: &[u8] = b"0123456789abcdfghijklmnpqrsvwxyz";
    (0..32).map(|_| NIX32[(dice.roll() % 32) as usize] as char).collect()
}

/// Removes a Nix store made for one substitution (Nix makes its paths read-only).
fn remove_store(store: &std::path::Path) {
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(store).status();
    let _ = std::fs::remove_dir_all(store);
}
