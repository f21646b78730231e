//! `hibernation`: push Nix store paths to a Hibernation binary cache, and pull from it.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser, Subcommand};
use hibernation::api::{CACHE_NAME_RULE, CacheInfo, PinRequest, is_valid_cache_name};
use hibernation::client::config::Config;
use hibernation::client::http::ApiClient;
use hibernation::client::login::login_in_browser;
use hibernation::client::oidc::IdTokenSource;
use hibernation::client::push::{PushOptions, format_summary, push};
use hibernation::client::store::{query_paths, resolve_argument};
use hibernation::client::use_cache;
use hibernation::client::watch::{WatchOptions, watch_store};
use hibernation::human::{LIFETIME_RULE, human_bytes, parse_lifetime_seconds};
use hibernation::nix::SecretKey;

#[derive(Debug, Parser)]
#[command(
    name = "hibernation",
    version,
    about = "Push Nix store paths to a Hibernation binary cache, and set machines up to pull from it",
    after_help = "Start with `hibernation login <url>`, then `hibernation push <cache> ./result`."
)]
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

/// How a push signs and sends paths (shared by `push` and `watch-store`).
#[derive(Debug, clap::Args)]
struct PushArgs {
    /// Uploads running at once.
    #[arg(long, short = 'j', default_value_t = 4)]
    jobs: usize,
    /// Nix secret signing key file (from `nix key generate-secret`); or set
    /// HIBERNATION_SIGNING_KEY to the key or its file.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Also push paths an upstream cache (e.g. cache.nixos.org) already serves, where the
    /// cache allows it.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Log in to a server and save the URL and token (file mode 0600). With --token, checks
    /// and saves that token (for CI); without one, in a terminal, approves a new token in the
    /// dashboard through the browser.
    Login {
        /// Server URL, e.g. https://cache.example.com (default: the saved one).
        server: Option<String>,
        /// Use the browser even when standard input is not a terminal.
        #[arg(long)]
        browser: bool,
        /// Trusted publishing from CI: trade the job's OpenID Connect ID token for a
        /// short-lived token (GitHub Actions: needs `permissions: id-token: write`; elsewhere
        /// give the token with --id-token or --id-token-file). A cache must trust the issuer.
        #[arg(long, conflicts_with = "browser")]
        oidc: bool,
        /// The ID token for --oidc.
        #[arg(
            long,
            requires = "oidc",
            conflicts_with = "id_token_file",
            env = "HIBERNATION_ID_TOKEN",
            hide_env_values = true
        )]
        id_token: Option<String>,
        /// A file holding the ID token for --oidc.
        #[arg(long, requires = "oidc")]
        id_token_file: Option<std::path::PathBuf>,
    },
    /// Show who the saved token belongs to.
    Whoami,
    /// Push store paths and, unless --no-deps, their whole closure.
    Push {
        /// Cache to push to.
        cache: String,
        /// Store paths (or result symlinks); `-` reads them from standard input.
        paths: Vec<String>,
        /// Read paths from standard input, one per line (e.g. from `nix build --print-out-paths`).
        #[arg(long)]
        stdin: bool,
        /// Push only the given paths, not their dependencies.
        #[arg(long)]
        no_deps: bool,
        /// Print the summary as JSON on standard output.
        #[arg(long)]
        json: bool,
        /// Once pushed, pin the one path given under this name (moving the pin if it exists),
        /// so eviction and retention keep its closure: e.g. `--pin release`.
        #[arg(long, value_name = "NAME")]
        pin: Option<String>,
        #[command(flatten)]
        options: PushArgs,
    },
    /// Watch the Nix store and push every new path (with its closure) until SIGINT/SIGTERM.
    #[command(
        after_help = "Beside a build: `hibernation watch-store main & nix build ...; kill %1`.\nAs a service: run it under systemd with HIBERNATION_SIGNING_KEY set (see the README)."
    )]
    WatchStore {
        /// Cache to push to.
        cache: String,
        #[command(flatten)]
        options: PushArgs,
    },
    /// Configure this machine's Nix to substitute from a cache (user nix.conf, and a netrc
    /// entry for private caches). Safe to run again.
    Use {
        /// Cache to use.
        cache: String,
        /// The nix.conf to change (default: $XDG_CONFIG_HOME/nix/nix.conf).
        #[arg(long, value_name = "FILE")]
        nix_conf: Option<PathBuf>,
    },
    /// Pin a path so that eviction and retention keep it and its closure:
    /// `pin <cache> <name> <path>` (re-pinning a name moves it), `pin list <cache>`,
    /// `pin remove <cache> <name>`.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Pin {
        #[command(subcommand)]
        command: Option<PinCommand>,
        #[command(flatten)]
        set: Option<PinArgs>,
    },
    /// List caches, or show one.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print a shell completion script, e.g. `hibernation completions bash > /etc/bash_completion.d/hibernation`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, clap::Args)]
