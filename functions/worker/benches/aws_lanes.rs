//! Benchmark: delivery lanes on the AWS shape — order latency during a broadcast, on
//! DynamoDB Local and the SQS emulator, as `template.yaml` deploys it.
//!
//! Two worker instances, each the event source of one queue (the job queue's and the
//! transactional queue's, each invoking its instance on a batch as soon as the last
//! invocation ended), both spending the bot's one send budget in DynamoDB. A fake Telegram
//! enforces 30 messages/s per token and one per second per chat. A BROADCAST-user request
//! (default 3,000; it says `"lane": "bulk"`, so that a smoke run of 100 is bulk too) is
//! accepted through the `api` handler; while it runs, a one-user order (transactional) to a
//! user outside the broadcast is accepted every 0.5 s. Figures: order latency from accept to
//! arrival at the fake (p50, p99, max), and the broadcast's rate as a ratio of what the
//! orders leave of the limit and of Herald's pace (the limit less 5%). Needs the emulators:
//!
//!     infra/emulators start && . .cache/run/env && cargo bench -p herald-worker --bench aws_lanes

#[path = "../tests/stack/mod.rs"]
mod stack;

use stack::*;
use std::collections::HashMap;
use std::time::Instant;

const LIMIT: usize = 30;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Accept a one-user order every 0.5 s until the broadcast `broadcast_id` has fewer than
/// 100 users to go: when each order's user was accepted, by chat.
async fn orders_during(stack: &Stack, broadcast_id: &str) -> HashMap<String, Instant> {
    let mut accepted_at = HashMap::new();
    for n in 0.. {
        let status = stack.status(broadcast_id).await;
        if status["state"] == "done" || status["pending"].as_u64() < Some(100) {
            break;
        }
        let chat = (7_000_000 + n).to_string();
        let sent = Instant::now();
        let (code, body) = stack
            .api_body(json!({"platform": "tg", "users": [chat], "data": {"order": n}}))
            .await;
        assert_eq!(code, 202, "{body}");
        accepted_at.insert(chat, sent);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    accepted_at
}

#[tokio::main]
async fn main() {
    let users = env_or("BROADCAST", 3_000);
    let telegram = FakeTelegram::start(TelegramScript {
        limit_per_second: LIMIT,
        chat_gap: Duration::from_secs(1),
        ..TelegramScript::default()
    })
    .await;
    let broadcast: Vec<String> = (0..users).map(|i| (1_000_000 + i).to_string()).collect();
    let orders = (0..users / 10 + 100).map(|n| (7_000_000 + n).to_string());
    let everybody: Vec<String> = broadcast.iter().cloned().chain(orders).collect();
    // Stack::on_lanes paces at 30/s: the fake's LIMIT.
    let stack = Stack::on_lanes(&telegram, "bench", &everybody).await;
    let (code, accepted) = stack
        .api_body(json!({"platform": "tg", "users": broadcast, "lane": "bulk"}))
        .await;
    assert_eq!(code, 202, "{accepted}");
    let broadcast_id = accepted["request_id"].as_str().unwrap().to_string();
    let (_, accepted_at) = tokio::join!(stack.drain_lanes(), orders_during(&stack, &broadcast_id));
    // Whatever the orders left after the broadcast's queue emptied.
    stack.drain_lanes().await;
    let done = stack.status(&broadcast_id).await;
    assert_eq!(done["delivered"], users as u64, "{done}");
    report(&telegram, users, &accepted_at);
}

/// The figures, from the fake's record (orders by their chat: their users are outside the
/// broadcast).
fn report(telegram: &FakeTelegram, users: usize, accepted_at: &HashMap<String, Instant>) {
    let log = telegram.log.lock().unwrap();
    herald_fakes::lanes_report::print("aws lanes", &log, (users, LIMIT), accepted_at, |chat, _| {
        chat
    });
}
