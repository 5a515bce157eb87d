//! Operating Herald end to end: the real `herald serve` with an admin token, driven by the
//! `herald` CLI over HTTP (`--url`, `--admin-token`) and by raw HTTP where the wire
//! matters (401s, metrics, logs). Rotation, idempotency, rate limits, dead letters and
//! cancelling are rules of the behaviour suite (`tests/behaviour.rs`).

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::process::Output;
use support::{client, herald, metrics, post, wait_done, Event, Server};

const ADMIN: &str = "admin-token-for-tests-0123456789";

fn serve(db: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec!["--no-demo", "--admin-token", ADMIN];
    args.extend_from_slice(extra);
    Server::start(db, &args)
}

/// Run the CLI against `server`; the raw output.
fn run(server: &Server, args: &[&str]) -> Output {
    herald()
        .args(args)
        .args(["--url", &server.base, "--admin-token", ADMIN])
        .output()
        .unwrap()
}

/// Run the CLI against `server`, expecting success; its JSON.
fn cli(server: &Server, args: &[&str]) -> Value {
    let output = run(server, args);
    assert!(
        output.status.success(),
        "herald {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

fn create_event(server: &Server, bot: &str, extra: &[&str]) -> Event {
    let mut args = vec![
        "events",
        "create",
        "--bot",
        bot,
        "--name",
        "order-paid",
        "--action",
        "screen",
        "--screen",
        "thanks",
    ];
    args.extend_from_slice(extra);
    let created = cli(server, &args);
    Event {
        id: created["event"]["id"].as_str().unwrap().into(),
        secret: created["secret"].as_str().unwrap().into(),
    }
}

fn write_lines(path: &std::path::Path, lines: impl IntoIterator<Item = String>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for line in lines {
        writeln!(out, "{line}").unwrap();
    }
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_subcommand_works_against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("herald.db"), &[]);

    // Bots ("shop" keeps no connections, so its actions go to the log deliverer).
    let bot = cli(&server, &["bots", "create", "shop"]);
    assert_eq!(
        (&bot["id"], &bot["telegram_token_set"]),
        (&json!("shop"), &json!(false))
    );
    let bot = cli(
        &server,
        &["bots", "create", "other", "--telegram-token", "1:TOKEN"],
    );
    assert_eq!(bot["telegram_token_set"], true);
    // A screen URL without a signing secret would mean unsigned webhooks: refused.
    let unsigned = run(
        &server,
        &[
            "bots",
            "update",
            "other",
            "--screen-url",
            "https://engine.example/s",
        ],
    );
    assert_eq!(unsigned.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unsigned.stderr).contains("never sent unsigned"),
        "{}",
        String::from_utf8_lossy(&unsigned.stderr)
    );
    let bot = cli(
        &server,
        &[
            "bots",
            "update",
            "other",
            "--screen-url",
            "https://engine.example/s",
            "--signing-secret",
            "engine-key",
        ],
    );
    assert_eq!(bot["screen_url"], "https://engine.example/s");
    assert_eq!(bot["signing_secret_set"], true);
    cli(
        &server,
        &["bots", "set", "--bot", "third", "--signing-secret", "k"],
    );
    let bots = cli(&server, &["bots", "list"]);
    assert_eq!(bots["bots"].as_array().unwrap().len(), 3);
    assert!(
        !bots.to_string().contains("TOKEN"),
        "tokens are never answered"
    );
    assert_eq!(
        cli(&server, &["bots", "show", "third"])["signing_secret_set"],
        true
    );
    cli(&server, &["bots", "delete", "third"]);
    // Any channel's field by its canonical name; answered in both shapes.
    let url = "https://engine.example/4";
    let bot = cli(
        &server,
        &[
            "bots",
            "create",
            "fourth",
            "--connection",
            &format!("engine.url={url}"),
            "--connection",
            "engine.signing_secret=k4",
        ],
    );
    assert_eq!(bot["connections"]["engine"]["url"], url);
    assert_eq!(bot["connections"]["engine"]["signing_secret_set"], true);
    assert_eq!(bot["connections"]["telegram"]["token_set"], false);
    assert_eq!(
        (&bot["screen_url"], &bot["signing_secret_set"]),
        (&json!(url), &json!(true))
    );
    let unknown = run(
        &server,
        &[
            "bots",
            "update",
            "fourth",
            "--connection",
            "nowhere.token=x",
        ],
    );
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("connections.nowhere"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    let twice = run(
        &server,
        &[
            "bots",
            "update",
            "fourth",
            "--screen-url",
            url,
            "--connection",
            &format!("engine.url={url}"),
        ],
    );
    assert_eq!(
        twice.status.code(),
        Some(1),
        "one field given both ways is refused"
    );
    cli(&server, &["bots", "delete", "fourth"]);
    assert_eq!(
        run(&server, &["bots", "show", "third"]).status.code(),
        Some(2)
    );

    // Events.
    let event = create_event(
        &server,
        "shop",
        &[
            "--rate-per-second",
            "100",
            "--burst",
            "10",
            "--lane",
            "bulk",
        ],
    );
    let shown = cli(&server, &["events", "show", &event.id]);
    assert_eq!(
        shown["rate_limit"],
        json!({"per_second": 100.0, "burst": 10})
    );
    assert_eq!(shown["lane"], "bulk");
    let laned = cli(
        &server,
        &["events", "update", &event.id, "--lane", "transactional"],
    );
    assert_eq!(laned["lane"], "transactional");
    let unlaned = cli(&server, &["events", "update", &event.id, "--no-lane"]);
    assert_eq!(unlaned["lane"], Value::Null);
    assert!(!shown.to_string().contains(&event.secret));
    let updated = cli(
        &server,
        &[
            "events",
            "update",
            &event.id,
            "--name",
            "paid",
            "--no-rate-limit",
        ],
    );
    assert_eq!(
        (&updated["name"], &updated["rate_limit"]),
        (&json!("paid"), &Value::Null)
    );
    assert_eq!(
        cli(&server, &["events", "disable", &event.id])["enabled"],
        false
    );
    assert_eq!(
        post(&server, &event, json!({"platform": "tg", "users": ["1"]}))
            .await
            .0,
        403
    );
    assert_eq!(
        cli(&server, &["events", "enable", &event.id])["enabled"],
        true
    );
    let listed = cli(&server, &["events", "list", "--bot", "shop"]);
    assert_eq!(listed["events"][0]["id"], event.id.as_str());
    // Rotation (its grace rule is the behaviour suite's): the new secret works at once.
    let rotated = cli(
        &server,
        &["events", "rotate-secret", &event.id, "--grace", "60"],
    );
    assert!(rotated["event"]["previous_secret_valid_until"].is_string());
    let event = Event {
        id: event.id.clone(),
        secret: rotated["secret"].as_str().unwrap().into(),
    };
    assert_eq!(
        post(&server, &event, json!({"platform": "tg", "users": ["1"]}))
            .await
            .0,
        202
    );

    // Users: JSON lines and CSV.
    let jsonl = dir.path().join("users.jsonl");
    write_lines(
        &jsonl,
        (1..=3).map(|i| json!({"platform": "tg", "platform_id": i.to_string()}).to_string()),
    );
    let report = cli(
        &server,
        &["users", "import", "--bot", "shop", jsonl.to_str().unwrap()],
    );
    assert_eq!(
        (&report["inserted"], &report["rejected"]),
        (&json!(3), &json!(0))
    );
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "platform,platform_id,bm_id\nvk,7,bm-vk-7\n").unwrap();
    let report = cli(
        &server,
        &["users", "import", "--bot", "shop", csv.to_str().unwrap()],
    );
    assert_eq!(report["inserted"], 1);
    let user = cli(
        &server,
        &["users", "show", "--bot", "shop", "--bm-id", "bm-vk-7"],
    );
    assert_eq!(user["platform_id"], "7");

    // Requests: list, show, watch until done.
    let (status, accepted) = post(
        &server,
        &event,
        json!({"platform": "tg", "users": ["1", "2"], "data": {"order": 5}}),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let request_id = accepted["request_id"].as_str().unwrap();
    let watched = cli(
        &server,
        &["requests", "watch", request_id, "--interval", "0.1"],
    );
    assert_eq!(
        (&watched["state"], &watched["delivered"]),
        (&json!("done"), &json!(2))
    );
    let user = cli(
        &server,
        &[
            "users",
            "show",
            "--bot",
            "shop",
            "--platform",
            "tg",
            "--platform-id",
            "2",
        ],
    );
    assert_eq!(user["last_request"], json!({"order": 5}));
    let listed = cli(&server, &["requests", "list", "--event", &event.id]);
    assert_eq!(listed["requests"][0]["request_id"], request_id);
    assert_eq!(
        cli(&server, &["requests", "show", request_id])["delivered"],
        2
    );
    let refused = run(&server, &["requests", "cancel", request_id]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a finished request is not cancelled"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("409"));

    // Readable output.
    let human = run(&server, &["bots", "list", "--human"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.starts_with("ID") && text.contains("shop"), "{text}");

    // Dead letters: none here.
    assert_eq!(cli(&server, &["dlq", "list"])["dead_letters"], json!([]));
    assert_eq!(cli(&server, &["dlq", "redrive", "--all"])["redriven"], 0);
    assert_eq!(cli(&server, &["dlq", "purge", "--all"])["purged"], 0);

    // Delete what was made.
    cli(
        &server,
        &["users", "delete", "--bot", "shop", "--bm-id", "bm-vk-7"],
    );
    assert_eq!(
        run(
            &server,
            &["users", "show", "--bot", "shop", "--bm-id", "bm-vk-7"]
        )
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        run(&server, &["bots", "delete", "shop"]).status.code(),
        Some(1),
        "in use"
    );
    cli(&server, &["events", "delete", &event.id]);
    cli(&server, &["bots", "delete", "shop"]);
    cli(&server, &["bots", "delete", "other"]);
    assert_eq!(cli(&server, &["bots", "list"])["bots"], json!([]));
    assert_eq!(
        post(&server, &event, json!({"platform": "tg", "users": ["1"]}))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn a_wrong_admin_token_fails_the_cli_and_metrics_and_changes_nothing() {
    // The admin API's 401s are the behaviour suite's; here, what only `herald serve` and
    // the CLI add: `/metrics` behind the token, and the CLI failing plainly.
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("herald.db"), &[]);
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        let mut get = client().get(server.url("/metrics"));
        if let Some(token) = token {
            get = get.bearer_auth(token);
        }
        let response = get.send().await.unwrap();
        assert_eq!(response.status(), 401, "{token:?}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
    let output = herald()
        .args([
            "bots",
            "create",
            "sneaky",
            "--url",
            &server.base,
            "--admin-token",
            "nope-nope-nope-nope",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        cli(&server, &["bots", "list"])["bots"],
        json!([]),
        "nothing was created"
    );
}

#[test]
fn importing_a_hundred_thousand_users_twice_adds_them_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("herald.db"), &["--workers", "0"]);
    let file = dir.path().join("users.jsonl");
    write_lines(
        &file,
        (0..100_000).map(|i| json!({"platform": "tg", "platform_id": i.to_string()}).to_string()),
    );
    let first = run(
        &server,
        &["users", "import", "--bot", "big", file.to_str().unwrap()],
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(
        (&report["inserted"], &report["existing"]),
        (&json!(100_000), &json!(0))
    );
    // Not a terminal: plain progress lines, one per chunk.
    let progress = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        progress
            .lines()
            .filter(|l| l.contains("lines read"))
            .count(),
        10,
        "{progress}"
    );
    let again = cli(
        &server,
        &["users", "import", "--bot", "big", file.to_str().unwrap()],
    );
    assert_eq!(
        (&again["inserted"], &again["existing"]),
        (&json!(0), &json!(100_000))
    );
}

#[tokio::test]
async fn metrics_count_requests_and_users_and_show_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("herald.db"), &[]);
    let event = create_event(&server, "shop", &[]);
    let file = dir.path().join("u.jsonl");
    write_lines(
        &file,
        ["1"].map(|i| json!({"platform": "tg", "platform_id": i}).to_string()),
    );
    cli(
        &server,
        &["users", "import", "--bot", "shop", file.to_str().unwrap()],
    );
    let (_, accepted) = post(
        &server,
        &event,
        json!({"platform": "tg", "users": ["1", "404"]}),
    )
    .await;
    wait_done(&server, &event, accepted["request_id"].as_str().unwrap()).await;
    assert_eq!(
        post(&server, &event, json!({"platform": "tg"})).await.0,
        422
    );
    let text = metrics(&server, ADMIN).await;
    for expected in [
        "herald_requests_total{status=\"202\"} 1",
        "herald_requests_total{status=\"422\"} 1",
        "herald_users_total{outcome=\"delivered\"} 1",
        "herald_users_total{outcome=\"not_found\"} 1",
        "herald_job_attempts_total{kind=\"deliver\"} 1",
        "herald_queue_depth 0",
        "herald_queue_oldest_job_age_seconds 0",
        "herald_dead_letters 0",
        "herald_delivery_seconds_count 1",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

#[tokio::test]
async fn admin_work_never_logs_tokens_secrets_or_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log.jsonl");
    let server = Server::start_logging(
        &dir.path().join("herald.db"),
        &["--no-demo", "--admin-token", ADMIN],
        &log,
    );
    cli(
        &server,
        &[
            "bots",
            "create",
            "shop",
            "--telegram-token",
            "77:BOT-TOKEN-XYZ",
            "--signing-secret",
            "SIGNING-XYZ",
        ],
    );
    let event = create_event(&server, "shop", &[]);
    let rotated = cli(
        &server,
        &["events", "rotate-secret", &event.id, "--grace", "60"],
    );
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    let file = dir.path().join("u.jsonl");
    write_lines(
        &file,
        [json!({"platform": "tg", "platform_id": "555"}).to_string()],
    );
    cli(
        &server,
        &["users", "import", "--bot", "shop", file.to_str().unwrap()],
    );
    let response = client()
        .post(server.url(&format!("/v1/events/{}/{}", event.id, new_secret)))
        .header("idempotency-key", "IDEM-KEY-XYZ")
        .json(&json!({"platform": "tg", "users": ["555"], "data": {"card": "PRIVATE-DATA-XYZ"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let new = Event {
        id: event.id.clone(),
        secret: new_secret.clone(),
    };
    wait_done(&server, &new, &id).await;
    server.terminate();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.contains("event secret rotated") && logs.contains(&id),
        "the logs say what happened"
    );
    for secret in [
        ADMIN,
        "BOT-TOKEN-XYZ",
        "SIGNING-XYZ",
        &event.secret,
        &new_secret,
        "PRIVATE-DATA-XYZ",
    ] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_enforces_what_the_openapi_document_states() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let server = serve(&db, &[]);
    let event = cli(
        &server,
        &[
            "events", "create", "--bot", "shop", "--name", "n", "--action", "screen", "--screen",
            "s",
        ],
    );
    let event_id = event["event"]["id"].as_str().unwrap().to_string();
    let admin = |method: reqwest::Method, path: &str| {
        client()
            .request(method, server.url(path))
            .bearer_auth(ADMIN)
    };
    // Page sizes outside the documented ranges are refused, not clamped.
    for path in [
        format!("/v1/admin/requests?event_id={event_id}&limit=0"),
        format!("/v1/admin/requests?event_id={event_id}&limit=101"),
        "/v1/admin/dead-letters?limit=0".to_string(),
        "/v1/admin/dead-letters?limit=1001".to_string(),
    ] {
        let status = admin(reqwest::Method::GET, &path)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 422, "{path}");
    }
    let status = admin(reqwest::Method::GET, "/v1/admin/dead-letters?limit=1000")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // A PATCH needs a body.
    for path in [
        format!("/v1/admin/events/{event_id}"),
        "/v1/admin/bots/shop".to_string(),
    ] {
        let status = admin(reqwest::Method::PATCH, &path)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 422, "{path}");
    }
    // A whole number written with a fraction is an integer, as JSON Schema has it.
    let send = |method: reqwest::Method, path: String, body: serde_json::Value| {
        let request = admin(method, &path).json(&body);
        async move { request.send().await.unwrap().status() }
    };
    let event_path = format!("/v1/admin/events/{event_id}");
    for (burst, status) in [
        (serde_json::json!(20.0), 200),
        (serde_json::json!(20.5), 422),
    ] {
        let limit = serde_json::json!({"rate_limit": {"per_second": 2, "burst": burst}});
        assert_eq!(
            send(reqwest::Method::PATCH, event_path.clone(), limit).await,
            status
        );
    }
    let rotate = format!("{event_path}/rotate-secret");
    let grace = serde_json::json!({"grace_seconds": 60.0});
    assert_eq!(send(reqwest::Method::POST, rotate, grace).await, 200);
    // `null` is not "absent": fields the document types as strings or booleans refuse it.
    let patch = reqwest::Method::PATCH;
    for (path, body) in [
        (event_path.clone(), json!({"enabled": null})),
        (event_path.clone(), json!({"name": null})),
        (
            "/v1/admin/bots/shop".into(),
            json!({"signing_secret": null}),
        ),
        (
            "/v1/admin/bots/shop".into(),
            json!({"telegram_token": null}),
        ),
    ] {
        assert_eq!(send(patch.clone(), path, body.clone()).await, 422, "{body}");
    }
    let redrive = json!({"all": true, "ids": null});
    let path = "/v1/admin/dead-letters/redrive".to_string();
    assert_eq!(send(reqwest::Method::POST, path, redrive).await, 422);
    // Changes that unsign any bot are wrong in themselves (422); a screen_url for a bot
    // that, as stored, has no signing secret conflicts with it (409).
    let bot = "/v1/admin/bots/shop".to_string();
    let unsigning = json!({"screen_url": "https://engine.example/s", "signing_secret": ""});
    assert_eq!(send(patch.clone(), bot.clone(), unsigning).await, 422);
    let url_only = json!({"screen_url": "https://engine.example/s"});
    assert_eq!(send(patch.clone(), bot.clone(), url_only).await, 409);
    let clear_secret = json!({"signing_secret": ""});
    assert_eq!(send(patch.clone(), bot.clone(), clear_secret).await, 200);
    let missing = "/v1/admin/bots/nobody".to_string();
    let url_only = json!({"screen_url": "https://engine.example/s"});
    assert_eq!(send(patch, missing, url_only).await, 404);
}

/// `--connection`'s help lists every registered channel's fields, from the registry.
#[test]
fn the_connection_help_lists_every_channels_fields() {
    let out = support::herald()
        .args(["bots", "create", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for channel in herald_delivery::CHANNELS {
        for field in channel.fields {
            let name = format!("{}.{}", channel.name, field.name);
            assert!(help.contains(&name), "{name} missing from:\n{help}");
        }
    }
}
