//! Delivery end to end: the real `herald serve` sending through a fake Telegram Bot API
//! that enforces a rate limit, and showing screens through a fake bot engine that checks
//! signatures.

mod support;

use herald_fakes::{FakeEngine, FakeTelegram, TelegramScript};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use support::bots::{
    create_event, db_arg, import, message_event, screen_event, serve, set_telegram_token, TOKEN,
};
use support::{accept, herald, herald_json, metrics, wait_done, Server};

const ADMIN_TOKEN: &str = "delivery-test-admin-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_to_a_thousand_users_stays_under_the_platform_rate_limit() {
    // The fake allows 100 messages per second per token; Herald is set to 95.
    let telegram = FakeTelegram::with_limit(100).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = message_event(
        &db,
        "shop",
        "Order {{ last_request.order }} is ready, chat {{ user.platform_id }}",
    );
    set_telegram_token(&db, "shop", TOKEN);
    let users: Vec<(&str, String)> = (0..1000)
        .map(|i| ("tg", (100_000 + i).to_string()))
        .collect();
    import(&db, "shop", &users);
    let server = serve(&db, &telegram, 95);
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone", "data": {"order": 42}}),
    )
    .await;
    let status = wait_done(&server, &event, &id).await;
    assert_eq!(
        (status["delivered"].as_u64(), status["failed"].as_u64()),
        (Some(1000), Some(0)),
        "{status}"
    );
    let log = telegram.log.lock().unwrap();
    // Unpaced, 1000 messages would hit the limit many times over.
    assert_eq!(log.rate_limited, 0, "Herald kept under the limit");
    assert_eq!(log.delivered.len(), 1000);
    for (chat, texts) in &log.delivered {
        assert_eq!(
            texts,
            &[format!("Order 42 is ready, chat {chat}")],
            "one message per user, rendered for them"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marked_up_messages_arrive_with_their_values_escaped_and_their_buttons() {
    // The fake refuses markup Telegram cannot parse, as the Bot API does (400 "can't parse
    // entities"): a value that reached it unescaped would fail its user.
    let telegram = FakeTelegram::with_limit(100).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let html = create_event(
        &db,
        "shop",
        &[
            "--action",
            "message",
            "--template",
            "<b>Order</b> {{ last_request.item }} for {{ last_request.name }}",
            "--markup",
            "html",
            "--button",
            "Track {{ last_request.item }}=https://shop.example/t/{{ last_request.item }}",
            "--no-link-preview",
        ],
    );
    let markdown = create_event(
        &db,
        "shop",
        &[
            "--action",
            "message",
            "--template",
            "*Order* {{ last_request.item }}, {{ last_request.name }}",
            "--markup",
            "markdown-v2",
        ],
    );
    set_telegram_token(&db, "shop", TOKEN);
    import(&db, "shop", &[("tg", "501".into()), ("tg", "502".into())]);
    let server = serve(&db, &telegram, 95);
    let data = json!({"item": "A<7>&_*", "name": "Tom & *Jerry_*."});
    for (event, chat) in [(&html, "501"), (&markdown, "502")] {
        let id = accept(
            &server,
            event,
            json!({"platform": "tg", "users": [chat], "data": data}),
        )
        .await;
        let status = wait_done(&server, event, &id).await;
        assert_eq!(status["delivered"], 1, "{status}");
    }
    let log = telegram.log.lock().unwrap();
    let body = |chat: &str| {
        log.bodies
            .iter()
            .find(|b| b["chat_id"] == chat)
            .cloned()
            .unwrap()
    };
    let html = body("501");
    assert_eq!(html["parse_mode"], "HTML");
    assert_eq!(
        html["text"],
        "<b>Order</b> A&lt;7&gt;&amp;_* for Tom &amp; *Jerry_*."
    );
    assert_eq!(
        html["reply_markup"],
        json!({"inline_keyboard": [[{"text": "Track A<7>&_*", "url": "https://shop.example/t/A%3C7%3E%26_%2A"}]]})
    );
    assert_eq!(html["link_preview_options"], json!({"is_disabled": true}));
    let markdown = body("502");
    assert_eq!(markdown["parse_mode"], "MarkdownV2");
    assert_eq!(markdown["text"], r"*Order* A<7\>&\_\*, Tom & \*Jerry\_\*\.");
    assert!(markdown.get("reply_markup").is_none());
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_final_and_transient_ones_retried_until_success() {
    let telegram = FakeTelegram::start(TelegramScript {
        blocked: vec!["2".into()],
        missing: vec!["3".into()],
        flaky: [("4".to_string(), 2)].into(),
        ..TelegramScript::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = message_event(&db, "shop", "Hi {{ last_request.name }}");
    set_telegram_token(&db, "shop", TOKEN);
    import(
        &db,
        "shop",
        &[
            ("tg", "1".into()),
            ("tg", "2".into()),
            ("tg", "3".into()),
            ("tg", "4".into()),
            ("tg", "5".into()),
            ("vk", "6".into()),
        ],
    );
    let server = serve(&db, &telegram, 30);
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": ["1", "2", "3", "4", {"id": "5", "data": {"name": null}}], "data": {"name": "Ann"}}),
    )
    .await;
    let status = wait_done(&server, &event, &id).await;
    assert_eq!(
        (status["delivered"].as_u64(), status["failed"].as_u64()),
        (Some(2), Some(3)),
        "{status}"
    );
    let reasons: std::collections::HashMap<String, String> = status["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["user"].as_str().unwrap().to_string(),
                e["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(reasons["tg:2"], "blocked");
    assert_eq!(reasons["tg:3"], "chat_not_found");
    assert_eq!(
        reasons["tg:5"], "template",
        "a value missing for a user fails that user"
    );
    {
        let log = telegram.log.lock().unwrap();
        assert_eq!(
            (log.calls["2"], log.calls["3"]),
            (1, 1),
            "permanent failures are not retried"
        );
        assert_eq!(log.calls["4"], 3, "two 502s, then success");
        assert_eq!(log.delivered["4"], ["Hi Ann"]);
        assert!(
            !log.calls.contains_key("5"),
            "nothing sent when the template fails"
        );
    }

    assert_eq!(
        status["failed_by_reason"],
        json!({"blocked": 1, "chat_not_found": 1, "template": 1})
    );

    // The user who blocked the bot is marked: a later message skips them and says so.
    let again = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": ["1", "2"], "data": {"name": "Cy"}}),
    )
    .await;
    let status = wait_done(&server, &event, &again).await;
    assert_eq!(
        (status["delivered"].as_u64(), status["failed"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    assert_eq!(status["errors"][0]["reason"], "blocked");
    assert!(
        status["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("skipped"),
        "{status}"
    );
    assert_eq!(
        telegram.log.lock().unwrap().calls["2"],
        1,
        "not sent to again"
    );

    // A user on a platform the bot has no connection for fails with a reason.
    let vk = accept(
        &server,
        &event,
        json!({"platform": "vk", "users": ["6"], "data": {"name": "Bo"}}),
    )
    .await;
    let status = wait_done(&server, &event, &vk).await;
    assert_eq!(status["errors"][0]["reason"], "no_connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_reach_the_bot_engine_signed() {
    let engine = FakeEngine::start("engine-secret").await;
    let wrong = FakeEngine::start("another-secret").await;
    let telegram = FakeTelegram::start(TelegramScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = screen_event(&db, "shop");
    let other = screen_event(&db, "other");
    herald_json(&[
        "bots",
        "set",
        "--db",
        db_arg(&db),
        "--bot",
        "shop",
        "--screen-url",
        &engine.url,
        "--signing-secret",
        "engine-secret",
    ]);
    herald_json(&[
        "bots",
        "set",
        "--db",
        db_arg(&db),
        "--bot",
        "other",
        "--screen-url",
        &wrong.url,
        "--signing-secret",
        "engine-secret",
    ]);
    import(&db, "shop", &[("tg", "1".into()), ("vk", "2".into())]);
    import(&db, "other", &[("tg", "1".into())]);
    let server = serve(&db, &telegram, 30);

    let id = accept(
        &server,
        &event,
        json!({"platform": "any", "users": "everyone", "data": {"order": 7}}),
    )
    .await;
    let status = wait_done(&server, &event, &id).await;
    assert_eq!(status["delivered"], 2, "{status}");
    {
        let log = engine.log.lock().unwrap();
        assert_eq!(log.bad_signatures, 0);
        let mut bodies = log.accepted.clone();
        bodies.sort_by_key(|b| b["user"]["platform"].as_str().unwrap().to_string());
        assert_eq!(
            bodies[0],
            json!({"bot_id": "shop", "screen_id": "thanks",
                   "user": {"platform": "tg", "platform_id": "1", "bm_id": "bm-tg-1"},
                   "last_request": {"order": 7}, "request_id": id, "event_id": event.id})
        );
    }

    // An engine that does not share the secret refuses: a permanent failure.
    let refused = accept(&server, &other, json!({"platform": "tg", "users": ["1"]})).await;
    let status = wait_done(&server, &other, &refused).await;
    assert_eq!(
        (
            status["failed"].as_u64(),
            status["errors"][0]["reason"].as_str()
        ),
        (Some(1), Some("rejected"))
    );
    assert_eq!(wrong.log.lock().unwrap().bad_signatures, 1);
}

#[test]
fn a_template_that_does_not_compile_is_refused_when_the_event_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let output = herald()
        .args([
            "events",
            "create",
            "--db",
            db_arg(&db),
            "--bot",
            "b",
            "--name",
            "n",
            "--action",
            "message",
            "--template",
            "Hi {{ last_request.name",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("template"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_became_a_supergroup_is_sent_there_and_remembered() {
    let telegram = FakeTelegram::start(TelegramScript {
        migrated: [("-123".to_string(), -100_123)].into(),
        ..TelegramScript::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = message_event(&db, "shop", "News {{ last_request.n }}");
    set_telegram_token(&db, "shop", TOKEN);
    import(&db, "shop", &[("tg", "-123".into())]);
    let server = serve(&db, &telegram, 95);
    for n in 1..=2 {
        let id = accept(
            &server,
            &event,
            json!({"platform": "tg", "users": ["-123"], "data": {"n": n}}),
        )
        .await;
        let status = wait_done(&server, &event, &id).await;
        assert_eq!(status["delivered"], 1, "{status}");
    }
    {
        let log = telegram.log.lock().unwrap();
        assert_eq!(
            log.delivered.get("-100123"),
            Some(&vec!["News 1".to_string(), "News 2".to_string()])
        );
        assert_eq!(
            log.calls.get("-123"),
            Some(&1),
            "the second message went to the new chat first"
        );
    }
    // Herald's own attribute; the engine's platform_id is not rewritten.
    let user = herald_json(&[
        "users",
        "show",
        "--db",
        db_arg(&db),
        "--bot",
        "shop",
        "--platform",
        "tg",
        "--platform-id=-123",
    ]);
    assert_eq!(user["platform_id"], "-123", "{user}");
    assert_eq!(user["migrated_chat_id"], "-100123", "{user}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_token_never_reaches_logs_or_status() {
    // Nothing listens on this port: every send fails, with the token in the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = message_event(&db, "shop", "Hi");
    let token = "987654:SECRET-TOKEN-VALUE";
    set_telegram_token(&db, "shop", token);
    import(&db, "shop", &[("tg", "1".into())]);
    let log_file = dir.path().join("log.jsonl");
    let api = format!("http://{closed}");
    let extra = ["--no-demo", "--retry-base-ms", "10", "--telegram-api", &api];
    let server = Server::start_logging(&db, &extra, &log_file);
    let id = accept(&server, &event, json!({"platform": "tg", "users": ["1"]})).await;
    let status = wait_done(&server, &event, &id).await;
    assert!(server.terminate().success());
    assert_eq!(
        status["failed_by_reason"],
        json!({"unreachable": 1}),
        "{status}"
    );
    assert!(
        !status.to_string().contains("SECRET-TOKEN"),
        "token in status: {status}"
    );
    let logs = std::fs::read_to_string(&log_file).unwrap();
    assert!(!logs.is_empty());
    assert!(!logs.contains("SECRET-TOKEN"), "token in logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_engine_holds_up_only_its_own_bot() {
    // Bot "slow": 2 s per webhook, 16 users, at most 8 in flight: several seconds of work.
    let slow = FakeEngine::slow("k", Duration::from_secs(2)).await;
    let fast = FakeEngine::start("k").await;
    let telegram = FakeTelegram::start(TelegramScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let slow_event = screen_event(&db, "slow");
    let fast_event = screen_event(&db, "fast");
    for (bot, engine) in [("slow", &slow), ("fast", &fast)] {
        herald_json(&[
            "bots",
            "set",
            "--db",
            db_arg(&db),
            "--bot",
            bot,
            "--screen-url",
            &engine.url,
            "--signing-secret",
            "k",
        ]);
    }
    let users: Vec<(&str, String)> = (0..16).map(|i| ("tg", i.to_string())).collect();
    import(&db, "slow", &users);
    import(&db, "fast", &users);
    let server = serve(&db, &telegram, 30);
    let slow_id = accept(
        &server,
        &slow_event,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    let fast_id = accept(
        &server,
        &fast_event,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    let fast_status = wait_done(&server, &fast_event, &fast_id).await;
    assert_eq!(fast_status["delivered"], 16);
    let slow_status: Value = reqwest::Client::new()
        .get(server.url(&format!("/v1/requests/{slow_id}/{}", slow_event.secret)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(
        slow_status["state"], "done",
        "the fast bot finished while the slow one was still at work"
    );
    let slow_status = wait_done(&server, &slow_event, &slow_id).await;
    assert_eq!(slow_status["delivered"], 16);
}

/// Users handed to a new job at the time budget, summed over the "job done" lines of a
/// JSON log.
fn continued_in(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["message"] == "job done")
        .filter_map(|l| l["continued"].as_u64())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_a_slow_engine_past_its_time_budget_hands_its_users_on() {
    // 600 ms per webhook, at most 8 in flight per bot, 16 users, 300 ms of budget: the 8
    // users waiting for a free connection give up at the budget and go on in a new job.
    let engine = FakeEngine::slow("k", Duration::from_millis(600)).await;
    let telegram = FakeTelegram::start(TelegramScript::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = screen_event(&db, "slow");
    herald_json(&[
        "bots",
        "set",
        "--db",
        db_arg(&db),
        "--bot",
        "slow",
        "--screen-url",
        &engine.url,
        "--signing-secret",
        "k",
    ]);
    let users: Vec<(&str, String)> = (0..16).map(|i| ("tg", i.to_string())).collect();
    import(&db, "slow", &users);
    let log = dir.path().join("log.jsonl");
    let server = Server::start_logging(
        &db,
        &[
            "--no-demo",
            "--telegram-api",
            &telegram.url,
            "--job-time-budget-ms",
            "300",
        ],
        &log,
    );
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    let status = wait_done(&server, &event, &id).await;
    assert_eq!(status["delivered"], 16, "{status}");
    assert!(server.terminate().success());
    let shown: Vec<String> = engine
        .log
        .lock()
        .unwrap()
        .accepted
        .iter()
        .map(|w| w["user"]["platform_id"].as_str().unwrap().to_string())
        .collect();
    let mut once = shown.clone();
    once.sort();
    once.dedup();
    assert_eq!((shown.len(), once.len()), (16, 16), "one screen per user");
    assert!(
        continued_in(&log) > 0,
        "users waiting for the engine went on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_on_its_bots_pace_past_its_time_budget_hands_its_users_on() {
    // Paced at 2 messages a second, 8 users take about 4 s; a job may start deliveries for
    // 300 ms. Waiting for the pace must not hold a job past its budget (on a real bot, past
    // its lease, and then its users are messaged twice): the waits give up at the budget
    // and the users not reached go on in new jobs, each messaged once.
    let telegram = FakeTelegram::with_limit(5).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = message_event(&db, "shop", "Hello {{ user.platform_id }}");
    set_telegram_token(&db, "shop", TOKEN);
    let users: Vec<(&str, String)> = (0..8).map(|i| ("tg", (500 + i).to_string())).collect();
    import(&db, "shop", &users);
    let log = dir.path().join("log.jsonl");
    let server = Server::start_logging(
        &db,
        &[
            "--no-demo",
            "--telegram-api",
            &telegram.url,
            "--telegram-rate",
            "2",
            "--job-time-budget-ms",
            "300",
            "--admin-token",
            ADMIN_TOKEN,
        ],
        &log,
    );
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    let status = wait_done(&server, &event, &id).await;
    assert_eq!(
        (status["delivered"].as_u64(), status["failed"].as_u64()),
        (Some(8), Some(0)),
        "{status}"
    );
    let scraped = metrics(&server, ADMIN_TOKEN).await;
    let counted: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix("herald_users_continued_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no continued counter in:\n{scraped}"));
    assert!(server.terminate().success());
    {
        let log = telegram.log.lock().unwrap();
        assert_eq!(log.rate_limited, 0);
        assert_eq!(log.delivered.len(), 8);
        assert_eq!(log.messaged_more_than_once(), 0, "{:?}", log.delivered);
    }
    let continued = continued_in(&log);
    assert!(
        continued > 0,
        "jobs handed users on rather than wait out the pace"
    );
    assert_eq!(
        counted, continued,
        "the metric counts what the job logs say"
    );
}

#[test]
fn a_job_time_budget_over_half_a_lease_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let output = herald()
        .args(["serve", "--no-demo", "--listen", "127.0.0.1:0", "--db"])
        .arg(&db)
        .args(["--job-time-budget-ms", "30001"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--job-time-budget-ms must be at most 30000"),
        "{stderr}"
    );
    assert!(!db.exists(), "refused before anything was opened");
}
