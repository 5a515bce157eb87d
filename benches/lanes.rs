//! Benchmark: an order confirmation during a broadcast, and a paid broadcast.
//!
//! 1. A fake Telegram enforcing 30 messages per second per token and one per second per
//!    chat receives a broadcast to BROADCAST users (default 10,000) of one bot from the
//!    real `herald` binary with its default settings; meanwhile a one-user message, each
//!    to a different user, is sent every 0.5 s through another event of the same bot.
//!    Figures: latency from sending the request to the message's arrival at the fake, p50
//!    and p99 (goal: p99 under 1 s); the broadcast's own rate as a ratio of what the
//!    transactional traffic leaves of the bot's limit (goal at least 0.95) and of Herald's
//!    pace (the limit less its 5% margin); 429 answers (goal 0).
//! 2. PAID users (default 10,000) of a bot with `paid_broadcast` on and `rate` 1,000, at a
//!    fake enforcing 1,000 paid messages per second: the rate as a ratio of 1,000 (goal at
//!    least 0.9) and 429 answers (goal 0).
//!
//!     cargo bench --bench lanes            # BROADCAST=3000 PAID=5000 cargo bench --bench lanes

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/support/mod.rs"]
mod test_support;

use herald_fakes::{FakeTelegram, TelegramScript};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{env_or, machine};
use test_support::{bots, herald_json, Server};

const LIMIT: usize = 30;
const PAID_LIMIT: usize = 1000;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("machine: {}", machine());
    during_a_broadcast(env_or("BROADCAST", 10_000)).await;
    paid_broadcast(env_or("PAID", 10_000)).await;
}

/// A bot `bench` with `users` users on `tg` (ids from 1,000,000) and the Telegram token
/// set; `settings` are further `--connection` values.
fn bot(db: &Path, users: usize, settings: &[&str]) {
    bots::set_telegram_token(db, "bench", "1:BENCH");
    if !settings.is_empty() {
        let mut args = vec!["bots", "set", "--db", bots::db_arg(db), "--bot", "bench"];
        for setting in settings {
            args.extend(["--connection", setting]);
        }
        herald_json(&args);
    }
    let users: Vec<(&str, String)> = (0..users)
        .map(|i| ("tg", (1_000_000 + i).to_string()))
        .collect();
    bots::import(db, "bench", &users);
}

/// An event of `bench` sending `template`: its URL with the secret, and the secret.
fn event(db: &Path, template: &str) -> (String, String) {
    let created = bots::message_event(db, "bench", template);
    (
        format!("/v1/events/{}/{}", created.id, created.secret),
        created.secret,
    )
}

/// POST `body` to the event; the status URL with its secret.
async fn accept(base: &str, (url, secret): &(String, String), body: Value) -> String {
    let accepted: Value = reqwest::Client::new()
        .post(format!("{base}{url}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status = accepted["status_url"]
        .as_str()
        .unwrap_or_else(|| panic!("not accepted: {accepted}"));
    format!("{base}{status}/{secret}")
}

/// Wait until the request at `status_url` is done; its status document.
async fn done(status_url: &str, deadline: Duration) -> Value {
    let deadline = Instant::now() + deadline;
    loop {
        let status: Value = reqwest::get(status_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["state"] == "done" {
            return status;
        }
        assert!(Instant::now() < deadline, "not finished: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn during_a_broadcast(users: usize) {
    let telegram = FakeTelegram::start(TelegramScript {
        limit_per_second: LIMIT,
        chat_gap: Duration::from_secs(1),
        ..TelegramScript::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let promo = event(&db, "Promotion for {{ user.platform_id }}");
    let order = event(&db, "Order {{ last_request.order }}");
    bot(&db, users, &[]);
    let server = Server::start(&db, &["--no-demo", "--telegram-api", &telegram.url]);
    let base = server.base.clone();
    let broadcast = accept(
        &base,
        &promo,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    // One order every 0.5 s, each to a different user, while the broadcast runs.
    let mut accepted_at: HashMap<String, Instant> = HashMap::new();
    let mut n = 0;
    loop {
        let status: Value = reqwest::get(&broadcast)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Until the broadcast, once enumerated, has fewer than 100 users to go.
        let enumerated = status["targeted"].is_u64();
        if status["state"] == "done" || (enumerated && status["pending"].as_u64() < Some(100)) {
            break;
        }
        let chat = (1_000_000 + (n * 7919) % users).to_string();
        let body = json!({"platform": "tg", "users": [chat], "data": {"order": n}});
        let sent = Instant::now();
        accept(&base, &order, body).await;
        accepted_at.insert(format!("Order {n}"), sent);
        n += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    done(&broadcast, Duration::from_secs(users as u64 / 10 + 300)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(server);
    report(&telegram, users, &accepted_at);
}

/// The figures of [`during_a_broadcast`], from the fake's record (orders by their text:
/// their users are the broadcast's too).
fn report(telegram: &FakeTelegram, users: usize, accepted_at: &HashMap<String, Instant>) {
    let log = telegram.log.lock().unwrap();
    herald_fakes::lanes_report::print("lanes", &log, (users, LIMIT), accepted_at, |_, text| text);
}

async fn paid_broadcast(users: usize) {
    let telegram = FakeTelegram::start(TelegramScript {
        limit_per_second: LIMIT,
        paid_limit_per_second: PAID_LIMIT,
        ..TelegramScript::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let promo = event(&db, "Promotion for {{ user.platform_id }}");
    bot(
        &db,
        users,
        &["telegram.paid_broadcast=true", "telegram.rate=1000"],
    );
    let server = Server::start(&db, &["--no-demo", "--telegram-api", &telegram.url]);
    let broadcast = accept(
        &server.base,
        &promo,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    let status = done(&broadcast, Duration::from_secs(users as u64 / 100 + 300)).await;
    assert_eq!(status["delivered"].as_u64(), Some(users as u64), "{status}");
    drop(server);
    let log = telegram.log.lock().unwrap();
    let times: Vec<Instant> = log.arrivals.iter().map(|(_, _, at)| *at).collect();
    let span = times[times.len() - 1]
        .duration_since(times[0])
        .as_secs_f64();
    let rate = (times.len() - 1) as f64 / span;
    println!(
        "paid: {users} users, {span:.2} s, {rate:.1} msg/s: ratio {:.3} of {PAID_LIMIT}/s (goal >= 0.9); all paid: {}",
        rate / PAID_LIMIT as f64,
        log.paid as usize == users
    );
    println!("paid: 429 answers: {} (goal 0)", log.rate_limited);
}
