//! Benchmark: a bounded soak of the real `herald serve` — accepts at half the rate it can
//! take while fan-out runs beside them, for minutes, with its resources watched.
//!
//! The server runs with its defaults (32 workers, group commit, WAL rewinding) except
//! retention, shortened so that a soak of minutes goes through many sweeps: finished
//! requests are kept RETENTION seconds (default 60) and swept every SWEEP seconds
//! (default 15). Two bots:
//! - `shop`: the External Event document's example naming USERS_PER_REQUEST (default 1)
//!   users, delivered by the log deliverer (a bot with no connection);
//! - `news`: AUDIENCE users (default 2,000), an `everyone` to them every EVERYONE seconds
//!   (default 10), each user's screen a signed webhook to a fake engine in this process.
//!
//! 1. capacity: 64 connections back to back for CAPACITY_SECONDS (default 5) with the
//!    fan-out running, then until every job is done — the requests/s it sustains (its
//!    accept path alone is faster, but the jobs would pile up behind it);
//! 2. soak: an open loop at half that rate (or RATE) for SECONDS (default 300). A latency counts
//!    from when its request was due (no coordinated omission). Every 10 s a line: the
//!    window's rate, p50 and p99, the server's resident memory, the database file and its
//!    WAL, and the jobs waiting. The baseline, measured beside it the same way: `/healthz`
//!    of the same server at 50 requests/s (the same edge and CPUs, no store).
//!
//! Checked at the end (the run fails otherwise; these are resources, not timings): every
//! request answered 202 and recorded or swept, every `everyone` done, the queue drained,
//! resident memory no more than MEMORY_BOUND_MB (default 128) above what it was after the
//! capacity phase, and the database file (with its WAL) at the end no larger than
//! FILE_BOUND (default 1.5) times its size one retention period plus one sweep into the
//! soak, when the first requests began to be swept. p99 ≤ 10 ms is the goal, printed.
//!
//!     cargo bench --bench soak                  # SECONDS=60 for a short run
//!     SERVE_ARGS="--workers 8" cargo bench --bench soak   # other server flags

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/support/mod.rs"]
mod test_support;

use herald_fakes::FakeEngine;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{env_or, machine, ms, quantile, today};
use test_support::{herald_json, metrics, Server};

const CONNECTIONS: usize = 64;
const ADMIN_TOKEN: &str = "soak-admin-token-0123456789";
const ENGINE_SECRET: &str = "soak-engine-secret";
const WINDOW: Duration = Duration::from_secs(10);

fn request_body(users: usize) -> String {
    let users: Vec<String> = (0..users).map(|i| (123_456 + i).to_string()).collect();
    serde_json::json!({"platform": "tg", "users": users, "data": {"order": 42}}).to_string()
}

struct Soak {
    server: Server,
    client: reqwest::Client,
    shop_url: String,
    news_url: String,
    news_secret: String,
    body: String,
}

impl Soak {
    async fn send(&self) -> bool {
        let response = self
            .client
            .post(&self.shop_url)
            .header("content-type", "application/json")
            .body(self.body.clone())
            .send()
            .await;
        match response {
            Ok(response) => {
                let accepted = response.status() == 202;
                let _ = response.bytes().await;
                accepted
            }
            Err(_) => false,
        }
    }

