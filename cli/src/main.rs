//! `hibernation`: push Nix store paths to a Hibernation binary cache.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use hibernation::api::{CACHE_NAME_RULE, is_valid_cache_name};
use hibernation::client::config::Config;
use hibernation::client::http::ApiClient;
use hibernation::client::push::{PushOptions, format_summary, push};
use hibernation::client::store::{query_paths, resolve_argument};
use hibernation::nix::SecretKey;

#[derive(Debug, Parser)]
#[command(name = "hibernation", version, about = "Push Nix store paths to a Hibernation binary cache")]
struct Cli {
    /// Server URL (overrides the saved one).
    #[arg(long, global = true, env = "HIBERNATION_URL")]
    url: Option<String>,
    /// API token (overrides the saved one).
    #[arg(long, global = true, env = "HIBERNATION_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a token against a server and save both (file mode 0600).
    Login {
        /// Server URL, e.g. https://cache.example.com
        server: String,
    },
    /// Show who the saved token belongs to.
    Whoami,
    /// Push store paths and, unless --no-deps, their whole closure.
    Push {
        /// Cache to push to.
        cache: String,
        /// Store paths (or result symlinks); `-` reads them from standard input.
        paths: Vec<String>,
        /// Read paths from standard input, one per line.
        #[arg(long)]
        stdin: bool,
        /// Push only the given paths, not their dependencies.
        #[arg(long)]
        no_deps: bool,
        /// Uploads running at once.
        #[arg(long, short = 'j', default_value_t = 4)]
        jobs: usize,
        /// Nix secret signing key file (from `nix key generate-secret`).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Print the summary as JSON on standard output.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Login { server } => {
            let token = cli.token.context("give the token with --token <token> (or HIBERNATION_TOKEN)")?;
            let client = ApiClient::new(&server, Some(token.clone()))?;
            let me = client.whoami().await?;
            let path = Config { url: Some(server.clone()), token: Some(token) }.save()?;
            println!("logged in to {server} as {} (token {:?}); saved to {}", me.user, me.token, path.display());
        }
        Command::Whoami => {
            let (url, token) = Config::resolve(cli.url, cli.token)?;
            let me = ApiClient::new(&url, token)?.whoami().await?;
            println!("{} (token {:?}) on {url}", me.user, me.token);
        }
        Command::Push { cache, paths, stdin, no_deps, jobs, key, json } => {
            return push_command(cli.url, cli.token, cache, paths, stdin, no_deps, jobs, key, json).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_signing_key(file: Option<PathBuf>) -> anyhow::Result<SecretKey> {
    let text = match (file, std::env::var("HIBERNATION_SIGNING_KEY").ok().filter(|v| !v.trim().is_empty())) {
        (Some(path), _) => {
            std::fs::read_to_string(&path).with_context(|| format!("cannot read signing key {}", path.display()))?
        }
        (None, Some(value)) if PathBuf::from(value.trim()).is_file() => std::fs::read_to_string(value.trim())?,
        (None, Some(value)) => value,
        (None, None) => bail!(
            "no signing key: pass --key <file> or set HIBERNATION_SIGNING_KEY (create one with `nix key generate-secret --key-name <name>`)"
        ),
    };
    SecretKey::parse(&text).context("invalid signing key (expected the output of `nix key generate-secret`)")
}

#[allow(clippy::too_many_arguments)]
async fn push_command(
    url: Option<String>,
    token: Option<String>,
    cache: String,
    mut args: Vec<String>,
    stdin: bool,
    no_deps: bool,
    jobs: usize,
    key: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if !is_valid_cache_name(&cache) {
        bail!("invalid cache name {cache:?}: {CACHE_NAME_RULE}");
    }
    let key = load_signing_key(key)?;
    if stdin || args.iter().any(|a| a == "-") {
        args.retain(|a| a != "-");
        for line in std::io::stdin().lock().lines() {
            let line = line.context("cannot read standard input")?;
            if !line.trim().is_empty() {
                args.push(line.trim().to_string());
            }
        }
    }
    if args.is_empty() {
        bail!("nothing to push: give store paths as arguments or on standard input with --stdin");
    }
    let roots = args.iter().map(|a| resolve_argument(a)).collect::<anyhow::Result<Vec<_>>>()?;
    let (url, token) = Config::resolve(url, token)?;
    let client = ApiClient::new(&url, token)?;
    let local = tokio::task::spawn_blocking(move || query_paths(&roots, !no_deps)).await??;
    let options = PushOptions { cache, jobs: jobs.max(1), key };
    let summary = push(&client, &options, local).await?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    eprintln!("{}", format_summary(&summary, started));
    for error in &summary.errors {
        eprintln!("error: {error}");
    }
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
