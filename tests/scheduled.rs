//! Scheduled sends on the real `herald serve`, counted at a fake Telegram: a request with
//! `send_at` is sent at its time — not before, across a restart in between, with
//! `everyone` read then — and a scheduled request cancelled before its time sends nothing.
//!
//! "Not before" is checked against the fake's record of when each message arrived; the
//! horizons are a few seconds, and nothing here times Herald.

mod support;

use herald_core::domain::now_ms;
use herald_core::status::rfc3339;
use herald_fakes::{FakeTelegram, TelegramScript};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::bots::{db_arg, import, message_event, set_telegram_token, TOKEN};
use support::{accept, herald_json, status, wait_done, Event, Server};

fn serve(db: &Path, telegram: &FakeTelegram) -> Server {
    Server::start(db, &["--no-demo", "--telegram-api", &telegram.url])
}

fn users(range: std::ops::Range<u32>) -> Vec<(&'static str, String)> {
    range.map(|i| ("tg", i.to_string())).collect()
}

/// A database in `dir` with a bot `shop` connected to a fresh fake, users `0..count` and
/// one message event with `template`.
async fn shop(dir: &Path, template: &str, count: u32) -> (PathBuf, FakeTelegram, Event) {
    let db = dir.join("herald.db");
    let telegram = FakeTelegram::start(TelegramScript::default()).await;
    let event = message_event(&db, "shop", template);
    set_telegram_token(&db, "shop", TOKEN);
    import(&db, "shop", &users(0..count));
    (db, telegram, event)
}

/// The instant `at` (Unix milliseconds) stands for on this process's monotonic clock,
/// which the fake stamps arrivals with.
fn instant_of(at: i64) -> Instant {
    let (now_instant, now) = (Instant::now(), now_ms());
    if at >= now {
        now_instant + Duration::from_millis((at - now) as u64)
    } else {
        now_instant - Duration::from_millis((now - at) as u64)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_broadcast_outlives_a_restart_reads_everyone_at_its_time_and_is_never_early() {
    let dir = tempfile::tempdir().unwrap();
    let (db, telegram, promo) = shop(dir.path(), "Sale for {{ user.platform_id }}", 20).await;
    let server = serve(&db, &telegram);
    let send_at = now_ms() + 5_000;
    let request_id = accept(
        &server,
        &promo,
        json!({"platform": "tg", "users": "everyone", "send_at": rfc3339(send_at)}),
    )
    .await;
    let waiting = status(&server, &promo, &request_id).await;
    assert_eq!(waiting["state"], "scheduled", "{waiting}");
    assert_eq!(waiting["send_at"], json!(rfc3339(send_at)));
    // A graceful restart before its time; users imported meanwhile are part of everyone.
    assert!(server.terminate().success());
    import(&db, "shop", &users(20..25));
    let server = serve(&db, &telegram);
    let done = wait_done(&server, &promo, &request_id).await;
    assert_eq!(
        (&done["delivered"], &done["targeted"]),
        (&json!(25), &json!(25)),
        "{done}"
    );
    let log = telegram.log.lock().unwrap();
    assert_eq!(log.arrivals.len(), 25, "each user once");
    let due = instant_of(send_at);
    let early: Vec<_> = log.arrivals.iter().filter(|(_, _, at)| *at < due).collect();
    assert!(early.is_empty(), "sent before send_at: {early:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_request_cancelled_before_its_time_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, telegram, order) = shop(dir.path(), "Order {{ last_request.order }}", 3).await;
    let server = serve(&db, &telegram);
    let request_id = accept(
        &server,
        &order,
        json!({"platform": "tg", "users": ["0", "1", "2"], "data": {"order": 7},
               "send_at": rfc3339(now_ms() + 3_000)}),
    )
    .await;
    let cancelled = herald_json(&["requests", "cancel", &request_id, "--db", db_arg(&db)]);
    assert_eq!(cancelled["state"], "cancelled", "{cancelled}");
    // Its jobs come up at once to count their users cancelled, not at send_at.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&server, &order, &request_id).await;
        if s["cancelled"] == 3 {
            assert_eq!(
                (&s["state"], &s["delivered"]),
                (&json!("cancelled"), &json!(0))
            );
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(telegram.log.lock().unwrap().arrivals.is_empty());
}
