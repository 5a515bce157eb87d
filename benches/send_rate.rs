//! Benchmark: how close `herald serve` sends to Telegram's per-bot limit without a 429.
//!
//! A fake Telegram Bot API enforcing 30 messages per second per token (a sliding second,
//! 429 with `retry_after` beyond it) receives a broadcast to USERS users (default 300) from
//! the real `herald` binary with its default settings. The figure is the accepted send
//! rate between the first and the last message, as a ratio of the limit; the goal is at
//! least 0.95 with no 429, and nobody messaged twice (USERS=2500: 16 jobs of 100 users
//! share the bot's pace, so a job without a time budget outlived its lease and ran again).
//!
//!     cargo bench --bench send_rate            # USERS=600 cargo bench --bench send_rate

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/support/mod.rs"]
mod test_support;

use herald_fakes::FakeTelegram;
use serde_json::{json, Value};
use std::io::Write;
use std::time::{Duration, Instant};
use support::{env_or, machine};
use test_support::{herald_json, Server};

const LIMIT: usize = 30;

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let users: usize = env_or("USERS", 300);
    let telegram = FakeTelegram::with_limit(LIMIT).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bench.db");
    let db_arg = db.to_str().unwrap();
    let event = herald_json(&[
        "events",
        "create",
        "--db",
        db_arg,
        "--bot",
        "bench",
        "--name",
        "bench",
        "--action",
        "message",
        "--template",
        "Hello {{ user.platform_id }}",
    ]);
    herald_json(&[
        "bots",
        "set",
        "--db",
        db_arg,
        "--bot",
        "bench",
        "--telegram-token",
        "1:BENCH",
    ]);
    let file = dir.path().join("users.jsonl");
    let mut out = std::fs::File::create(&file).unwrap();
    for i in 0..users {
        writeln!(
            out,
            "{}",
            json!({"platform": "tg", "platform_id": (1_000_000 + i).to_string()})
        )
        .unwrap();
    }
    drop(out);
    herald_json(&[
        "users",
        "import",
        "--db",
        db_arg,
        "--bot",
        "bench",
        file.to_str().unwrap(),
    ]);

    // Killed when dropped, however the run ends.
    let server = Server::start(&db, &["--no-demo", "--telegram-api", &telegram.url]);
    let base = &server.base;
    let client = reqwest::Client::new();
    let url = format!("{base}{}", event["url_with_secret"].as_str().unwrap());
    let accepted: Value = client
        .post(&url)
        .json(&json!({"platform": "tg", "users": "everyone", "data": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let status_url = format!(
        "{base}{}/{}",
        accepted["status_url"]
            .as_str()
            .unwrap_or_else(|| panic!("not accepted: {accepted}")),
        event["secret"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(users as u64 / 10 + 120);
    loop {
        let status: Value = client
            .get(&status_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["state"] == "done" {
            assert_eq!(status["delivered"].as_u64(), Some(users as u64), "{status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the broadcast did not finish: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);

    let log = telegram.log.lock().unwrap();
    let span = log
        .accepted_at
        .last()
        .unwrap()
        .duration_since(log.accepted_at[0]);
    let rate = (log.accepted_at.len() - 1) as f64 / span.as_secs_f64();
    println!("machine: {}", machine());
    println!(
        "send_rate: {users} users, {:.2} s from first to last message",
        span.as_secs_f64()
    );
    println!(
        "send_rate: {rate:.2} messages/s against a limit of {LIMIT}/s: ratio {:.3} (goal >= 0.95)",
        rate / LIMIT as f64
    );
    println!(
        "send_rate: 429 answers received: {} (goal 0)",
        log.rate_limited
    );
    let twice = log
        .delivered
        .values()
        .filter(|texts| texts.len() > 1)
        .count();
    println!("send_rate: users messaged more than once: {twice} (goal 0)");
    assert_eq!(twice, 0, "a user was messaged more than once");
}