    /// An `everyone` to the news bot's audience; its request id.
    async fn everyone(&self) -> String {
        let response = self
            .client
            .post(&self.news_url)
            .bearer_auth(&self.news_secret)
            .json(
                &serde_json::json!({"platform": "tg", "users": "everyone", "data": {"edition": 1}}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        body["request_id"].as_str().unwrap().to_string()
    }

    async fn state(&self, request_id: &str) -> String {
        let response = self
            .client
            .get(self.server.url(&format!("/v1/admin/requests/{request_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            return "swept".into();
        }
        let body: serde_json::Value = response.json().await.unwrap();
        body["state"].as_str().unwrap_or("?").to_string()
    }

    /// Jobs waiting, from `/metrics`.
    async fn queued(&self) -> u64 {
        metrics(&self.server, ADMIN_TOKEN)
            .await
            .lines()
            .find(|l| l.starts_with("herald_queue_depth"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64
    }

    /// Wait until no job is waiting (at most two minutes).
    async fn drained(&self) {
        let by = Instant::now() + Duration::from_secs(120);
        while self.queued().await > 0 {
            assert!(Instant::now() < by, "the queue did not drain");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn file_bytes(&self) -> (u64, u64) {
        let size = |suffix: &str| {
            let mut path = self.server.db.clone().into_os_string();
            path.push(suffix);
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        };
        (size(""), size("-wal"))
    }
}

/// The rate the server sustains, fan-out included: CONNECTIONS requests in flight for
/// `length`, then until the queue has drained; requests answered 202 per second of all
/// that. (Accepting alone goes faster, but its jobs would pile up.)
async fn capacity(soak: &Arc<Soak>, length: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (soak, done) = (soak.clone(), done.clone());
            tokio::spawn(async move {
                while started.elapsed() < length {
                    // A 503 (the bot's backlog cap) is not counted.
                    if soak.send().await {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let accepting = started.elapsed();
    soak.drained().await;
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "capacity: {} requests accepted in {accepting:.1?} with the fan-out running, all done after {:.1?}: {rate:.0} req/s sustained",
        done.load(Ordering::Relaxed),
        started.elapsed()
    );
    rate
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::main]
async fn main() {
    let length = Duration::from_secs(env_or("SECONDS", 300));
    let retention = env_or("RETENTION", 60u64);
    let sweep = env_or("SWEEP", 15u64);
    let audience = env_or("AUDIENCE", 2_000usize);
    let everyone_every = Duration::from_secs(env_or("EVERYONE", 10));
    let memory_bound = env_or("MEMORY_BOUND_MB", 128u64) * 1024 * 1024;
    let file_bound = env_or("FILE_BOUND", 1.5f64);
    println!("soak: {} — {}", machine(), today());

    let engine = FakeEngine::start(ENGINE_SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let db_arg = db.to_str().unwrap();
    let shop = herald_json(&[
        "events", "create", "--db", db_arg, "--bot", "shop", "--name", "soak", "--action",
        "screen", "--screen", "welcome",
    ]);
    let news = herald_json(&[
        "events", "create", "--db", db_arg, "--bot", "news", "--name", "edition", "--action",
        "screen", "--screen", "edition",
    ]);
    let retention_days = format!("{}", retention as f64 / 86_400.0);
    let sweep_every = sweep.to_string();
    let extra = std::env::var("SERVE_ARGS").unwrap_or_default();
    let mut args = vec![
        "--no-demo",
        "--admin-token",
        ADMIN_TOKEN,
        "--retention-days",
        &retention_days,
        "--retention-sweep-every",
        &sweep_every,
    ];
    args.extend(extra.split_whitespace());
    let server = Server::start(&db, &args);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS * 4)
        .build()
        .unwrap();
    let admin = |method: reqwest::Method, path: &str| {
        client
            .request(method, server.url(path))
            .bearer_auth(ADMIN_TOKEN)
    };
    let patched = admin(reqwest::Method::PATCH, "/v1/admin/bots/news")
        .json(&serde_json::json!({"screen_url": engine.url, "signing_secret": ENGINE_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200, "{:?}", patched.text().await);
    let csv: String = std::iter::once("platform,platform_id\n".to_string())
        .chain((0..audience).map(|i| format!("tg,{i}\n")))
        .collect();
    let imported = admin(reqwest::Method::POST, "/v1/admin/bots/news/users")
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(imported.status(), 200);
    let secret_of = |event: &serde_json::Value| event["secret"].as_str().unwrap().to_string();
    let soak = Arc::new(Soak {
        shop_url: server.url(shop["url_with_secret"].as_str().unwrap()),
        news_url: server.url(news["event"]["url"].as_str().unwrap()),
        news_secret: secret_of(&news),
        client: client.clone(),
        body: request_body(env_or("USERS_PER_REQUEST", 1)),
        server,
    });

    // The fan-out runs throughout: an `everyone` every EVERYONE seconds.
    let stop = tokio_util::sync::CancellationToken::new();
    let editions = Arc::new(Mutex::new(Vec::new()));
    let fan_out = {
        let (soak, stop, editions) = (soak.clone(), stop.clone(), editions.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(everyone_every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = ticker.tick() => {
                        let request_id = soak.everyone().await;
                        editions.lock().unwrap().push(request_id);
                    }
                }
            }
        })
    };

    let capacity_for = Duration::from_secs(env_or("CAPACITY_SECONDS", 5));
    let sustained = capacity(&soak, capacity_for).await;
    // RATE fixes the soak's rate instead, so that two builds compare at the same load.
    let rate = env_or("RATE", sustained / 2.0);
    println!("the soak runs at {rate:.0} req/s (half of that unless RATE says) for {length:?}");
    let warm_memory = soak.server.resident_bytes();

    // The baseline beside it: `/healthz` of the same server, 50 times a second, timed the
    // same way. It passes through the same HTTP edge, runtime and CPUs but not the store,
    // so the p99 ratio says what the store adds to a request under this load.
    let health = {
        let (soak, stop) = (soak.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut samples = Vec::new();
            loop {
                let due = tokio::select! {
                    _ = stop.cancelled() => break,
                    due = ticker.tick() => due,
                };
                let url = soak.server.url("/healthz");
                let response = soak.client.get(url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let _ = response.bytes().await;
                samples.push(due.elapsed());
            }
            samples
        })
    };

    // The open loop, with a sampler line every WINDOW.
    let interval = Duration::from_secs_f64(1.0 / rate);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let window: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut all: Vec<Duration> = Vec::new();
    let refused = Arc::new(AtomicU64::new(0));
    let mut sent = 0u64;
    let mut next_line = started + WINDOW;
    let mut max_memory = warm_memory;
    let mut max_wal = 0u64;
    let baseline_at = Duration::from_secs(retention + sweep);
    let mut baseline_file: Option<u64> = None;
    let mut tasks = Vec::new();
    while started.elapsed() < length {
        let due = ticker.tick().await;
        sent += 1;
        tasks.push(tokio::spawn({
            let (soak, window, refused) = (soak.clone(), window.clone(), refused.clone());
            async move {
                if !soak.send().await {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                window.lock().unwrap().push(due.elapsed());
            }
        }));
        if Instant::now() >= next_line {
            next_line += WINDOW;
            tasks.retain(|t| !t.is_finished());
            let mut samples = std::mem::take(&mut *window.lock().unwrap());
            let memory = soak.server.resident_bytes();
            let (file, wal) = soak.file_bytes();
            max_memory = max_memory.max(memory);
            max_wal = max_wal.max(wal);
            if baseline_file.is_none() && started.elapsed() >= baseline_at {
                baseline_file = Some(file + wal);
            }
            println!(
                "{:>4} s: {:.0} req/s, p50 {} p99 {}, memory {}, file {} + wal {}, {} jobs waiting",
                started.elapsed().as_secs(),
                samples.len() as f64 / WINDOW.as_secs_f64(),
                ms(quantile(&mut samples, 0.5)),
                ms(quantile(&mut samples, 0.99)),
                mib(memory),
                mib(file),
                mib(wal),
                soak.queued().await
            );
            all.extend(samples);
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    all.extend(std::mem::take(&mut *window.lock().unwrap()));
    stop.cancel();
    fan_out.await.unwrap();
    let mut health = health.await.unwrap();

    // Let the fan-out finish, then check what the soak promised.
    soak.drained().await;
    let editions = editions.lock().unwrap().clone();
    for request_id in &editions {
        let state = soak.state(request_id).await;
        assert!(
            state == "done" || state == "swept",
            "everyone {request_id}: {state}"
        );
    }
    let (file, wal) = soak.file_bytes();
    let end_file = file + wal;
    let p99 = quantile(&mut all, 0.99);
    let refused = refused.load(Ordering::Relaxed);
    println!(
        "soak: {sent} requests at {rate:.0} req/s, {refused} not answered 202; {} everyone of {audience} users, {} webhooks received",
        editions.len(),
        engine.log.lock().unwrap().accepted.len()
    );
    println!(
        "latency over the soak: p50 {} p99 {} (goal p99 ≤ 10 ms: {})",
        ms(quantile(&mut all, 0.5)),
        ms(p99),
        if p99 <= Duration::from_millis(10) {
            "met"
        } else {
            "not met"
        }
    );
    let health_p99 = quantile(&mut health, 0.99);
    println!(
        "baseline, /healthz at 50/s beside it: p50 {} p99 {} — accept p99 ratio {:.2}",
        ms(quantile(&mut health, 0.5)),
        ms(health_p99),
        p99.as_secs_f64() / health_p99.as_secs_f64().max(1e-9)
    );
    let memory_growth = max_memory.saturating_sub(warm_memory);
    println!(
        "memory: {} after the capacity phase, at most {} during the soak (+{}, bound +{})",
        mib(warm_memory),
        mib(max_memory),
        mib(memory_growth),
        mib(memory_bound)
    );
    let baseline_file = baseline_file.unwrap_or(end_file);
    println!(
        "database: {} with its WAL {}s in (retention + one sweep), {} at the end (ratio {:.2}, bound {file_bound}); WAL at most {}",
        mib(baseline_file),
        baseline_at.as_secs(),
        mib(end_file),
        end_file as f64 / baseline_file.max(1) as f64,
        mib(max_wal)
    );
    assert_eq!(refused, 0, "every request is answered 202");
    assert!(
        memory_growth <= memory_bound,
        "resident memory grew by {} (bound {})",
        mib(memory_growth),
        mib(memory_bound)
    );
    assert!(
        end_file as f64 <= baseline_file as f64 * file_bound,
        "the database grew from {} to {}",
        mib(baseline_file),
        mib(end_file)
    );
}
