//! `herald serve`: the embedded runtime — the shared Router over HTTP and the worker pool,
//! both on one SQLite file.
//!
//! It only wires: open the store, seed the demo on an empty one, build the [`App`] from
//! the SQLite adapters and the delivery dispatcher (Telegram, bot engine, or the log
//! deliverer for bots with no connection), start the workers, serve until SIGINT or
//! SIGTERM, then stop accepting, let in-flight jobs finish (or release them) and exit.

use crate::demo;
use crate::http;
use crate::logging::{self, LogFormat};
use crate::settings_flags::SharedSettings;
use anyhow::Context;
use clap::Parser;
use herald_core::http::{Auth, Route};
use herald_core::log_deliverer::LogDeliverer;
use herald_core::ports::{Deliverer, LeaseQueue};
use herald_core::worker_pool::{PoolOptions, WorkerPool};
use herald_core::Config;
use herald_delivery::dispatch::Dispatcher;
use herald_delivery::DeliveryConfig;
use herald_sqlite::Sqlite;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    /// Worker tasks draining the job queue (0: accept only, leave jobs queued). One bot's
    /// deliver jobs use at most half of them, so a slow bot never holds them all.
    #[arg(long, env = "HERALD_WORKERS", default_value_t = Config::DEFAULT_WORKERS)]
    workers: usize,
    /// Seconds in-flight jobs get at shutdown to end the sends they started and record
    /// them before they are released. Must exceed the delivery timeout (10 s), so that no
    /// send is cut off.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value_t = 15)]
    shutdown_grace: u64,
    /// Make the log deliverer take this long per user, to watch a fan-out progress.
    #[arg(long, env = "HERALD_SIMULATE_DELIVERY_MS", default_value_t = 0)]
    simulate_delivery_ms: u64,
    /// Seconds a request's head may take to arrive, from its first byte (from the
    /// connection's opening, for its first request); the connection is closed past it.
    #[arg(long, env = "HERALD_HEADER_TIMEOUT", default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request's body may take to arrive whole, from its head (408 past it).
    #[arg(long, env = "HERALD_BODY_TIMEOUT", default_value_t = 30)]
    body_timeout: u64,
    /// Seconds a keep-alive connection may sit idle between requests.
    #[arg(long, env = "HERALD_KEEP_ALIVE_IDLE", default_value_t = 75)]
    keep_alive_idle: u64,
    /// Most connections open at once (held below the process's open-file limit); past
    /// it a connection is answered 503 with Retry-After and closed.
    #[arg(long, env = "HERALD_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Most requests being handled at once; past it a request is answered 503 with
    /// Retry-After and its connection closed.
    #[arg(long, env = "HERALD_MAX_REQUESTS", default_value_t = 512)]
    max_requests: usize,
    /// Free disk space, in MiB, below which new event requests are refused with 503 and
    /// readiness answers 503 (work already accepted goes on).
    #[arg(long, env = "HERALD_MIN_FREE_DISK_MB", default_value_t = 64)]
    min_free_disk_mb: u64,
    /// Days a finished request (its outcomes, expansions), a dead job and an unused
    /// request's data are kept (a fraction is allowed: 0.5 is 12 hours); 0 keeps
    /// everything. As on AWS (30-day TTL).
    #[arg(long, env = "HERALD_RETENTION_DAYS", default_value_t = 30.0, value_parser = retention_days)]
    retention_days: f64,
    /// Seconds between retention sweeps (the first runs a minute after start, or sooner
    /// if this is shorter).
    #[arg(long, env = "HERALD_RETENTION_SWEEP_EVERY", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    retention_sweep_every: u64,
    /// Jobs a bot may have waiting before its new event requests are refused with 503
    /// (its backlog drains first); 0: no limit.
    #[arg(long, env = "HERALD_MAX_BACKLOG_JOBS", default_value_t = Config::DEFAULT_MAX_BACKLOG_JOBS)]
    max_backlog_jobs: u64,
    /// Admin token for /v1/admin and /metrics (only its hash is stored). Prefer the
    /// environment or --admin-token-file: a flag's value shows in the process list.
    /// Without any, the token stored before is kept; on a database with none, one is made
    /// and written to <db>.admin-token (mode 0600).
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file holding the admin token (its first line).
    #[arg(long, env = "HERALD_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// The settings the AWS functions read too (herald_core::settings).
    #[command(flatten)]
    shared: SharedSettings,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.log_format);
    herald_core::settings::refuse_other_runtimes(
        herald_core::settings::Runtime::Serve,
        std::env::vars().map(|(name, _)| name),
    )?;
    let settings = &args.shared.0;
    let delivery = DeliveryConfig {
        telegram_rate: settings.telegram_rate,
        ..DeliveryConfig::default()
    }
    .with_api("telegram", settings.telegram_api.clone());
    check_timing(&args, &delivery)?;
    let _only_server = lock_database(&args.db)?;
    let store = Sqlite::open(&args.db).with_context(|| format!("opening {}", args.db.display()))?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    let (admin_token_hash, new_admin_token) =
        admin_token(&store, given_admin_token(&args)?.as_deref(), &args.db).await?;
    let metrics = install_metrics()?;
    let app = Arc::new(herald_sqlite::app(
        &store,
        config(&args, admin_token_hash),
        deliverer(&args, &store, &delivery)?,
        herald_delivery::CHANNELS,
    ));
    announce(&args, &store, local, new_admin_token).await?;

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
            Arc::new(store.clone()),
            PoolOptions {
                workers: args.workers,
                ..PoolOptions::default()
            },
        )
    });
    if args.retention_days > 0.0 {
        tokio::spawn(sweep_now_and_then(
            store.clone(),
            Duration::from_secs_f64(args.retention_days * 24.0 * 3600.0),
            Duration::from_secs(args.retention_sweep_every),
        ));
    }
    let limits = http_limits(&args);
    tracing::info!(listen = %local, db = %args.db.display(), workers = args.workers, "herald serving");
    let disk = crate::disk::DiskWatch::start(&args.db, args.min_free_disk_mb * 1024 * 1024);
    let own_routes = vec![
        metrics_route(store.clone(), metrics),
        readiness_route(store.clone(), disk.clone()),
    ];
    let router =
        herald_core::http::router_with(app.clone(), own_routes).layer(axum::middleware::from_fn(
            move |request, next| shed_when_disk_low(disk.clone(), request, next),
        ));
    let grace = Duration::from_secs(args.shutdown_grace);
    serve_until_signalled(listener, router, limits, pool, grace).await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The time settings that the no-duplicates promise depends on, or why they break it.
