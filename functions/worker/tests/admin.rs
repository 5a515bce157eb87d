//! The admin API, idempotency keys, rate limits and dead-letter redrive on the AWS
//! runtime: the `api` handler invoked with API Gateway events on DynamoDB Local and the
//! SQS emulator, the `worker` handler draining the queue. `./scripts/test` starts the
//! emulators.

mod stack;

use stack::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Create an event through the admin API; its id and secret.
async fn create_event(stack: &Stack, bot: &str, extra: Value) -> (String, String) {
    let mut document = json!({
        "bot_id": bot, "name": "order-paid",
        "action": {"type": "screen", "screen_id": "thanks"},
    });
    for (k, v) in extra.as_object().unwrap() {
        document[k] = v.clone();
    }
    let (status, created) = stack
        .admin("POST", "/v1/admin/events", Some(document))
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["event"]["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// A request's status document through the admin API.
async fn request_status(stack: &Stack, request_id: &str) -> Value {
    let (code, status) = stack
        .admin("GET", &format!("/v1/admin/requests/{request_id}"), None)
        .await;
    assert_eq!(code, 200, "{status}");
    status
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test]
async fn bots_events_and_users_are_managed_through_the_admin_api() {
    let stack = Stack::new().await;
    // Bots: create, refuse a duplicate, list, update, never echo secrets.
    let (status, unsigned) = stack
        .admin(
            "POST",
            "/v1/admin/bots",
            Some(json!({"id": "unsigned", "screen_url": "https://engine.example/screens"})),
        )
        .await;
    assert_eq!(
        status, 422,
        "a screen_url needs a signing_secret: {unsigned}"
    );
    let (status, bot) = stack
        .admin(
            "POST",
            "/v1/admin/bots",
            Some(json!({"id": "shop", "telegram_token": "123:SECRET",
                        "screen_url": "https://engine.example/screens", "signing_secret": "first"})),
        )
        .await;
    assert_eq!(status, 201, "{bot}");
    assert_eq!(bot["telegram_token_set"], true);
    assert!(!bot.to_string().contains("SECRET"));
    let (status, _) = stack
        .admin("POST", "/v1/admin/bots", Some(json!({"id": "shop"})))
        .await;
    assert_eq!(status, 409);
    let (status, bot) = stack
        .admin(
            "PATCH",
            "/v1/admin/bots/shop",
            Some(json!({"telegram_token": "", "signing_secret": "k"})),
        )
        .await;
    assert_eq!(status, 200, "{bot}");
    assert_eq!(
        (&bot["telegram_token_set"], &bot["signing_secret_set"]),
        (&json!(false), &json!(true))
    );
    let (_, list) = stack.admin("GET", "/v1/admin/bots", None).await;
    assert_eq!(list["bots"].as_array().unwrap().len(), 1, "{list}");

    // Events: created with a secret shown once, which then works on the public endpoint.
    let (event_id, secret) = create_event(&stack, "shop", json!({})).await;
    let (status, shown) = stack
        .admin("GET", &format!("/v1/admin/events/{event_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(!shown.to_string().contains(&secret));
    let (_, events) = stack
        .admin("GET", "/v1/admin/events?bot_id=shop", None)
        .await;
    assert_eq!(events["events"][0]["id"], event_id.as_str());
    let (status, _) = stack.admin("DELETE", "/v1/admin/bots/shop", None).await;
    assert_eq!(status, 409, "a bot with events is not deleted");

    // Users: JSON lines and CSV, a re-run adds nothing.
    let lines = "{\"platform\":\"tg\",\"platform_id\":\"1\"}\n{\"platform\":\"tg\",\"platform_id\":2,\"bm_id\":\"b2\"}\nbad\n";
    let path = "/v1/admin/bots/shop/users";
    let (status, report) = stack
        .admin_raw(path, "application/x-ndjson", lines.into())
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            &report["inserted"],
            &report["rejected"],
            &report["errors"][0]["line"]
        ),
        (&json!(2), &json!(1), &json!(3))
    );
    let (_, again) = stack
        .admin_raw(path, "application/x-ndjson", lines.into())
        .await;
    assert_eq!(
        (&again["inserted"], &again["existing"]),
        (&json!(0), &json!(2))
    );
    let (_, csv) = stack
        .admin_raw(
            path,
            "text/csv",
            "platform,platform_id\nvk,9\ntg,1\n".into(),
        )
        .await;
    assert_eq!(
        (&csv["inserted"], &csv["existing"]),
        (&json!(1), &json!(1)),
        "{csv}"
    );

    // A request reaches them; the user document shows last_request.
    let (status, accepted, _) = stack
        .post_event(
            &event_id,
            &secret,
            &[],
            json!({"platform": "tg", "users": ["1", "2"], "data": {"order": 7}}),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    stack.drain(1).await;
    let (status, user) = stack
        .admin("GET", "/v1/admin/bots/shop/users/tg/2", None)
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        (&user["bm_id"], &user["last_request"]),
        (&json!("b2"), &json!({"order": 7}))
    );
    let (status, _) = stack
        .admin("GET", "/v1/admin/bots/shop/users/bm/b2", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = stack
        .admin("DELETE", "/v1/admin/bots/shop/users/tg/2", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = stack
        .admin("GET", "/v1/admin/bots/shop/users/bm/b2", None)
        .await;
    assert_eq!(status, 404);

    // Requests of the event, newest first.
    let (_, requests) = stack
        .admin(
            "GET",
            &format!("/v1/admin/requests?event_id={event_id}"),
            None,
        )
        .await;
    assert_eq!(
        requests["requests"].as_array().unwrap().len(),
        1,
        "{requests}"
    );
    assert_eq!(requests["requests"][0]["state"], "done");
    let request_id = accepted["request_id"].as_str().unwrap();
    let (status, _) = stack
        .admin(
            "POST",
            &format!("/v1/admin/requests/{request_id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a finished request is not cancelled");

    // Disable, enable, delete.
    let (_, off) = stack
        .admin(
            "PATCH",
            &format!("/v1/admin/events/{event_id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(off["enabled"], false);
    let (status, _, _) = stack
        .post_event(
            &event_id,
            &secret,
            &[],
            json!({"platform": "tg", "users": ["1"]}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = stack
        .admin("DELETE", &format!("/v1/admin/events/{event_id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = stack
        .post_event(
            &event_id,
            &secret,
            &[],
            json!({"platform": "tg", "users": ["1"]}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = stack.admin("DELETE", "/v1/admin/bots/shop", None).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn without_the_admin_token_nothing_is_answered_or_changed() {
    let stack = Stack::new().await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer wrong-token-0123456789")],
    ] {
        let mut all = headers.clone();
        all.push(("content-type", "application/json"));
        let create = Stack::gateway_event(
            "POST",
            "/v1/admin/bots",
            &all,
            Some(json!({"id": "sneaky"}).to_string()),
        );
        let (status, body) = stack.api(&create).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["type"], "/problems/unauthorized");
        let list = Stack::gateway_event("GET", "/v1/admin/bots", &all, None);
        assert_eq!(stack.api(&list).await.0, 401);
    }
    let (_, bots) = stack.admin("GET", "/v1/admin/bots", None).await;
    assert_eq!(bots["bots"], json!([]), "nothing was created");
}

#[tokio::test]
async fn a_rotated_secret_keeps_working_for_its_grace_period_only() {
    let stack = Stack::new().await;
    stack.demo_users("shop").await;
    let (event_id, old) = create_event(&stack, "shop", json!({})).await;
    let body = json!({"platform": "tg", "users": ["123456"]});
    let path = format!("/v1/admin/events/{event_id}/rotate-secret");
    let (status, rotated) = stack
        .admin("POST", &path, Some(json!({"grace_seconds": 3600})))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(rotated["event"]["previous_secret_valid_until"].is_string());
    assert_eq!(
        stack.post_event(&event_id, &new, &[], body.clone()).await.0,
        202
    );
    assert_eq!(
        stack.post_event(&event_id, &old, &[], body.clone()).await.0,
        202
    );
    // Rotating again without grace: the one before stops at once.
    let (_, newest) = stack
        .admin("POST", &path, Some(json!({"grace_seconds": 0})))
        .await;
    let newest = newest["secret"].as_str().unwrap().to_string();
    assert_eq!(
        stack.post_event(&event_id, &new, &[], body.clone()).await.0,
        404
    );
    assert_eq!(
        stack.post_event(&event_id, &old, &[], body.clone()).await.0,
        404
    );
    assert_eq!(stack.post_event(&event_id, &newest, &[], body).await.0, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_answers_its_first_answer_and_enqueues_once() {
    let stack = Stack::new().await;
    stack.demo_users("shop").await;
    let (event_id, secret) = create_event(&stack, "shop", json!({})).await;
    let body = json!({"platform": "tg", "users": ["123456"], "data": {"n": 1}});
    let key = [("idempotency-key", "order-42")];
    // Concurrent duplicates: one wins, all get its answer.
    let answers = futures::future::join_all(
        (0..5).map(|_| stack.post_event(&event_id, &secret, &key, body.clone())),
    )
    .await;
    let ids: Vec<&Value> = answers.iter().map(|(_, a, _)| &a["request_id"]).collect();
    for (status, answer, _) in &answers {
        assert_eq!(*status, 202, "{answer}");
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // Later: the same answer again, and a different body under the key is refused.
    let (status, again, _) = stack
        .post_event(&event_id, &secret, &key, body.clone())
        .await;
    assert_eq!((status, &again), (202, &answers[0].1));
    let (status, conflict, _) = stack
        .post_event(
            &event_id,
            &secret,
            &key,
            json!({"platform": "tg", "users": ["234567"]}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(conflict["type"], "/problems/idempotency-conflict");
    // One request recorded, delivered once.
    let (_, requests) = stack
        .admin(
            "GET",
            &format!("/v1/admin/requests?event_id={event_id}"),
            None,
        )
        .await;
    assert_eq!(
        requests["requests"].as_array().unwrap().len(),
        1,
        "{requests}"
    );
    stack.drain(1).await;
    let status = request_status(&stack, ids[0].as_str().unwrap()).await;
    assert_eq!(status["delivered"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_an_accept_that_died_midway_is_never_told_202_for_nothing() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use herald_core::domain::{now_ms, RequestState};
    let stack = Stack::new().await;
    stack.demo_users("shop").await;
    let (event_id, secret) = create_event(&stack, "shop", json!({})).await;
    let body = json!({"platform": "tg", "users": ["123456"], "data": {"n": 1}});
    let key = [("idempotency-key", "died-midway")];
    let (status, first, _) = stack
        .post_event(&event_id, &secret, &key, body.clone())
        .await;
    assert_eq!(status, 202, "{first}");
    let first_id = first["request_id"].as_str().unwrap().to_string();
    // As if its accept had died between writing `accepting` and `accepted`, just now: it
    // may still finish, so a retry is told to come back, not replayed a 202.
    stack
        .aws
        .set_request_state(&first_id, RequestState::Accepting)
        .await
        .unwrap();
    let (status, answer, retry_after) = stack
        .post_event(&event_id, &secret, &key, body.clone())
        .await;
    assert_eq!(status, 503, "{answer}");
    assert!(retry_after.is_some());
    // …and three minutes ago: workers drop its jobs, so it is given up and the retry is
    // accepted as a new request.
    stack
        .aws
        .dynamodb
        .update_item()
        .table_name(&stack.aws.settings.requests_table)
        .key("pk", AttributeValue::S(first_id.clone()))
        .key("sk", AttributeValue::S("request".into()))
        .update_expression("SET #record.created_at = :old")
        .expression_attribute_names("#record", "record")
        .expression_attribute_values(":old", AttributeValue::N((now_ms() - 180_000).to_string()))
        .send()
        .await
        .unwrap();
    let (status, retried, _) = stack
        .post_event(&event_id, &secret, &key, body.clone())
        .await;
    assert_eq!(status, 202, "{retried}");
    let retried_id = retried["request_id"].as_str().unwrap().to_string();
    assert_ne!(retried_id, first_id);
    assert_eq!(request_status(&stack, &first_id).await["state"], "aborted");
    // The key now answers the retry's request.
    let (status, again, _) = stack.post_event(&event_id, &secret, &key, body).await;
    assert_eq!(
        (status, again["request_id"].as_str()),
        (202, Some(retried_id.as_str()))
    );
    stack.drain(1).await;
    assert_eq!(request_status(&stack, &retried_id).await["delivered"], 1);
}

#[tokio::test]
async fn over_the_rate_limit_is_429_with_retry_after_and_nothing_enqueued() {
    let stack = Stack::new().await;
    stack.demo_users("shop").await;
    let limit = json!({"rate_limit": {"per_second": 0.2, "burst": 2}});
    let (event_id, secret) = create_event(&stack, "shop", limit).await;
    let body = json!({"platform": "tg", "users": ["123456"]});
    for _ in 0..2 {
        assert_eq!(
            stack
                .post_event(&event_id, &secret, &[], body.clone())
                .await
                .0,
            202
        );
    }
    let queued = stack.queue_count(&stack.aws.settings.queue_url).await;
    let (status, problem, retry_after) = stack.post_event(&event_id, &secret, &[], body).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["type"], "/problems/rate-limited");
    // One request per 5 s: the next slot is at most 5 s away, and at least 1 s.
    let wait: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    assert_eq!(
        stack.queue_count(&stack.aws.settings.queue_url).await,
        queued
    );
    let (_, requests) = stack
        .admin(
            "GET",
            &format!("/v1/admin/requests?event_id={event_id}"),
            None,
        )
        .await;
    assert_eq!(requests["requests"].as_array().unwrap().len(), 2);
}

/// A platform that is down until switched back on.
struct Switchable {
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Deliverer for Switchable {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult {
        if self.down.load(Ordering::SeqCst) && delivery.user.platform_id == "234567" {
            DeliveryResult::Retry {
                reason: "unavailable".into(),
                message: "502 from the platform".into(),
                after: None,
            }
        } else {
            DeliveryResult::Delivered { detail: None }
        }
    }
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test]
async fn dead_letters_are_listed_redriven_to_completion_and_purged() {
    let platform = Arc::new(Switchable {
        down: AtomicBool::new(true),
    });
    let config = Config {
        base_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        max_attempts: 2,
        ..herald_worker::config()
    };
    let stack = Stack::with(config, platform.clone()).await;
    stack.demo_users("shop").await;
    let (event_id, secret) = create_event(&stack, "shop", json!({})).await;
    let body = json!({"platform": "tg", "users": ["123456", "234567"]});
    let (_, accepted, _) = stack.post_event(&event_id, &secret, &[], body).await;
    let request_id = accepted["request_id"].as_str().unwrap().to_string();
    stack.drain(1).await;
    let before = request_status(&stack, &request_id).await;
    assert_eq!(
        (&before["delivered"], &before["failed"]),
        (&json!(1), &json!(1))
    );

    let (status, dead) = stack.admin("GET", "/v1/admin/dead-letters", None).await;
    assert_eq!(status, 200, "{dead}");
    let letters = dead["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{dead}");
    assert_eq!(letters[0]["request_id"], request_id.as_str());
    assert!(letters[0]["reason"]
        .as_str()
        .unwrap()
        .contains("unavailable"));
    // Listing leaves the letter where it is.
    let (_, still) = stack.admin("GET", "/v1/admin/dead-letters", None).await;
    assert_eq!(still["dead_letters"].as_array().unwrap().len(), 1);

    // The platform is back: redrive, and the request completes with exact counts.
    platform.down.store(false, Ordering::SeqCst);
    let (status, redriven) = stack
        .admin(
            "POST",
            "/v1/admin/dead-letters/redrive",
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(
        (status, &redriven["redriven"]),
        (200, &json!(1)),
        "{redriven}"
    );
    let reopened = request_status(&stack, &request_id).await;
    assert_eq!(
        (&reopened["state"], &reopened["failed"]),
        (&json!("running"), &json!(0))
    );
    stack.drain(1).await;
    let after = request_status(&stack, &request_id).await;
    assert_eq!(
        (
            &after["state"],
            &after["delivered"],
            &after["failed"],
            &after["failed_by_reason"]
        ),
        (&json!("done"), &json!(2), &json!(0), &json!({})),
        "{after}"
    );
    let (_, empty) = stack.admin("GET", "/v1/admin/dead-letters", None).await;
    assert_eq!(empty["dead_letters"], json!([]));

    // Purge: another failure, dropped for good.
    platform.down.store(true, Ordering::SeqCst);
    let body = json!({"platform": "tg", "users": ["234567"]});
    stack.post_event(&event_id, &secret, &[], body).await;
    stack.drain(1).await;
    let (_, dead) = stack.admin("GET", "/v1/admin/dead-letters", None).await;
    let id = dead["dead_letters"][0]["id"].as_str().unwrap().to_string();
    let (status, refused) = stack
        .admin("POST", "/v1/admin/dead-letters/purge", Some(json!({})))
        .await;
    assert_eq!(status, 422, "purging needs ids or all: {refused}");
    let (_, purged) = stack
        .admin(
            "POST",
            "/v1/admin/dead-letters/purge",
            Some(json!({"ids": [id]})),
        )
        .await;
    assert_eq!(purged["purged"], 1);
    assert_eq!(stack.queue_count(&stack.dlq_url).await, 0);
}

#[tokio::test]
async fn cancelling_a_pending_request_counts_its_users_cancelled() {
    let stack = Stack::new().await;
    stack.demo_users("shop").await;
    let (event_id, secret) = create_event(&stack, "shop", json!({})).await;
    let (_, accepted, _) = stack
        .post_event(
            &event_id,
            &secret,
            &[],
            json!({"platform": "any", "users": "everyone"}),
        )
        .await;
    let request_id = accepted["request_id"].as_str().unwrap().to_string();
    let (status, cancelled) = stack
        .admin(
            "POST",
            &format!("/v1/admin/requests/{request_id}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    stack.drain(1).await;
    let after = request_status(&stack, &request_id).await;
    assert_eq!(
        (&after["state"], &after["delivered"], &after["pending"]),
        (&json!("cancelled"), &json!(0), &json!(0)),
        "{after}"
    );
    assert_eq!(stack.last_request("shop", "bm-234567").await, Value::Null);
}

/// A bot item written before connections were one map (flat `telegram_token`,
/// `screen_url`, `signing_secret` attributes) reads as channel connections; the first
/// change writes the map and removes the flat attributes. The canonical shape is accepted
/// and answered beside the aliases.
#[tokio::test]
async fn bots_stored_with_flat_attributes_read_as_channel_connections() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use herald_core::ports::EventDirectory;
    let stack = Stack::new().await;
    let text = |v: &str| AttributeValue::S(v.into());
    stack
        .aws
        .dynamodb
        .put_item()
        .table_name(&stack.aws.settings.events_table)
        .item("pk", text("bot#old"))
        .item("created_at", AttributeValue::N("0".into()))
        .item("telegram_token", text("1:TOKEN"))
        .item("screen_url", text("https://engine.example/s"))
        .item("signing_secret", text("KEY"))
        .send()
        .await
        .unwrap();
    let old = stack.aws.bot("old").await.unwrap().connections;
    assert_eq!(old.get("telegram", "token"), Some("1:TOKEN"));
    assert_eq!(old.get("engine", "url"), Some("https://engine.example/s"));
    assert_eq!(old.get("engine", "signing_secret"), Some("KEY"));
    let (status, shown) = stack.admin("GET", "/v1/admin/bots/old", None).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["connections"]["telegram"]["token_set"], true);
    assert_eq!(shown["screen_url"], "https://engine.example/s");
    assert!(!shown.to_string().contains("TOKEN"), "{shown}");

    let (status, changed) = stack
        .admin(
            "PATCH",
            "/v1/admin/bots/old",
            Some(json!({"connections": {"telegram": {"token": ""}}})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["telegram_token_set"], false);
    assert_eq!(changed["connections"]["engine"]["signing_secret_set"], true);
    let item = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&stack.aws.settings.events_table)
        .key("pk", text("bot#old"))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    for flat in ["telegram_token", "screen_url", "signing_secret"] {
        assert!(!item.contains_key(flat), "{flat} is left on {item:?}");
    }
    assert!(item.contains_key("connections"));

    let (status, refused) = stack
        .admin(
            "POST",
            "/v1/admin/bots",
            Some(json!({"id": "new", "connections": {"nowhere": {"token": "t"}}})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused.to_string().contains("connections.nowhere"),
        "{refused}"
    );
}
