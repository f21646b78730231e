//! `hibernation-server`: the Hibernation binary cache server.

mod admin;
mod config;
mod db;
mod random;
mod services;
mod storage;
mod web;

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "hibernation-server", version, about = "Self-hosted Nix binary cache server", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default). Configuration comes from environment variables.
    Serve,
    /// Manage users, caches and tokens directly in the database.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Exit 0 when the server on this machine's PORT answers /health (a container health check).
    Health,
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// glibc gives busy threads arenas of their own (up to 8 per core) and keeps what they free:
/// uploads (MiB-sized buffers on blocking threads) then grew the server by tens of MiB that
/// never came back. Two arenas keep memory flat at no measurable cost. MALLOC_ARENA_MAX in
/// the environment still decides when it is set.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists; mallopt only
        // changes allocator settings.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let config = config::Config::from_env()?;
    let filter =
        EnvFilter::try_new(&config.log_level).with_context(|| format!("invalid LOG_LEVEL {:?}", config.log_level))?;
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Health = command {
        return health_check(config.port).map(|()| std::process::ExitCode::SUCCESS);
    }
    let db = db::Db::open(&config.db_url, config.database_logging)?;
    match command {
        Command::Admin(command) => admin::run(&db, &config, command),
        Command::Serve => {
            tokio::runtime::Runtime::new()?.block_on(serve(config, db)).map(|()| std::process::ExitCode::SUCCESS)
        }
        Command::Health => unreachable!("answered above"),
    }
}

/// Asks the local server's `/health` over plain HTTP/1.0 (no client library needed).
fn health_check(port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(5);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("nothing answers on port {port}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        anyhow::bail!("the server is not healthy: {status:?}");
    }
    Ok(())
}

async fn serve(config: config::Config, db: db::Db) -> anyhow::Result<()> {
    let storage = config.open_storage().await?;
    if let Some(code) = services::identity::sessions::setup_code(&db).await? {
        tracing::warn!(
            "no administrator yet: open {}/setup and enter the setup code {code} \
             (or run `hibernation-server admin create-user <name> --admin`)",
            config.site_url
        );
    }
    let access_log = Arc::new(services::serving::access_log::AccessLog::default());
    tokio::spawn(access_log.clone().run(db.clone()));
    tokio::spawn(services::lifecycle::janitor::run(db.clone(), storage.clone(), config.lifecycle));
    let hot = Arc::new(services::serving::hot_cache::HotCache::default());
    let presence = Arc::new(services::serving::presence::PresenceFilter::default());
    let replication = services::serving::replication::Replication::new(db.clone(), presence, hot.clone());
    tokio::spawn(replication.clone().run());
    let port = config.port;
    let metrics = match &config.metrics {
        Some(settings) => Some(services::metrics::install(&settings.name)?),
        None => None,
    };
    let metrics_port = config.metrics.as_ref().and_then(|m| m.port);
    let sso = services::identity::oidc::SsoHandle::new(config.oidc.clone(), &config.site_url)?;
    if let Some(settings) = &config.oidc {
        tracing::info!(
            "single sign-on through {}; register {} as its redirect URL",
            settings.issuer_url,
            sso.redirect_url()
        );
    }
    let receive_limits = services::upload::receive::ReceiveLimits {
        max_nar_size: config.limits.max_nar_size,
        decode_budget: services::upload::decode_memory::DecodeBudget::new(
            config.limits.decompression_memory,
            services::upload::decode_memory::DEFAULT_WAIT,
        ),
    };
    let state = Arc::new(web::AppState {
        db: db.clone(),
        storage,
        receive_limits,
        site: config.site(),
        lifecycle: config.lifecycle,
        access_log: access_log.clone(),
        hot,
        replication: replication.clone(),
        upstreams: Default::default(),
        metrics,
        sso,
        issuer_keys: Default::default(),
    });
    if let Some(metrics_port) = metrics_port {
        let listener = std::net::TcpListener::bind(("0.0.0.0", metrics_port))
            .with_context(|| format!("cannot serve metrics on METRICS_PORT {metrics_port}"))?;
        drop(listener);
        let metrics_state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = web::metrics::serve_separately(metrics_port, metrics_state).await {
                tracing::error!("the metrics listener stopped: {e}");
            }
        });
        tracing::info!("metrics on port {metrics_port}");
    }
    use poem::listener::Listener;
    let acceptor = poem::listener::TcpListener::bind(("0.0.0.0", port))
        .into_acceptor()
        .await
        .with_context(|| format!("cannot serve on port {port}"))?;
    tracing::info!("hibernation-server listening on port {port}");
    let (registry, timeout) = (web::connections::Registry::default(), state.site.client_timeout);
    let acceptor = web::connections::GuardedAcceptor { inner: acceptor, registry: registry.clone(), timeout };
    let app = web::connections::TrackRequests { inner: web::routes(state), registry };
    poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(app, shutdown_signal(), Some(std::time::Duration::from_secs(30)))
        .await
        .with_context(|| format!("cannot serve on port {port}"))?;
    replication.leave().await;
    access_log.flush(&db).await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