fn check_timing(args: &ServeArgs, delivery: &DeliveryConfig) -> anyhow::Result<()> {
    let half_a_lease = PoolOptions::default().lease / 2;
    anyhow::ensure!(
        args.shared.0.job_time_budget <= half_a_lease,
        "--job-time-budget-ms must be at most {} (half of a job's lease)",
        half_a_lease.as_millis()
    );
    anyhow::ensure!(
        Duration::from_secs(args.shutdown_grace) > delivery.timeout,
        "--shutdown-grace must exceed the delivery timeout ({} s): a send still running when \
         the grace ends would be cut off and its user messaged again after the restart",
        delivery.timeout.as_secs()
    );
    Ok(())
}

/// The admin token given by file, variable or flag (a warning for the flag, which shows in
/// the process list).
fn given_admin_token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    Ok(match &args.admin_token_file {
        Some(file) => Some(read_token_file(file)?),
        None => {
            let from_env = std::env::var("HERALD_ADMIN_TOKEN").ok();
            if args.admin_token.is_some() && args.admin_token != from_env {
                tracing::warn!("--admin-token shows in the process list; prefer HERALD_ADMIN_TOKEN or --admin-token-file");
            }
            args.admin_token.clone()
        }
    })
}

fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .context("metrics buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    herald_core::metrics::describe();
    Ok(metrics)
}

fn config(args: &ServeArgs, admin_token_hash: [u8; 32]) -> Config {
    Config {
        admin_token_hash: Some(admin_token_hash),
        jobs_per_bot: Config::bot_share(args.workers),
        max_backlog_jobs: args.max_backlog_jobs,
        ..Config::default()
    }
    .with_settings(&args.shared.0)
}

