//! Benchmark: embedded fan-out — users/s from accepting `everyone` to every user's
//! `last_request` written, against a raw rusqlite baseline writing the same rows.
//!
//! Herald: USERS users (default 100,000) of one bot, the `log` deliverer, the worker pool
//! with the `herald serve` defaults (32 workers, 100 users per deliver job, 1,000 per expand
//! page), from the POST to the status document saying `done`. Baseline: one process,
//! one connection, the same database file shape, `UPDATE users SET last_request…` for
//! every user in transactions of 1,000 — the least any store must do for the same
//! outcome. The figure is the ratio of the two rates (goal ≥ 0.50).
//!
//!     cargo bench --bench fanout                # USERS=20000 for a quick run; ONLY=herald to profile one side

#[path = "support/mod.rs"]
mod support;

use axum::body::Body;
use axum::http::Request;
use herald_core::worker_pool::{PoolOptions, WorkerPool};
use std::time::{Duration, Instant};
use support::{env_or, machine, today, Embedded};
use tower::ServiceExt;

async fn herald_rate(users: usize, workers: usize) -> f64 {
    // As `herald serve --workers N` configures itself.
    let config = herald_core::Config {
        jobs_per_bot: herald_core::Config::bot_share(workers),
        ..herald_core::Config::default()
    };
    let herald = Embedded::with("big", config).await;
    herald.users("big", users).await;
    let pool = WorkerPool::start(
        herald.app.clone(),
        std::sync::Arc::new(herald.store.clone()),
        PoolOptions {
            workers,
            ..PoolOptions::default()
        },
    );
    let router = herald_core::http::router(herald.app.clone());
    eprintln!("users imported, fan-out starts");
    let started = Instant::now();
    let request = Request::post(&herald.url)
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"platform": "tg", "users": "everyone", "data": {"campaign": "bench"}}"#,
        ))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 202);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let accepted: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let id: herald_core::ids::RequestId = accepted["request_id"].as_str().unwrap().parse().unwrap();
    loop {
        let progress = herald
            .app
            .ports
            .requests
            .progress(&id)
            .await
            .unwrap()
            .unwrap();
        let status = herald_core::status::RequestStatus::from(progress);
        if status.state == "done" {
            assert_eq!(status.delivered, users as u64, "every user reached");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    pool.shutdown(Duration::from_secs(5)).await;
    users as f64 / elapsed.as_secs_f64()
}

async fn baseline_rate(users: usize) -> f64 {
    let herald = Embedded::new("big").await;
    herald.users("big", users).await;
    let path = herald.dir.path().join("herald.db");
    tokio::task::spawn_blocking(move || {
        let mut conn = rusqlite::Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT bm_id FROM users WHERE bot_id = 'big'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let started = Instant::now();
        for chunk in ids.chunks(1000) {
            let tx = conn.transaction().unwrap();
            {
                let mut update = tx
                    .prepare_cached(
                        "UPDATE users SET last_request = ?1, last_request_at = ?2,
                                last_request_id = ?3, last_event_id = ?4
                         WHERE bot_id = 'big' AND bm_id = ?5",
                    )
                    .unwrap();
                for id in chunk {
                    update
                        .execute(rusqlite::params![
                            r#"{"campaign":"bench"}"#,
                            1_i64,
                            "r",
                            "e",
                            id
                        ])
                        .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        ids.len() as f64 / started.elapsed().as_secs_f64()
    })
    .await
    .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users: usize = env_or("USERS", 100_000);
    let workers: usize = env_or("WORKERS", herald_core::Config::DEFAULT_WORKERS);
    println!("embedded fan-out: {} — {}", machine(), today());
    // ONLY=herald (or ONLY=baseline) runs one side, for profiling.
    let only = std::env::var("ONLY").unwrap_or_default();
    if only == "herald" {
        println!(
            "{users} users: herald {:.0} users/s",
            herald_rate(users, workers).await
        );
        return;
    }
    let baseline = baseline_rate(users).await;
    if only == "baseline" {
        println!("{users} users: raw rusqlite {baseline:.0} users/s");
        return;
    }
    let herald = herald_rate(users, workers).await;
    println!(
        "{users} users, {workers} workers: herald {herald:.0} users/s (accept to every last_request written), raw rusqlite {baseline:.0} users/s — ratio {:.3} (goal ≥ 0.50)",
        herald / baseline
    );
}
