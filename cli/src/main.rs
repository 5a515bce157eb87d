//! `herald`: the embedded server and the local operations on its database.
//!
//! `herald` with no subcommand is `herald serve`, so `cargo run --release` starts the whole
//! flow on one machine. The other subcommands operate Herald through its admin API: a
//! running server or deployment with `--url` and `--admin-token`, or a local database file
//! with `--db` (the same API, in process).
//!
//! # Layout
//!
//! - `serve` (with `http`: the HTTP server's connection handling, `readiness`, `disk`,
//!   `demo`, `logging`): the embedded runtime's wiring;
//! - `commands` (with `client`, `import`, `output`, `db`): the admin subcommands.

mod client;
mod commands;
mod db;
mod demo;
mod disk;
mod http;
mod import;
mod logging;
mod output;
mod readiness;
mod serve;
mod settings_flags;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "herald", version, about = "External Events for chatbots")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API and the worker pool on one SQLite file (the default).
    Serve(serve::ServeArgs),
    /// Manage bots' connections (Telegram token, bot engine URL and signing secret).
    Bots(commands::BotsArgs),
    /// Manage events: create, enable/disable, rate limits, secret rotation.
    Events(commands::EventsArgs),
    /// Import, show and delete bot users.
    Users(commands::UsersArgs),
    /// Inspect, watch and cancel requests.
    Requests(commands::RequestsArgs),
    /// Dead letters: list, redrive, purge.
    Dlq(commands::DlqArgs),
    /// The database file itself: a consistent backup while the server runs.
    Db(db::DbArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => serve::run(serve::ServeArgs::parse_from(["herald"])).await,
            Some(Command::Serve(args)) => serve::run(args).await,
            Some(Command::Bots(command)) => command.run().await,
            Some(Command::Events(command)) => command.run().await,
            Some(Command::Users(command)) => command.run().await,
            Some(Command::Requests(command)) => command.run().await,
            Some(Command::Dlq(command)) => command.run().await,
            Some(Command::Db(command)) => command.run().await,
        }
    });
    // Everything has finished and been recorded by now; a template rendering abandoned at
    // its deadline (`template::RENDER_FOR`) may still run on a blocking thread, and the
    // exit does not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herald: {e:#}");
            ExitCode::FAILURE
        }
    }
}
