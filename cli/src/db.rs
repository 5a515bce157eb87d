//! `herald db`: operations on the database file itself.
//!
//! `herald db backup FILE` writes a consistent copy of the database while `herald serve`
//! runs beside it: SQLite's `VACUUM INTO` reads one snapshot (WAL readers never block the
//! writer, nor it them) and writes it compacted to a new file, which is fsynced before
//! the command answers. To restore, stop the server and put the copy in place of the
//! database file, removing the old file's `-wal` and `-shm` companions.

use clap::{Args, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DbArgs {
    /// SQLite database file.
    #[arg(long, env = "HERALD_DB", default_value = "herald.db", global = true)]
    db: PathBuf,
    #[command(subcommand)]
    command: DbCommand,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Write a consistent copy of the database to FILE (which must not exist), also
    /// while `herald serve` runs.
    Backup { file: PathBuf },
}

impl DbArgs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            DbCommand::Backup { file } => backup(self.db, file).await,
        }
    }
}

async fn backup(db: PathBuf, file: PathBuf) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(db.exists(), "no database at {}", db.display());
    anyhow::ensure!(
        !file.exists(),
        "{} exists already; a backup is never written over a file",
        file.display()
    );
    let started = std::time::Instant::now();
    let (from, to) = (db.clone(), file.clone());
    let bytes =
        tokio::task::spawn_blocking(move || herald_sqlite::backup::backup(&from, &to)).await??;
    println!(
        "{}",
        json!({
            "backup": file.display().to_string(),
            "bytes": bytes,
            "ms": started.elapsed().as_millis() as u64,
        })
    );
    Ok(ExitCode::SUCCESS)
}
