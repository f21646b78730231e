//! `admin gc` and `admin fsck`: what the store holds, checked and tidied on demand.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::db::Db;
use crate::services::lifecycle::{fsck, gc};

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Delete NARs no path has used for GC_GRACE, objects no row owns that are older than that,
    /// uploads whose narinfo never came, and expired rows. Waits for nothing: fails when another
    /// process is collecting.
    Gc {
        /// Report what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-read every stored NAR and check it against the database; report missing and corrupt
    /// objects, objects no row owns, and paths whose references are missing. Exit status: 0
    /// when nothing is damaged, 1 when damage was found and repaired, 2 when damage is left.
    Fsck {
        /// Only this cache's paths and the NARs they use.
        #[arg(long)]
        cache: Option<String>,
        /// Remove every broken path together with what references it (a broken NAR from every
        /// cache), the broken NARs, and orphan objects older than GC_GRACE.
        #[arg(long)]
        repair: bool,
    },
}

pub async fn run(db: &Db, config: &Config, command: StorageCommand) -> anyhow::Result<ExitCode> {
    match command {
        StorageCommand::Gc { dry_run } => {
            let storage = config.open_storage().await?;
            println!("{}", gc::collect(db, &storage, config.lifecycle.gc_grace, dry_run).await?);
            Ok(ExitCode::SUCCESS)
        }
        StorageCommand::Fsck { cache, repair } => check(db, config, cache, repair).await,
    }
}

async fn check(db: &Db, config: &Config, cache: Option<String>, repair: bool) -> anyhow::Result<ExitCode> {
    let cache = match cache {
        Some(name) => Some(super::caches::existing(db, &name).await?),
        None => None,
    };
    let options = fsck::Options { cache, repair, grace: config.lifecycle.gc_grace };
    let on_terminal = std::io::stderr().is_terminal();
    let progress = |done: u64, total: u64| {
        if on_terminal {
            eprint!("\rchecked {done} of {total} NARs");
        }
    };
    let storage = config.open_storage().await?;
    let report = fsck::run(db, &storage, &options, progress).await?;
    if on_terminal {
        eprintln!();
    }
    println!("{report}");
    Ok(match (report.damaged(), repair) {
        (false, _) => ExitCode::SUCCESS,
        (true, true) => ExitCode::from(1),
        (true, false) => ExitCode::from(2),
    })
}
