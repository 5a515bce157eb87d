//! Restarts during a broadcast: the real `herald serve` stopped mid-fan-out, with SIGTERM
//! or `kill -9`, then started again, with every message counted at a fake Telegram that
//! answers slowly (so that sends are in flight when the signal comes).

mod support;

use herald_fakes::{FakeTelegram, TelegramScript};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use support::bots::{import, message_event, set_telegram_token};
use support::{accept, status, wait_done, Event, Server};

/// Deliveries in flight at once within one deliver job (`Config::delivery_concurrency`).
const IN_FLIGHT_PER_JOB: usize = 16;
/// Most final outcomes one job holds unrecorded (the processor's outcome batch).
const UNRECORDED_PER_JOB: usize = 20;

/// A bot of `users` Telegram users and a message event, on a new database.
fn broadcast_bot(db: &Path, users: usize) -> Event {
    let event = message_event(db, "shop", "Sale! {{ user.platform_id }}");
    set_telegram_token(db, "shop", support::bots::TOKEN);
    let users: Vec<(&str, String)> = (0..users)
        .map(|i| ("tg", (700_000 + i).to_string()))
        .collect();
    import(db, "shop", &users);
    event
}

fn serve(db: &Path, telegram: &FakeTelegram, extra: &[&str]) -> Server {
    let mut args = vec!["--no-demo", "--telegram-api", &telegram.url];
    args.extend_from_slice(extra);
    Server::start(db, &args)
}

/// A Telegram that takes 100 ms to answer each message and never limits.
async fn slow_telegram() -> FakeTelegram {
    FakeTelegram::start(TelegramScript {
        delay: Duration::from_millis(100),
        ..TelegramScript::default()
    })
    .await
}

/// Wait until Telegram has accepted at least `count` messages.
async fn wait_for_messages(telegram: &FakeTelegram, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while telegram.log.lock().unwrap().accepted_at.len() < count {
        assert!(Instant::now() < deadline, "the broadcast made no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Messages Telegram accepted, users who got one, and users who got more than one.
fn tally(telegram: &FakeTelegram) -> (usize, usize, usize) {
    let log = telegram.log.lock().unwrap();
    (
        log.accepted_at.len(),
        log.delivered.len(),
        log.messaged_more_than_once(),
    )
}

async fn assert_every_user_counted_once(server: &Server, event: &Event, id: &str, users: u64) {
    let s = wait_done(server, event, id).await;
    assert_eq!(
        (
            s["targeted"].as_u64(),
            s["delivered"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(users), Some(users), Some(0)),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_broadcast_messages_nobody_twice() {
    // Paced at 4 messages a second, one deliver job's 100 users take 25 s: longer than the
    // shutdown grace (15 s). The job must stop starting sends at SIGTERM, let those in flight
    // end and record them, and hand the rest on, not be cut off at the grace and re-run.
    let telegram = slow_telegram().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let users = 100;
    let event = broadcast_bot(&db, users);
    let paced = ["--telegram-rate", "4"];
    let server = serve(&db, &telegram, &paced);
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    wait_for_messages(&telegram, 8).await;
    let before = status(&server, &event, &id).await;
    assert_ne!(before["state"], "done", "stopped mid-broadcast: {before}");
    let stopping = Instant::now();
    assert!(server.terminate().success());
    println!("stopped {:?} after SIGTERM", stopping.elapsed());
    let (_, reached_before_restart, _) = tally(&telegram);
    assert!(reached_before_restart < users, "the restart has work left");

    let server = serve(&db, &telegram, &["--telegram-rate", "50"]);
    assert_every_user_counted_once(&server, &event, &id, users as u64).await;
    let (messages, reached, twice) = tally(&telegram);
    println!(
        "SIGTERM after {reached_before_restart} users: {messages} messages, {twice} users twice"
    );
    assert_eq!(reached, users, "every user was messaged");
    assert_eq!(
        twice, 0,
        "nobody is messaged twice across a graceful restart"
    );
    assert_eq!(messages, users);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_broadcast_repeats_at_most_the_sends_in_flight_and_one_batch() {
    // Two workers: one deliver job of the bot at a time, so the bound is one job's
    // deliveries in flight plus one unrecorded batch of outcomes.
    let telegram = slow_telegram().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let users = 1_000;
    let event = broadcast_bot(&db, users);
    let fast = ["--workers", "2", "--telegram-rate", "300"];
    let server = serve(&db, &telegram, &fast);
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    // Mid-job: a deliver job holds 100 users, so 150 is halfway through the second.
    wait_for_messages(&telegram, 150).await;
    server.crash();

    let server = serve(&db, &telegram, &fast);
    assert_every_user_counted_once(&server, &event, &id, users as u64).await;
    let (messages, reached, twice) = tally(&telegram);
    println!("kill -9: {messages} messages, {twice} users twice");
    assert_eq!(reached, users, "every user was messaged");
    let bound = IN_FLIGHT_PER_JOB + UNRECORDED_PER_JOB;
    assert!(
        twice <= bound,
        "{twice} users messaged twice; at most {bound} (in flight + one batch)"
    );
}

#[test]
fn a_shutdown_grace_no_longer_than_the_delivery_timeout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let output = support::herald()
        .args(["serve", "--no-demo", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .args(["--shutdown-grace", "10"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--shutdown-grace must exceed the delivery timeout (10 s)"),
        "{stderr}"
    );
    assert!(!db.exists(), "refused before anything was opened");
}

#[test]
fn a_second_server_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let first = Server::start(&db, &["--no-demo"]);
    let output = support::herald()
        .args(["serve", "--no-demo", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another herald serve is running"),
        "{stderr}"
    );
    // The CLI's other subcommands still work beside it, and a server may start once the
    // first has stopped.
    support::herald_json(&["events", "list", "--db", db.to_str().unwrap()]);
    assert!(first.terminate().success());
    let again = Server::start(&db, &["--no-demo"]);
    assert!(again.terminate().success());
}
