//! `hibernation-server admin ...`: bootstrap users, caches, keys and tokens without the UI,
//! through the same services (and so the same rules) as the dashboard and the API. One
//! module per group of commands; all run on one runtime.

mod caches;
mod people;
mod storage;

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;
use crate::db::Db;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    #[command(flatten)]
    People(people::PeopleCommand),
    #[command(flatten)]
    Caches(caches::CacheCommand),
    #[command(flatten)]
    Storage(storage::StorageCommand),
}

pub fn run(db: &Db, config: &Config, command: AdminCommand) -> anyhow::Result<ExitCode> {
    tokio::runtime::Runtime::new()?.block_on(async {
        match command {
            AdminCommand::People(command) => people::run(db, config, command).await.map(|()| ExitCode::SUCCESS),
            AdminCommand::Caches(command) => caches::run(db, config, command).await.map(|()| ExitCode::SUCCESS),
            AdminCommand::Storage(command) => storage::run(db, config, command).await,
        }
    })
}