fn deliverer(
    args: &ServeArgs,
    store: &Sqlite,
    delivery: &DeliveryConfig,
) -> anyhow::Result<Arc<dyn Deliverer>> {
    Ok(if args.simulate_delivery_ms > 0 {
        Arc::new(LogDeliverer::with_delay(Duration::from_millis(
            args.simulate_delivery_ms,
        )))
    } else {
        Arc::new(
            Dispatcher::new(Arc::new(store.clone()), delivery)
                .context("building the delivery HTTP client")?,
        )
    })
}

/// Say where the server listens, where a new admin token was written, and the demo event
/// created on an empty database.
async fn announce(
    args: &ServeArgs,
    store: &Sqlite,
    local: std::net::SocketAddr,
    new_admin_token: Option<PathBuf>,
) -> anyhow::Result<()> {
    println!(
        "herald listening on http://{local} (database {})",
        args.db.display()
    );
    if let Some(file) = new_admin_token {
        println!(
            "\nAdmin token for /v1/admin, /metrics and the CLI's --url written to {} (mode 0600; \
             only its hash is kept in the database):\n\n\
             export HERALD_ADMIN_TOKEN=\"$(cat {})\"\n",
            file.display(),
            file.display()
        );
    }
    if !args.no_demo && store.event_count().await? == 0 {
        let base_url = args
            .shared
            .0
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{local}"));
        let event = demo::create(store).await?;
        println!("{}", demo::banner(&event, &base_url));
    }
    Ok(())
}

fn http_limits(args: &ServeArgs) -> http::HttpLimits {
    let file_limit = http::raise_file_limit();
    let limits = http::HttpLimits {
        header_read: Duration::from_secs(args.header_timeout.max(1)),
        body_read: Duration::from_secs(args.body_timeout.max(1)),
        keep_alive_idle: Duration::from_secs(args.keep_alive_idle.max(1)),
        max_connections: http::clamp_connections(args.max_connections, file_limit),
        max_requests: args.max_requests.max(1),
    };
    if limits.max_connections < args.max_connections {
        tracing::warn!(
            asked = args.max_connections,
            allowed = limits.max_connections,
            file_limit,
            "--max-connections lowered to stay below the open-file limit"
        );
    }
    limits
}

/// Serve until SIGINT or SIGTERM, then stop the server and the workers together: the
/// server stops accepting and drops clients that linger; the workers stop starting
/// deliveries and record the ones in flight.
async fn serve_until_signalled(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: http::HttpLimits,
    pool: Option<WorkerPool>,
    grace: Duration,
) {
    let stopping = CancellationToken::new();
    let signalled = stopping.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signalled.cancel();
    });
    let workers = async {
        stopping.cancelled().await;
        tracing::info!("stopping: no longer accepting requests or starting deliveries");
        if let Some(pool) = pool {
            pool.shutdown(grace).await;
        }
    };
    tokio::join!(
        http::serve(listener, router, limits, stopping.cancelled()),
        workers
    );
}

/// Take `db`'s server lock (`<db>.lock`, an exclusive `flock` held while the returned file
/// is open), or refuse: one `herald serve` per database file, since its start-up hands
/// every leased job back, which would steal the jobs of a second server running beside
/// it. The CLI's other subcommands do not take it.
fn lock_database(db: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let mut path = db.as_os_str().to_owned();
    path.push(".lock");
    let path = std::path::PathBuf::from(path);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock only reads the descriptor, which `file` keeps open.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    anyhow::ensure!(
        locked,
        "another herald serve is running on {} (it holds {}); one server per database file",
        db.display(),
        path.display()
    );
    Ok(file)
}

