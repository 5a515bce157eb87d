//! Delivery lanes at a fake Telegram: the real `herald serve` at Telegram's rate (30
//! messages a second per bot), against a fake that enforces 30 a second per token and
//! one message a second per chat and records the order messages arrive in.
//!
//! Every assertion counts messages at the fake (which came before which, how many arrived
//! between two events); none times Herald.

mod support;

use herald_fakes::{FakeTelegram, TelegramScript};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::bots::{import, message_event, set_telegram_token, TOKEN};
use support::{accept, wait_done, Event, Server};

/// A fake that limits like Telegram: 30 messages a second per token, one a second per chat.
fn like_telegram() -> TelegramScript {
    TelegramScript {
        limit_per_second: 30,
        chat_gap: Duration::from_secs(1),
        ..TelegramScript::default()
    }
}

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// A bot `shop` connected to the fake, with users `ids`, a `promo` and an `order` event.
fn shop(db: &Path, users: &[String]) -> (Event, Event) {
    let promo = message_event(db, "shop", "Promotion for {{ user.platform_id }}");
    let order = message_event(db, "shop", "Order {{ last_request.order }} is ready");
    set_telegram_token(db, "shop", TOKEN);
    let users: Vec<(&str, String)> = users.iter().map(|id| ("tg", id.clone())).collect();
    import(db, "shop", &users);
    (promo, order)
}

/// `herald serve` at Telegram's rate against the fake, with deliver jobs of 10 users: a
/// 300-user broadcast is 30 jobs, more than a bot may run at once (16), so that some wait
/// in the queue and the rest at the bot's pace, as a large broadcast's do.
fn serve(db: &Path, telegram: &FakeTelegram) -> Server {
    Server::start(
        db,
        &[
            "--no-demo",
            "--telegram-api",
            &telegram.url,
            "--deliver-batch",
            "10",
            "--retry-base-ms",
            "50",
        ],
    )
}

