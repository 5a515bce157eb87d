//! `herald serve`: the embedded runtime — the shared Router over HTTP and the worker pool,
//! both on one SQLite file.
//!
//! It only wires: open the store, seed the demo on an empty one, build the [`App`] from
//! the SQLite adapters and the delivery dispatcher (Telegram, bot engine, or the log
//! deliverer for bots with no connection), start the workers, serve until SIGINT or
//! SIGTERM, then stop accepting, let in-flight jobs finish (or release them) and exit.

use crate::demo;
use crate::logging::{self, LogFormat};
use anyhow::Context;
use clap::Parser;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::ports::Deliverer;
use herald_core::Config;
use herald_delivery::dispatch::Dispatcher;
use herald_delivery::DeliveryConfig;
use herald_sqlite::worker_pool::{PoolOptions, WorkerPool};
use herald_sqlite::Sqlite;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// SQLite database file (created if missing).
    #[arg(long, env = "HERALD_DB", default_value = "herald.db")]
    db: PathBuf,
    /// Do not create the demo bot and event on an empty database.
    #[arg(long, env = "HERALD_NO_DEMO")]
    no_demo: bool,
    /// Log format.
    #[arg(long, env = "HERALD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Public base URL used in printed and returned URLs (e.g. https://herald.example.com).
    #[arg(long, env = "HERALD_PUBLIC_URL")]
    public_url: Option<String>,
    /// Worker tasks draining the job queue (0: accept only, leave jobs queued). One bot's
    /// deliver jobs use at most half of them, so a slow bot never holds them all.
    #[arg(long, env = "HERALD_WORKERS", default_value_t = 8)]
    workers: usize,
    /// Users per deliver job.
    #[arg(long, env = "HERALD_DELIVER_BATCH", default_value_t = 100)]
    deliver_batch: usize,
    /// Users read per expand page of an `everyone` request.
    #[arg(long, env = "HERALD_EXPAND_PAGE", default_value_t = 1000)]
    expand_page: usize,
    /// Seconds in-flight jobs get to finish at shutdown before they are released.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value_t = 10)]
    shutdown_grace: u64,
    /// Make the log deliverer take this long per user, to watch a fan-out progress.
    #[arg(long, env = "HERALD_SIMULATE_DELIVERY_MS", default_value_t = 0)]
    simulate_delivery_ms: u64,
    /// Base URL of the Telegram Bot API.
    #[arg(
        long,
        env = "HERALD_TELEGRAM_API",
        default_value = "https://api.telegram.org"
    )]
    telegram_api: String,
    /// Telegram messages per second per bot (evenly spaced).
    #[arg(long, env = "HERALD_TELEGRAM_RATE", default_value_t = 30)]
    telegram_rate: u32,
    /// First retry delay of a user whose delivery failed for now, in milliseconds
    /// (doubled per attempt, with jitter, up to 5 minutes).
    #[arg(long, env = "HERALD_RETRY_BASE_MS", default_value_t = 2000)]
    retry_base_ms: u64,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.log_format);
    let store = Sqlite::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let base_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));

    let config = Config {
        deliver_batch: args.deliver_batch.max(1),
        expand_page: args.expand_page.max(1),
        public_base_url: args.public_url.clone(),
        base_backoff: Duration::from_millis(args.retry_base_ms),
        jobs_per_bot: (args.workers / 2).max(1),
        ..Config::default()
    };
    let deliverer: Arc<dyn Deliverer> = if args.simulate_delivery_ms > 0 {
        Arc::new(LogDeliverer::with_delay(Duration::from_millis(
            args.simulate_delivery_ms,
        )))
    } else {
        let delivery = DeliveryConfig {
            telegram_api: args.telegram_api.clone(),
            telegram_rate: args.telegram_rate,
            ..DeliveryConfig::default()
        };
        Arc::new(Dispatcher::new(Arc::new(store.clone()), &delivery))
    };
    let app = Arc::new(herald_sqlite::app(&store, config, deliverer));

    println!(
        "herald listening on http://{local} (database {})",
        args.db.display()
    );
    if !args.no_demo && store.event_count().await? == 0 {
        let event = demo::create(&store).await?;
        println!("{}", demo::banner(&event, &base_url));
    }

    let recovered = store.recover_leases().await?;
    if recovered > 0 {
        tracing::info!(
            jobs = recovered,
            "resuming jobs left in flight by the previous run"
        );
    }
    let pool = (args.workers > 0).then(|| {
        WorkerPool::start(
            app.clone(),
            store.clone(),
            PoolOptions {
                workers: args.workers,
                ..PoolOptions::default()
            },
        )
    });
    tracing::info!(listen = %local, db = %args.db.display(), workers = args.workers, "herald serving");
    axum::serve(listener, herald_core::router::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("no longer accepting requests; finishing in-flight jobs");
    if let Some(pool) = pool {
        pool.shutdown(Duration::from_secs(args.shutdown_grace))
            .await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
