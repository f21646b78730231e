//! Upstream caches: which paths they already serve, so that pushes skip them.
//!
//! A path counts as held when the upstream answers its narinfo and the narinfo is signed by
//! one of the upstream's configured keys. Lookups for a batch run concurrently (at most
//! [`CONCURRENT_LOOKUPS`] at once) and answers are remembered, so a 1,000-path push costs one
//! parallel sweep and the uploads after the plan reuse it. An upstream that cannot be reached
//! is left out for [`DOWN_FOR`]: the plan then pushes its paths, and an upload whose
//! reference only that upstream might hold is answered "try again later".

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hibernation::api::Upstream;
use hibernation::nix::{NarInfo, PublicKey, StorePath};

const CONCURRENT_LOOKUPS: usize = 16;
const HELD_FOR: Duration = Duration::from_secs(3600);
const MISSING_FOR: Duration = Duration::from_secs(300);
const DOWN_FOR: Duration = Duration::from_secs(10);
const MAX_REMEMBERED: usize = 200_000;
/// Narinfos are a few hundred bytes; anything far bigger is not one.
const MAX_NARINFO_BYTES: usize = 64 * 1024;

/// What the upstreams said about a set of paths.
#[derive(Debug, Default)]
pub struct UpstreamAnswer {
    pub held: HashSet<StorePath>,
    /// Some upstream could not be asked; paths not in `held` may still be there.
    pub unreachable: bool,
}

pub struct UpstreamChecker {
    http: reqwest::Client,
    /// (upstream URL and keys, path hash) -> (held, until when the answer stands). The keys
    /// are part of it: whether a narinfo counts depends on which keys a cache trusts.
    answers: Mutex<HashMap<(String, String), (bool, Instant)>>,
    down_until: Mutex<HashMap<String, Instant>>,
}

impl Default for UpstreamChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamChecker {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("hibernation-server/", env!("CARGO_PKG_VERSION")))
            // Only the configured host is asked, never where it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Self { http, answers: Mutex::new(HashMap::new()), down_until: Mutex::new(HashMap::new()) }
    }

    /// Which of `paths` one of `upstreams` serves.
    pub async fn held(&self, upstreams: &[Upstream], paths: &[StorePath]) -> UpstreamAnswer {
        let mut answer = UpstreamAnswer::default();
        for upstream in upstreams {
            let keys: Vec<PublicKey> = upstream.public_keys.iter().filter_map(|k| PublicKey::parse(k).ok()).collect();
            let todo: Vec<StorePath> = paths.iter().filter(|p| !answer.held.contains(*p)).cloned().collect();
            let found: Vec<(StorePath, Option<bool>)> = futures_util::stream::iter(todo)
                .map(|path| self.held_path(upstream, &keys, path))
                .buffer_unordered(CONCURRENT_LOOKUPS)
                .collect()
                .await;
            for (path, held) in found {
                match held {
                    Some(true) => {
                        answer.held.insert(path);
                    }
                    Some(false) => {}
                    None => answer.unreachable = true,
                }
            }
        }
        answer
    }

    async fn held_path(&self, upstream: &Upstream, keys: &[PublicKey], path: StorePath) -> (StorePath, Option<bool>) {
        let held = self.holds(upstream, keys, &path).await;
        (path, held)
    }

    /// Whether the upstream serves `path`; `None` when it could not be asked.
    async fn holds(&self, upstream: &Upstream, keys: &[PublicKey], path: &StorePath) -> Option<bool> {
        let key = (upstream.to_line(), path.hash_part().to_string());
        let now = Instant::now();
        if let Some((held, until)) = self.answers.lock().unwrap().get(&key)
            && *until > now
        {
            return Some(*held);
        }
        if self.down_until.lock().unwrap().get(&upstream.url).is_some_and(|until| *until > now) {
            return None;
        }
        match self.fetch(upstream, keys, path).await {
            Ok(held) => {
                self.remember(key, held);
                Some(held)
            }
            Err(reason) => {
                tracing::warn!(upstream = upstream.url, "upstream cache unreachable: {reason}");
                self.down_until.lock().unwrap().insert(upstream.url.clone(), Instant::now() + DOWN_FOR);
                None
            }
        }
    }

    /// Asks the upstream for the narinfo; an error means the upstream could not answer.
    async fn fetch(&self, upstream: &Upstream, keys: &[PublicKey], path: &StorePath) -> Result<bool, String> {
        let url = format!("{}/{}.narinfo", upstream.url.trim_end_matches('/'), path.hash_part());
        let response = self.http.get(&url).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Not there, or not readable by us: either way the upstream does not serve it to all.
        if matches!(status.as_u16(), 401 | 403 | 404) {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(format!("HTTP {status} for {url}"));
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_NARINFO_BYTES {
                return Ok(false);
            }
        }
        let text = String::from_utf8_lossy(&body);
        Ok(NarInfo::parse(&text).is_ok_and(|info| info.store_path == *path && info.is_signed_by_any(keys)))
    }

    fn remember(&self, key: (String, String), held: bool) {
        let mut answers = self.answers.lock().unwrap();
        if answers.len() >= MAX_REMEMBERED {
            let now = Instant::now();
            answers.retain(|_, (_, until)| *until > now);
            if answers.len() >= MAX_REMEMBERED {
                answers.clear();
            }
        }
        answers.insert(key, (held, Instant::now() + if held { HELD_FOR } else { MISSING_FOR }));
    }
}
