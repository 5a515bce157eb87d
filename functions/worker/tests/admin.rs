//! The admin API on the AWS runtime where DynamoDB's own shapes matter (bot items written
//! before connections were a map, an accept that died midway): the `api` handler invoked
//! with API Gateway events on DynamoDB Local and the SQS emulator. The rules both runtimes
//! share (rotation, idempotency, rate limits, dead letters, cancel) are the behaviour
//! suite's (`tests/behaviour.rs`). `./scripts/test` starts the emulators.

mod stack;

use stack::*;

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
    let old = stack
        .aws
        .bot(&"old".parse().unwrap())
        .await
        .unwrap()
        .connections;
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