/// The first line of an admin token file.
fn read_token_file(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the admin token from {}", file.display()))?;
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// The admin token's hash: from `--admin-token` or its file (stored), else the stored one,
/// else a new token (stored, and written to `<db>.admin-token` with mode 0600, whose path
/// is returned to be shown).
async fn admin_token(
    store: &Sqlite,
    given: Option<&str>,
    db: &std::path::Path,
) -> anyhow::Result<([u8; 32], Option<PathBuf>)> {
    if let Some(token) = given {
        if token.len() < 16 {
            anyhow::bail!("--admin-token must be at least 16 characters");
        }
        let hash = herald_core::secret::hash(token);
        store.set_admin_token_hash(hash).await?;
        return Ok((hash, None));
    }
    if let Some(hash) = store.admin_token_hash().await? {
        return Ok((hash, None));
    }
    let token = herald_core::secret::generate();
    let hash = herald_core::secret::hash(&token);
    let mut file = db.as_os_str().to_owned();
    file.push(".admin-token");
    let file = PathBuf::from(file);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("writing the admin token to {}", file.display()))?;
        writeln!(out, "{token}")?;
    }
    store.set_admin_token_hash(hash).await?;
    Ok((hash, Some(file)))
}

/// `GET /metrics`: Prometheus text, queue gauges read at scrape time; declared
/// [`Auth::Admin`], so the route table checks the admin token before it runs.
fn metrics_route(store: Sqlite, handle: metrics_exporter_prometheus::PrometheusHandle) -> Route {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let scrape = move || {
        let (store, handle) = (store.clone(), handle.clone());
        async move {
            if let Ok(depth) = store.queue_depth().await {
                metrics::gauge!(herald_core::metrics::QUEUE_DEPTH).set(depth.ready as f64);
                metrics::gauge!(herald_core::metrics::DEAD_LETTERS).set(depth.dead as f64);
                metrics::gauge!(herald_core::metrics::QUEUE_OLDEST_AGE)
                    .set(depth.oldest_ready_ms as f64 / 1000.0);
            }
            handle.run_upkeep();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
    };
    Route::new(
        "/metrics",
        &["GET"],
        Auth::Admin,
        axum::routing::get(scrape),
    )
}

/// `--retention-days`: a finite number of days from 0 to 100 years.
fn retention_days(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(days) if (0.0..=36_500.0).contains(&days) => Ok(days),
        _ => Err("a number of days from 0 to 36500 (fractions allowed)".into()),
    }
}

/// Delete what is older than `keep`, a minute after start (or after `every` if that is
/// sooner) and then every `every`.
async fn sweep_now_and_then(store: Sqlite, keep: Duration, every: Duration) {
    tokio::time::sleep(every.min(Duration::from_secs(60))).await;
    loop {
        let started = std::time::Instant::now();
        match store.sweep(keep).await {
            Ok(swept) => tracing::info!(
                ?swept,
                ms = started.elapsed().as_millis() as u64,
                "retention sweep"
            ),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; it runs again later"),
        }
        tokio::time::sleep(every).await;
    }
}

/// New event requests are refused while free disk is low (nothing is accepted; 503 with
/// `Retry-After`); every other route goes on.
async fn shed_when_disk_low(
    disk: Arc<crate::disk::DiskWatch>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let accepting = request.method() == axum::http::Method::POST
        && request.uri().path().starts_with("/v1/events/");
    if accepting && disk.is_low() {
        return herald_core::problem::ApiError::Overloaded("free disk").into_response();
    }
    next.run(request).await
}

/// `GET /readyz`: 200 while the store can be read and durably written and free disk is
/// above the minimum, else 503 with `Retry-After` (`/healthz` only says the process
/// answers).
/// A probe's answer is reused for a second ([`crate::readiness`]).
fn readiness_route(store: Sqlite, disk: Arc<crate::disk::DiskWatch>) -> Route {
    use axum::response::IntoResponse;
    use herald_core::problem::ApiError;
    let readiness = Arc::new(crate::readiness::Readiness::default());
    let ready = move || {
        let (store, disk, readiness) = (store.clone(), disk.clone(), readiness.clone());
        async move {
            let writable = || async {
                match store.probe().await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "not ready: the store cannot be written");
                        false
                    }
                }
            };
            if !disk.is_low() && readiness.check(writable).await {
                "ready".into_response()
            } else {
                ApiError::Unavailable(herald_core::StoreError::new("store")).into_response()
            }
        }
    };
    Route::new("/readyz", &["GET"], Auth::Public, axum::routing::get(ready))
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