/// Wait until the fake has accepted at least `n` messages (at most two minutes).
async fn arrived(telegram: &FakeTelegram, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let count = telegram.log.lock().unwrap().arrivals.len();
        if count >= n {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} of {n} messages arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn chats_in_order(telegram: &FakeTelegram) -> Vec<String> {
    let log = telegram.log.lock().unwrap();
    log.arrivals
        .iter()
        .map(|(chat, _, _)| chat.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_confirmation_overtakes_a_broadcast_already_queued() {
    let telegram = FakeTelegram::start(like_telegram()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut users = ids(1000..1300);
    users.push("777".into());
    let (promo, order) = shop(&db, &users);
    let server = serve(&db, &telegram);
    // 300 explicit users: bulk by default. Its jobs are all queued and pacing.
    let broadcast = accept(
        &server,
        &promo,
        json!({"platform": "tg", "users": ids(1000..1300)}),
    )
    .await;
    let before = arrived(&telegram, 30).await;
    // One user, another event of the same bot: transactional by default.
    let confirmation = accept(
        &server,
        &order,
        json!({"platform": "tg", "users": ["777"], "data": {"order": 9}}),
    )
    .await;
    let done = wait_done(&server, &order, &confirmation).await;
    assert_eq!(done["lane"], "transactional");
    // The broadcast, still under way, says when it expects to be done; once done, not.
    let running = support::status(&server, &promo, &broadcast).await;
    assert_eq!(running["state"], "running", "{running}");
    let eta = running["eta"].as_str().expect("an eta while running");
    assert!(
        eta > running["updated_at"].as_str().unwrap(),
        "the eta is ahead of the last outcome: {running}"
    );
    let finished = wait_done(&server, &promo, &broadcast).await;
    assert_eq!(finished["delivered"], 300, "{finished}");
    assert_eq!(finished["eta"], serde_json::Value::Null);
    let chats = chats_in_order(&telegram);
    let at = chats
        .iter()
        .position(|c| c == "777")
        .expect("the order arrived");
    assert!(
        at - before <= 30,
        "{} broadcast messages arrived between the order's accept and its arrival",
        at - before
    );
    assert!(
        chats.len() - at > 200,
        "the order came before the broadcast's remaining messages, not after them"
    );
    let log = telegram.log.lock().unwrap();
    assert_eq!(
        log.rate_limited, 0,
        "no 429 at the limit: {:?}",
        log.limited
    );
    assert_eq!(log.messaged_more_than_once(), 0);
    drop(log);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_keeps_its_floor_share_while_transactional_traffic_saturates_the_bot() {
    let telegram = FakeTelegram::start(like_telegram()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let transactional = ids(2000..2400);
    let bulk = ids(5000..5020);
    let users: Vec<String> = transactional.iter().chain(&bulk).cloned().collect();
    let (promo, order) = shop(&db, &users);
    let server = serve(&db, &telegram);
    // 400 users in 40 transactional requests: the bot's whole rate for 14 s.
    let mut orders = Vec::new();
    for batch in transactional.chunks(10) {
        orders.push(
            accept(
                &server,
                &order,
                json!({"platform": "tg", "users": batch, "data": {"order": 1}}),
            )
            .await,
        );
    }
    let broadcast = accept(
        &server,
        &promo,
        json!({"platform": "tg", "users": bulk, "lane": "bulk"}),
    )
    .await;
    wait_done(&server, &promo, &broadcast).await;
    for id in &orders {
        wait_done(&server, &order, id).await;
    }
    let chats = chats_in_order(&telegram);
    assert_eq!(chats.len(), 420);
    let last_bulk = chats
        .iter()
        .rposition(|c| bulk.contains(c))
        .expect("the broadcast arrived");
    // At one turn in ten, 20 bulk messages take about 200 turns; starved, they would
    // come after all 400 transactional ones.
    assert!(
        last_bulk < 300,
        "the broadcast's last message was number {last_bulk} of 420"
    );
    assert!(
        chats[last_bulk + 1..]
            .iter()
            .all(|c| transactional.contains(c)),
        "transactional traffic was still waiting when the broadcast ended"
    );
    let log = telegram.log.lock().unwrap();
    assert_eq!(
        log.rate_limited, 0,
        "no 429 at the limit: {:?}",
        log.limited
    );
    drop(log);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_messages_to_one_chat_are_spaced_by_the_chat_gap_never_sent_into_a_429() {
    let telegram = FakeTelegram::start(like_telegram()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let (_, order) = shop(&db, &ids(1..4));
    let server = serve(&db, &telegram);
    let mut requests = Vec::new();
    for n in 0..3 {
        requests.push(
            accept(
                &server,
                &order,
                json!({"platform": "tg", "users": ["1", "2", "3"], "data": {"order": n}}),
            )
            .await,
        );
    }
    for id in &requests {
        let done = wait_done(&server, &order, id).await;
        assert_eq!(done["delivered"], 3, "{done}");
    }
    let log = telegram.log.lock().unwrap();
    assert_eq!(log.rate_limited, 0, "never into a 429: {:?}", log.limited);
    let mut by_chat: HashMap<&str, Vec<Instant>> = HashMap::new();
    for (chat, _, at) in &log.arrivals {
        by_chat.entry(chat.as_str()).or_default().push(*at);
    }
    for (chat, times) in by_chat {
        assert_eq!(times.len(), 3, "{chat}");
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_secs(1),
                "{chat}: two messages {:?} apart",
                pair[1] - pair[0]
            );
        }
    }
    drop(log);
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_whole_bot_for_its_retry_after() {
    let telegram = FakeTelegram::start(TelegramScript {
        limited_once: HashMap::from([("9000".to_string(), 2)]),
        ..like_telegram()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let users = ids(9000..9040);
    let (promo, _) = shop(&db, &users);
    let server = serve(&db, &telegram);
    let id = accept(
        &server,
        &promo,
        json!({"platform": "tg", "users": users, "lane": "bulk"}),
    )
    .await;
    let done = wait_done(&server, &promo, &id).await;
    assert_eq!(done["delivered"], 40, "{done}");
    let log = telegram.log.lock().unwrap();
    let (_, limited_at) = log.limited[0].clone();
    assert_eq!(log.limited.len(), 1, "{:?}", log.limited);
    // Sends already on their way when the 429 came back may still land; nothing else
    // goes until its retry_after has passed (unpaused: about 57 messages in 2 s).
    let during_pause = log
        .arrivals
        .iter()
        .filter(|(_, _, at)| *at > limited_at && *at - limited_at < Duration::from_secs(2))
        .count();
    assert!(
        during_pause <= 3,
        "{during_pause} messages during the pause"
    );
    assert_eq!(
        log.delivered["9000"].len(),
        1,
        "retried once after the pause"
    );
    drop(log);
    assert!(server.terminate().success());
}

/// The most messages the fake accepted within any one second.
fn busiest_second(telegram: &FakeTelegram) -> usize {
    let log = telegram.log.lock().unwrap();
    let times: Vec<Instant> = log.arrivals.iter().map(|(_, _, at)| *at).collect();
    let mut busiest = 0;
    let mut first = 0;
    for (i, at) in times.iter().enumerate() {
        while at.duration_since(times[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        busiest = busiest.max(i - first + 1);
    }
    busiest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_broadcast_says_so_and_goes_at_the_bots_own_rate() {
    // Free messages at 30 a second, paid broadcasts at up to 210.
    let telegram = FakeTelegram::start(TelegramScript {
        paid_limit_per_second: 210,
        ..like_telegram()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let users = ids(20_000..20_600);
    let (promo, _) = shop(&db, &users);
    support::herald_json(&[
        "bots",
        "set",
        "--db",
        db.to_str().unwrap(),
        "--bot",
        "shop",
        "--connection",
        "telegram.paid_broadcast=true",
        "--connection",
        "telegram.rate=200",
    ]);
    let shown = support::herald_json(&["bots", "show", "--db", db.to_str().unwrap(), "shop"]);
    assert_eq!(
        (
            &shown["connections"]["telegram"]["rate"],
            &shown["connections"]["telegram"]["paid_broadcast"]
        ),
        (&json!(200), &json!(true)),
        "{shown}"
    );
    let server = serve(&db, &telegram);
    let id = accept(
        &server,
        &promo,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    let done = wait_done(&server, &promo, &id).await;
    assert_eq!(done["delivered"], 600, "{done}");
    let busiest = busiest_second(&telegram);
    let log = telegram.log.lock().unwrap();
    assert_eq!(log.paid, 600, "every message a paid broadcast");
    assert_eq!(log.rate_limited, 0, "{:?}", log.limited);
    drop(log);
    // Paced by the bot's 200 (less the margin), not the default 30.
    assert!(
        busiest > 30 && busiest <= 200,
        "{busiest} messages in the busiest second"
    );
    assert!(server.terminate().success());
}