struct PinArgs {
    /// Cache holding the path.
    cache: String,
    /// The pin's name, e.g. release or main-branch.
    name: String,
    /// The store path (or a result symlink) to keep, with its closure.
    path: String,
    /// The pin ends after this long (e.g. 30d, 12h); it lasts until removed when absent.
    #[arg(long, value_name = "LIFETIME")]
    keep: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PinCommand {
    /// The cache's pins.
    List {
        cache: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a pin (its closure may then be evicted).
    Remove { cache: String, name: String },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// The caches you can read.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// How to use one cache: URL, keys, upstreams, size.
    Info {
        cache: String,
        /// Print JSON.
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

fn client(url: Option<String>, token: Option<String>) -> anyhow::Result<ApiClient> {
    let (url, token) = Config::resolve(url, token)?;
    Ok(ApiClient::new(&url, token)?)
}

fn check_cache_name(cache: &str) -> anyhow::Result<()> {
    if !is_valid_cache_name(cache) {
        bail!("invalid cache name {cache:?}: {CACHE_NAME_RULE}");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Login { server, oidc: true, id_token, id_token_file, .. } => {
            let source = match (id_token, id_token_file) {
                (Some(token), _) => IdTokenSource::Given(token),
                (None, Some(file)) => IdTokenSource::File(file),
                (None, None) => IdTokenSource::GitHubActions,
            };
            login_with_id_token(server.or(cli.url), source).await?
        }
        Command::Login { server, browser, .. } => login(server.or(cli.url), cli.token, browser).await?,
        Command::Whoami => {
            let client = client(cli.url, cli.token)?;
            let me = client.whoami().await?;
            println!("{} (token {:?}) on {}", me.user, me.token, client.base_url());
        }
        Command::Push { cache, paths, stdin, no_deps, json, pin, options } => {
            let what = PushWhat { paths, stdin, no_deps, pin };
            return push_command(client(cli.url, cli.token)?, cache, what, json, options).await;
        }
        Command::WatchStore { cache, options } => {
            check_cache_name(&cache)?;
            let key = load_signing_key(options.key)?;
            let client = client(cli.url, cli.token)?;
            // Fail at once on a wrong URL, token or cache, not at the first build.
            let info = client.cache_info(&cache).await?;
            if !info.can_push {
                bail!("you may not push to cache {cache:?}: use a token with push access");
            }
            let push = PushOptions { cache, jobs: options.jobs.max(1), key, force: options.force };
            let totals = watch_store(&client, WatchOptions { push }).await?;
            eprintln!("pushed {} paths while watching, {} failed", totals.pushed, totals.failed);
            return Ok(if totals.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Use { cache, nix_conf } => use_command(client(cli.url, cli.token)?, &cache, nix_conf).await?,
        Command::Pin { command, set } => pin_command(client(cli.url, cli.token)?, command, set).await?,
        Command::Cache { command: CacheCommand::List { json } } => {
            let caches = client(cli.url, cli.token)?.list_caches().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&caches)?);
            } else if caches.is_empty() {
                eprintln!("no caches you can read");
            } else {
                for c in &caches {
                    println!(
                        "{:<24} {:<8} {:>24}  {}",
                        c.name,
                        if c.public { "public" } else { "private" },
                        c.size_text(),
                        if c.can_push { "push" } else { "read" }
                    );
                }
            }
        }
        Command::Cache { command: CacheCommand::Info { cache, json } } => {
            check_cache_name(&cache)?;
            let info = client(cli.url, cli.token)?.cache_info(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print_cache_info(&info);
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "hibernation", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn login(server: Option<String>, token: Option<String>, browser: bool) -> anyhow::Result<()> {
    let server = match server {
        Some(server) => server,
        None => Config::load()?.url.context("give the server URL: `hibernation login https://cache.example.com`")?,
    };
    let anonymous = ApiClient::new(&server, None)?;
    let (token, user) = match token.filter(|t| !t.trim().is_empty()) {
        Some(token) => {
            let me = ApiClient::new(&server, Some(token.clone()))?.whoami().await?;
            (token, me.user)
        }
        None if browser || std::io::stdin().is_terminal() => login_in_browser(&anonymous).await?,
        None => bail!(
            "no terminal to approve a login in: give the token with --token <token> (or HIBERNATION_TOKEN), or pass --browser"
        ),
    };
    let path = Config { url: Some(server.clone()), token: Some(token) }.save()?;
    println!("logged in to {server} as {user}; saved to {}", path.display());
    Ok(())
}

/// `login --oidc`: an ID token from CI for a short-lived token, saved like any other.
async fn login_with_id_token(server: Option<String>, source: IdTokenSource) -> anyhow::Result<()> {
    let server = server.context("give the server URL: `hibernation login https://cache.example.com --oidc`")?;
    let audience = server.trim_end_matches('/').to_string();
    let id_token = hibernation::client::oidc::id_token(source, &audience).await?;
    let exchanged = hibernation::client::oidc::exchange(&ApiClient::new(&server, None)?, &id_token).await?;
    let path = Config { url: Some(server.clone()), token: Some(exchanged.token) }.save()?;
    let right = if exchanged.push { "push to" } else { "read" };
    println!(
        "logged in to {server} by trusted publishing: may {right} {} until {}; saved to {}",
        exchanged.caches.join(", "),
        exchanged.expires_at,
        path.display()
    );
    Ok(())
}

fn print_cache_info(info: &CacheInfo) {
    println!("{} ({})", info.name, if info.public { "public" } else { "private" });
    println!("  substituter:  {}", info.substituter);
    println!("  public keys:  {}", info.public_keys.join(" "));
    println!("  priority:     {}", info.priority);
    let quota = info.quota_bytes.map(|q| format!(" of {}", human_bytes(q.max(0) as u64))).unwrap_or_default();
    println!("  stored:       {}{quota}", info.size_text());
    println!("  you may:      {}", if info.can_push { "read and push" } else { "read" });
    if info.upstreams.is_empty() {
        println!("  upstreams:    none (every pushed path is stored)");
    }
    for upstream in &info.upstreams {
        println!("  upstream:     {} ({})", upstream.url, upstream.public_keys.join(" "));
    }
    if info.allow_force_push {
        println!("  --force:      allowed (pushes may store paths the upstreams serve)");
    }
}

async fn use_command(client: ApiClient, cache: &str, nix_conf: Option<PathBuf>) -> anyhow::Result<()> {
    check_cache_name(cache)?;
    let info = client.cache_info(cache).await?;
    let token = (!info.public).then(|| client.token()).flatten();
    if !info.public && token.is_none() {
        bail!("cache {cache:?} is private: log in first (`hibernation login`) so Nix can be given a token");
    }
    let nix_conf = match nix_conf {
        Some(path) => path,
        None => use_cache::user_nix_conf()?,
    };
    let plan = use_cache::plan(nix_conf, &info, token)?;
    let mut files = vec![(&plan.nix_conf, &plan.nix_conf_old, &plan.nix_conf_new, 0o644)];
    if let Some((path, old, new)) = &plan.netrc {
        files.insert(0, (path, old, new, 0o600));
    }
    let mut changed = false;
    let mut first_failure = None;
    for (path, old, new, mode) in files {
        match use_cache::write_if_changed(path, old, new, mode) {
            Ok(wrote) => changed |= wrote,
            Err(e) => {
                let added: Vec<&str> = new.lines().filter(|l| !old.lines().any(|o| o == *l)).collect();
                println!("Add to {}:\n{}\n", path.display(), added.join("\n"));
                first_failure.get_or_insert(format!("cannot write {}: {e}", path.display()));
            }
        }
    }
    if let Some(failure) = first_failure {
        bail!("{failure}; add the lines above yourself (or pass --nix-conf <file>)");
    }
    let verb = if changed { "now uses" } else { "already uses" };
    println!("{} {verb} {} ({})", plan.nix_conf.display(), info.name, info.substituter);
    if let Some((netrc, _, _)) = &plan.netrc {
        println!("the token for this private cache is in {}", netrc.display());
    }
    if std::path::Path::new("/nix/var/nix/daemon-socket/socket").exists()
        && std::env::var("USER").is_ok_and(|u| u != "root")
    {
        eprintln!(
            "note: a Nix daemon ignores substituters from users it does not trust; if nothing is substituted, add `trusted-users = {}` to /etc/nix/nix.conf or these lines there",
            std::env::var("USER").unwrap_or_default()
        );
    }
    Ok(())
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

/// What `push` pushes: paths from arguments or standard input, with or without their
/// dependencies, and the pin to set on the pushed path.
struct PushWhat {
    paths: Vec<String>,
    stdin: bool,
    no_deps: bool,
    pin: Option<String>,
}

async fn push_command(
    client: ApiClient,
    cache: String,
    what: PushWhat,
    json: bool,
    options: PushArgs,
) -> anyhow::Result<ExitCode> {
    let PushWhat { paths: mut args, stdin, no_deps, pin } = what;
    check_cache_name(&cache)?;
    if let Some(name) = &pin
        && !hibernation::api::is_valid_pin_name(name)
    {
        bail!("invalid pin name {name:?}: {}", hibernation::api::PIN_NAME_RULE);
    }
    let key = load_signing_key(options.key)?;
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
    let pinned = match (&pin, roots.as_slice()) {
        (None, _) => None,
        (Some(_), [root]) => Some(root.full_path()),
        (Some(_), _) => bail!("--pin names one path: give exactly one"),
    };
    let local = tokio::task::spawn_blocking(move || query_paths(&roots, !no_deps)).await??;
    let options = PushOptions { cache, jobs: options.jobs.max(1), key, force: options.force };
    let summary = push(&client, &options, local).await?;
    if let (Some(name), Some(store_path)) = (&pin, pinned)
        && summary.failed == 0
    {
        client.put_pin(&options.cache, name, &PinRequest { store_path, expires_in_seconds: None }).await?;
        eprintln!("pinned it as {name}");
    }
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    eprintln!("{}", format_summary(&summary));
    for error in &summary.errors {
        eprintln!("error: {error}");
    }
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn pin_command(client: ApiClient, command: Option<PinCommand>, set: Option<PinArgs>) -> anyhow::Result<()> {
    match (command, set) {
        (Some(PinCommand::List { cache, json }), _) => {
            check_cache_name(&cache)?;
            let pins = client.list_pins(&cache).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&pins)?);
            } else if pins.is_empty() {
                eprintln!("cache {cache} has no pins");
            }
            for pin in pins.iter().filter(|_| !json) {
                let until = pin.expires_at.as_deref().map(|t| format!(" (until {t})")).unwrap_or_default();
                println!("{:<24} {}{until}", pin.name, pin.store_path);
            }
        }
        (Some(PinCommand::Remove { cache, name }), _) => {
            check_cache_name(&cache)?;
            client.delete_pin(&cache, &name).await?;
            eprintln!("removed pin {name} from {cache}");
        }
        (None, Some(PinArgs { cache, name, path, keep })) => {
            check_cache_name(&cache)?;
            let expires_in_seconds = keep
                .map(|text| {
                    parse_lifetime_seconds(&text).with_context(|| format!("invalid --keep {text:?}: {LIFETIME_RULE}"))
                })
                .transpose()?;
            let store_path = resolve_argument(&path)?.full_path();
            let pin = client.put_pin(&cache, &name, &PinRequest { store_path, expires_in_seconds }).await?;
            eprintln!("pinned {} as {} in {cache}", pin.store_path, pin.name);
        }
        (None, None) => bail!("give a cache, a pin name and a path, or `pin list <cache>`"),
    }
    Ok(())
}
