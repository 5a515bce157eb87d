//! Benchmark: what accepting `everyone` costs for a bot with USERS users (default
//! 1,000,000), against accepting one explicit user, in the same process and database.
//!
//! Both go through the Router in process (no sockets), alternately, ROUNDS times each
//! (default 200); the figure is the ratio of their median latencies. `everyone` is
//! accepted with one `expand` job per shard, whatever the audience size, so the goal is a
//! ratio of at most 1.2.
//!
//!     cargo bench --bench everyone_accept       # USERS=100000 ROUNDS=500 …

#[path = "support/mod.rs"]
mod support;

use axum::body::Body;
use axum::http::Request;
use std::time::{Duration, Instant};
use support::{env_or, machine, ms, quantile, today, Embedded};
use tower::ServiceExt;

async fn accept(router: &axum::Router, url: &str, body: &str) -> Duration {
    let request = Request::post(url)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let started = Instant::now();
    let response = router.clone().oneshot(request).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 202);
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users: usize = env_or("USERS", 1_000_000);
    let rounds: usize = env_or("ROUNDS", 200);
    println!("everyone accept cost: {} — {}", machine(), today());
    let herald = Embedded::new("big").await;
    let started = Instant::now();
    herald.users("big", users).await;
    println!(
        "imported {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let router = herald_core::http::router(herald.app.clone());
    let everyone = r#"{"platform": "tg", "users": "everyone", "data": {}}"#;
    let one = r#"{"platform": "tg", "users": ["7"], "data": {}}"#;
    for _ in 0..20 {
        accept(&router, &herald.url, one).await;
        accept(&router, &herald.url, everyone).await;
    }
    let (mut all, mut single) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        single.push(accept(&router, &herald.url, one).await);
        all.push(accept(&router, &herald.url, everyone).await);
    }
    let (a50, a99) = (quantile(&mut all, 0.5), quantile(&mut all, 0.99));
    let (s50, s99) = (quantile(&mut single, 0.5), quantile(&mut single, 0.99));
    println!(
        "everyone over {users} users: p50 {} p99 {}; one explicit user: p50 {} p99 {} — median ratio {:.2} (goal ≤ 1.2)",
        ms(a50),
        ms(a99),
        ms(s50),
        ms(s99),
        a50.as_secs_f64() / s50.as_secs_f64()
    );
}
