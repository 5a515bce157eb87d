//! The AWS runtime end to end on DynamoDB Local and an SQS emulator: the `api` handler and
//! the `worker` handler invoked in-process with the fixture events, real SDK clients, and
//! tables created from `template.yaml`. `./scripts/test` starts the emulators
//! (`infra/emulators start`) and exports their endpoints.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use aws_sdk_sqs::types::QueueAttributeName;
use herald_aws::{Aws, AwsSettings};
use herald_core::domain::DeliveryResult;
use herald_core::domain::Job;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::ports::{Deliverer, Delivery};
use herald_core::{App, Config};
use herald_delivery::dispatch::Dispatcher;
use herald_delivery::DeliveryConfig;
use herald_fakes::{FakeEngine, FakeTelegram, TelegramScript};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const FIXTURE_EVENT: &str = "fixture-event";
const FIXTURE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn endpoint(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test, which starts DynamoDB Local and the SQS emulator (infra/emulators start)")
    })
}

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fresh set of tables and queues on the emulators, named uniquely for one test.
struct Stack {
    aws: Aws,
    app: App,
    dlq_url: String,
    /// Worker instances for `drain`, each with its own deliverer, as separate Lambda
    /// instances have; `[app]` unless a test adds more.
    instances: Vec<App>,
}

impl Stack {
    async fn new() -> Stack {
        Stack::with(
            Config {
                base_backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
                ..herald_worker::config()
            },
            Arc::new(LogDeliverer::default()),
        )
        .await
    }

    async fn with(config: Config, deliverer: Arc<dyn Deliverer>) -> Stack {
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        let settings = AwsSettings {
            users_table: format!("users-{suffix}"),
            events_table: format!("events-{suffix}"),
            requests_table: format!("requests-{suffix}"),
            queue_url: String::new(),
            dlq_url: String::new(),
            user_shards: 16,
            region: Some("us-east-1".into()),
            dynamodb_endpoint: Some(endpoint("HERALD_TEST_DYNAMODB_ENDPOINT")),
            sqs_endpoint: Some(endpoint("HERALD_TEST_SQS_ENDPOINT")),
        };
        let mut aws = Aws::connect(settings).await;
        herald_aws::local::provision(&mut aws, &repo_file("template.yaml"), &suffix, 3)
            .await
            .unwrap();
        let dlq_url = aws.settings.dlq_url.clone();
        let app = aws.app(config, deliverer);
        // Four Lambda instances, each with its own per-bot slots, sharing the deliverer.
        let instances = (0..4)
            .map(|_| App {
                slots: Arc::new(herald_core::slots::BotSlots::new(app.config.jobs_per_bot)),
                ..app.clone()
            })
            .collect();
        Stack {
            instances,
            aws,
            app,
            dlq_url,
        }
    }

    /// Run `instances` worker instances that deliver through real HTTP per `delivery`.
    async fn with_delivery(delivery: DeliveryConfig, instances: usize) -> Stack {
        let mut stack = Stack::new().await;
        let dispatcher = || -> Arc<dyn Deliverer> {
            Arc::new(Dispatcher::new(Arc::new(stack.aws.clone()), &delivery))
        };
        stack.instances = (0..instances)
            .map(|_| stack.aws.app(stack.app.config.clone(), dispatcher()))
            .collect();
        stack.app = stack.instances[0].clone();
        stack
    }

    async fn event_with(&self, bot: &str, action: herald_core::domain::Action) {
        self.aws
            .put_event(FIXTURE_EVENT, bot, "fixture", FIXTURE_SECRET, &action)
            .await
            .unwrap();
    }

    async fn fixture_event(&self, bot: &str) {
        let action = herald_core::domain::Action::Screen {
            screen_id: "welcome".into(),
        };
        self.aws
            .put_event(FIXTURE_EVENT, bot, "fixture", FIXTURE_SECRET, &action)
            .await
            .unwrap();
    }

    /// Write users as the bot engine would: (platform, platform_id, bm_id), with an
    /// engine-owned attribute on each.
    async fn users(&self, bot: &str, users: impl IntoIterator<Item = (String, String, String)>) {
        let requests: Vec<WriteRequest> = users
            .into_iter()
            .map(|(platform, id, bm)| {
                let mut item = self.aws.user_item(bot, &platform, &id, &bm);
                item.insert(
                    "engine_step".into(),
                    aws_sdk_dynamodb::types::AttributeValue::S("cart".into()),
                );
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                    .build()
            })
            .collect();
        let writes = requests.chunks(25).map(|chunk| {
            let chunk = chunk.to_vec();
            let client = self.aws.dynamodb.clone();
            let table = self.aws.settings.users_table.clone();
            async move {
                let mut pending = chunk;
                loop {
                    let out = client
                        .batch_write_item()
                        .request_items(&table, pending)
                        .send()
                        .await
                        .unwrap();
                    match out.unprocessed_items().and_then(|u| u.get(&table)) {
                        Some(rest) if !rest.is_empty() => pending = rest.clone(),
                        _ => break,
                    }
                }
            }
        });
        futures::stream::iter(writes)
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    }

    async fn demo_users(&self, bot: &str) {
        self.users(
            bot,
            [
                ("tg", "123456", "5c517b7773515eaha3078e2f"),
                ("tg", "234567", "bm-234567"),
                ("vk", "456789", "bm-456789"),
            ]
            .map(|(p, i, b)| (p.to_string(), i.to_string(), b.to_string())),
        )
        .await;
    }

    /// Invoke the api handler with a fixture (or any API Gateway event).
    async fn api(&self, event: &str) -> (u16, Value) {
        let request = lambda_http::request::from_str(event).expect("an API Gateway event");
        let response = herald_api::router(&self.aws, self.app.config.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn api_fixture(&self, name: &str) -> (u16, Value) {
        self.api(&repo_file(&format!("events/{name}"))).await
    }

    /// An event like the fixtures, with another body.
    async fn api_body(&self, body: Value) -> (u16, Value) {
        let mut event: Value =
            serde_json::from_str(&repo_file("events/apigw-v2-explicit-user.json")).unwrap();
        event["body"] = Value::String(body.to_string());
        self.api(&event.to_string()).await
    }

    async fn status(&self, request_id: &str) -> Value {
        let mut event: Value =
            serde_json::from_str(&repo_file("events/apigw-v2-explicit-user.json")).unwrap();
        let path = format!("/v1/requests/{request_id}/{FIXTURE_SECRET}");
        event["routeKey"] = json!("GET /v1/requests/{request_id}/{secret}");
        event["rawPath"] = json!(path);
        event["requestContext"]["http"]["method"] = json!("GET");
        event["requestContext"]["http"]["path"] = json!(path);
        event["pathParameters"] = json!({"request_id": request_id, "secret": FIXTURE_SECRET});
        event.as_object_mut().unwrap().remove("body");
        let (status, body) = self.api(&event.to_string()).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Receive up to ten messages as the SQS event source would.
    async fn receive(&self, queue_url: &str) -> Vec<SqsMessage> {
        let out = self
            .aws
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| {
                let mut message = SqsMessage::default();
                message.message_id = m.message_id().map(String::from);
                message.receipt_handle = m.receipt_handle().map(String::from);
                message.body = m.body().map(String::from);
                message
            })
            .collect()
    }

    /// One worker invocation on `messages`, settled as the event source does: successes
    /// deleted, failures made visible again. Returns the failed message ids.
    async fn invoke_worker(&self, messages: Vec<SqsMessage>) -> Vec<String> {
        self.invoke_instance(&self.app, messages).await
    }

    async fn invoke_instance(&self, app: &App, messages: Vec<SqsMessage>) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = messages.clone();
        let response = herald_worker::handle(app, &self.aws, event).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for message in messages {
            let receipt = message.receipt_handle.unwrap();
            if failed.contains(message.message_id.as_ref().unwrap()) {
                self.aws
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.aws.settings.queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                self.aws
                    .sqs
                    .delete_message()
                    .queue_url(&self.aws.settings.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap();
            }
        }
        failed
    }

    /// Run the worker over the queue until it is empty, with `concurrency` invocations at a
    /// time as Lambda scales out.
    async fn drain(&self, concurrency: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut idle = 0;
        while idle < 3 {
            assert!(Instant::now() < deadline, "the queue did not drain");
            let batches: Vec<Vec<SqsMessage>> = futures::future::join_all(
                (0..concurrency).map(|_| self.receive(&self.aws.settings.queue_url)),
            )
            .await;
            let batches: Vec<Vec<SqsMessage>> =
                batches.into_iter().filter(|b| !b.is_empty()).collect();
            if batches.is_empty() {
                // Nothing visible: done only when nothing is delayed or in flight either.
                if self.queue_count(&self.aws.settings.queue_url).await == 0 {
                    idle += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            idle = 0;
            futures::future::join_all(
                batches.into_iter().enumerate().map(|(i, b)| {
                    self.invoke_instance(&self.instances[i % self.instances.len()], b)
                }),
            )
            .await;
        }
    }

    async fn user(
        &self,
        bot: &str,
        bm_id: &str,
    ) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        self.aws
            .user(bot, bm_id)
            .await
            .unwrap()
            .expect("user exists")
    }

    async fn last_request(&self, bot: &str, bm_id: &str) -> Value {
        match self.user(bot, bm_id).await.get("last_request") {
            Some(v) => serde_dynamo::from_attribute_value(v.clone()).unwrap(),
            None => Value::Null,
        }
    }

    async fn queue_count(&self, url: &str) -> usize {
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes().unwrap();
        attrs.values().map(|v| v.parse::<usize>().unwrap()).sum()
    }
}

use futures::StreamExt;

#[tokio::test]
async fn the_three_documented_examples_end_to_end() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let mut ids = Vec::new();
    for fixture in [
        "apigw-v2-explicit-user.json",
        "apigw-v2-everyone.json",
        "apigw-v2-users-bm.json",
    ] {
        let (status, body) = stack.api_fixture(fixture).await;
        assert_eq!(status, 202, "{fixture}: {body}");
        ids.push(body["request_id"].as_str().unwrap().to_string());
        stack.drain(2).await;
    }
    let explicit = stack.status(&ids[0]).await;
    assert_eq!(
        (explicit["state"].as_str(), explicit["delivered"].as_u64()),
        (Some("done"), Some(1))
    );
    let everyone = stack.status(&ids[1]).await;
    assert_eq!(
        (
            everyone["targeted"].as_u64(),
            everyone["delivered"].as_u64()
        ),
        (Some(3), Some(3))
    );
    let by_bm = stack.status(&ids[2]).await;
    assert_eq!(
        (by_bm["delivered"].as_u64(), by_bm["pending"].as_u64()),
        (Some(1), Some(0))
    );
    let user = stack.user("demo", "5c517b7773515eaha3078e2f").await;
    assert_eq!(user["last_request_id"].as_s().unwrap(), &ids[2]);
    assert_eq!(stack.last_request("demo", "bm-456789").await, json!({}));
}

#[tokio::test]
async fn bearer_and_rest_api_payloads_work_too() {
    assert!(
        std::env::var("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH").is_ok(),
        "set AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH as template.yaml does for the functions (./scripts/test does)"
    );
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (status, body) = stack.api_fixture("apigw-v2-bearer.json").await;
    assert_eq!(status, 202, "{body}");
    let (status, rest) = stack.api_fixture("apigw-v1-explicit-user.json").await;
    assert_eq!(status, 202, "{rest}");
    stack.drain(1).await;
    assert_eq!(
        stack.last_request("demo", "5c517b7773515eaha3078e2f").await,
        json!({})
    );
    let first = stack.status(body["request_id"].as_str().unwrap()).await;
    assert_eq!(first["delivered"], 1);
}

#[tokio::test]
async fn an_attribute_the_bot_engine_wrote_survives_and_unknown_users_are_not_created() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (_, body) = stack
        .api_body(
            json!({"platform": "tg", "users": ["123456", "999"], "data": {"order": {"id": 7}}}),
        )
        .await;
    stack.drain(1).await;
    let user = stack.user("demo", "5c517b7773515eaha3078e2f").await;
    assert_eq!(user["engine_step"].as_s().unwrap(), "cart");
    assert_eq!(
        stack.last_request("demo", "5c517b7773515eaha3078e2f").await,
        json!({"order": {"id": 7}})
    );
    let status = stack.status(body["request_id"].as_str().unwrap()).await;
    assert_eq!(
        (status["delivered"].as_u64(), status["not_found"].as_u64()),
        (Some(1), Some(1))
    );
    let scan = stack
        .aws
        .dynamodb
        .scan()
        .table_name(&stack.aws.settings.users_table)
        .send()
        .await
        .unwrap();
    assert_eq!(scan.count(), 3, "no user was created");
}

async fn everyone_over(stack: &Stack, platform: &str, expected: u64) {
    let (status, body) = stack
        .api_body(json!({"platform": platform, "users": "everyone", "data": {"wave": platform}}))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["request_id"].as_str().unwrap().to_string();
    stack.drain(4).await;
    let s = stack.status(&id).await;
    assert_eq!(
        (
            s["state"].as_str(),
            s["targeted"].as_u64(),
            s["delivered"].as_u64(),
            s["pending"].as_u64()
        ),
        (Some("done"), Some(expected), Some(expected), Some(0)),
        "{s}"
    );
}

#[tokio::test]
async fn everyone_over_ten_thousand_users_on_one_platform_and_on_any() {
    let stack = Stack::new().await;
    stack.fixture_event("big").await;
    stack
        .users(
            "big",
            (0..10_000).map(|i| ("tg".to_string(), i.to_string(), format!("t{i}"))),
        )
        .await;
    stack
        .users(
            "big",
            (0..500).map(|i| ("vk".to_string(), i.to_string(), format!("v{i}"))),
        )
        .await;
    everyone_over(&stack, "tg", 10_000).await;
    assert_eq!(
        stack.last_request("big", "t9999").await,
        json!({"wave": "tg"})
    );
    assert_eq!(stack.last_request("big", "v1").await, Value::Null);
    everyone_over(&stack, "any", 10_500).await;
    assert_eq!(
        stack.last_request("big", "v1").await,
        json!({"wave": "any"})
    );
}

#[tokio::test]
async fn an_older_request_delivered_late_does_not_overwrite_a_newer_one() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (_, older) = stack
        .api_body(json!({"platform": "tg", "users": ["123456"], "data": {"v": "older"}}))
        .await;
    let older_messages = stack.receive(&stack.aws.settings.queue_url).await;
    let (_, newer) = stack
        .api_body(json!({"platform": "tg", "users": ["123456"], "data": {"v": "newer"}}))
        .await;
    stack.drain(1).await; // the newer request's job
    assert!(stack.invoke_worker(older_messages).await.is_empty());
    assert_eq!(
        stack.last_request("demo", "5c517b7773515eaha3078e2f").await,
        json!({"v": "newer"})
    );
    let user = stack.user("demo", "5c517b7773515eaha3078e2f").await;
    assert_eq!(
        user["last_request_id"].as_s().unwrap(),
        newer["request_id"].as_str().unwrap()
    );
    assert_eq!(
        stack.status(older["request_id"].as_str().unwrap()).await["state"],
        "done"
    );
}

#[tokio::test]
async fn a_redelivered_message_does_not_repeat_a_success() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (_, body) = stack
        .api_body(json!({"platform": "tg", "users": ["123456", "234567"]}))
        .await;
    let id = body["request_id"].as_str().unwrap().to_string();
    let messages = stack.receive(&stack.aws.settings.queue_url).await;
    assert_eq!(messages.len(), 1);
    let mut event = SqsEvent::default();
    event.records = messages.clone();
    // The same message twice, as SQS's at-least-once delivery may do.
    assert!(herald_worker::handle(&stack.app, &stack.aws, event.clone())
        .await
        .batch_item_failures
        .is_empty());
    let first = stack.status(&id).await;
    let again = herald_worker::handle(&stack.app, &stack.aws, event).await;
    assert!(again.batch_item_failures.is_empty());
    let second = stack.status(&id).await;
    assert_eq!(first["delivered"], 2);
    assert_eq!(second["delivered"], 2, "counted once");
    assert_eq!(
        first["updated_at"], second["updated_at"],
        "nothing was recorded again"
    );
}

#[tokio::test]
async fn partial_batch_failure_returns_only_the_failed_message() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (_, body) = stack
        .api_body(json!({"platform": "tg", "users": ["123456"]}))
        .await;
    let mut event: SqsEvent = serde_json::from_str(&repo_file("events/sqs-batch.json")).unwrap();
    // The fixture's first message, pointed at the request just accepted.
    let mut job: Job = serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
    job.request_id = body["request_id"].as_str().unwrap().to_string();
    event.records[0].body = Some(serde_json::to_string(&job).unwrap());
    let response = herald_worker::handle(&stack.app, &stack.aws, event).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["0b6a2f1e-0000-4000-8000-000000000002"],
        "only the poison message"
    );
    assert_eq!(stack.status(&job.request_id).await["delivered"], 1);
}

#[tokio::test]
async fn a_poison_message_reaches_the_dead_letter_queue_after_the_attempt_limit() {
    let stack = Stack::new().await;
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.aws.settings.queue_url)
        .message_body("{\"not\": \"a job\"}")
        .send()
        .await
        .unwrap();
    for _ in 0..3 {
        let messages = stack.receive(&stack.aws.settings.queue_url).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(stack.invoke_worker(messages).await.len(), 1);
    }
    // The redrive policy moves it on the next receive after maxReceiveCount (3).
    assert!(stack
        .receive(&stack.aws.settings.queue_url)
        .await
        .is_empty());
    let dead = stack.receive(&stack.dlq_url).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.as_deref(), Some("{\"not\": \"a job\"}"));
}

#[tokio::test]
async fn an_unreachable_queue_at_accept_is_503_and_nothing_is_accepted() {
    let mut stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let real_queue = stack.aws.settings.queue_url.clone();
    stack.aws.settings.queue_url = format!("{real_queue}-missing");
    let (status, body) = stack
        .api_body(json!({"platform": "tg", "users": ["123456"]}))
        .await;
    assert_eq!(status, 503, "{body}");
    // The request was recorded as accepting, then marked aborted: never accepted.
    let scan = stack
        .aws
        .dynamodb
        .scan()
        .table_name(&stack.aws.settings.requests_table)
        .send()
        .await
        .unwrap();
    let states: Vec<&str> = scan
        .items()
        .iter()
        .filter_map(|i| i.get("state"))
        .filter_map(|v| v.as_s().ok())
        .map(String::as_str)
        .collect();
    assert_eq!(states, ["aborted"]);
    stack.aws.settings.queue_url = real_queue;
    assert_eq!(stack.queue_count(&stack.aws.settings.queue_url).await, 0);
}

#[tokio::test]
async fn an_unreachable_database_at_accept_is_503() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    let mut settings = stack.aws.settings.clone();
    // A closed port: DynamoDB cannot be reached.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    settings.dynamodb_endpoint = Some(format!("http://{closed}"));
    let broken = Aws::connect(settings).await;
    let request =
        lambda_http::request::from_str(&repo_file("events/apigw-v2-explicit-user.json")).unwrap();
    let response = herald_api::router(&broken, stack.app.config.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(stack.queue_count(&stack.aws.settings.queue_url).await, 0);
}

#[tokio::test]
async fn a_job_too_large_for_a_message_travels_by_claim_check() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let big = "x".repeat(120 * 1024);
    let (status, body) = stack
        .api_body(json!({"platform": "tg", "users": [
            {"id": "123456", "data": {"note": big.clone()}},
            {"id": "234567", "data": {"note": big}}
        ]}))
        .await;
    assert_eq!(status, 202, "{body}");
    stack.drain(1).await;
    let s = stack.status(body["request_id"].as_str().unwrap()).await;
    assert_eq!(s["delivered"], 2);
    assert_eq!(
        stack.last_request("demo", "bm-234567").await["note"]
            .as_str()
            .unwrap()
            .len(),
        120 * 1024
    );
}

/// A platform that is down for one chat id and fine for the others.
struct DownFor(&'static str);

#[async_trait::async_trait]
impl Deliverer for DownFor {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult {
        if delivery.user.platform_id == self.0 {
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

#[tokio::test]
async fn users_failing_past_the_attempt_limit_are_failed_and_their_job_is_dead_lettered() {
    let config = Config {
        base_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        max_attempts: 3,
        ..herald_worker::config()
    };
    let stack = Stack::with(config, Arc::new(DownFor("234567"))).await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (_, body) = stack
        .api_body(json!({"platform": "tg", "users": ["123456", "234567"]}))
        .await;
    let id = body["request_id"].as_str().unwrap().to_string();
    stack.drain(1).await;
    let s = stack.status(&id).await;
    assert_eq!(
        (
            s["state"].as_str(),
            s["delivered"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some("done"), Some(1), Some(1)),
        "{s}"
    );
    assert_eq!(s["errors"][0]["user"], "tg:234567");
    assert_eq!(s["failed_by_reason"], json!({"unavailable": 1}));
    // Only the failing user, retried alone, ends in the dead-letter queue.
    let dead = stack.receive(&stack.dlq_url).await;
    assert_eq!(dead.len(), 1);
    let job: Job = serde_json::from_str(dead[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(job.request_id, id);
    assert_eq!(job.attempt, 3);
    match job.kind {
        herald_core::domain::JobKind::Deliver { users } => {
            assert_eq!(users.len(), 1);
            assert_eq!(
                users[0].user,
                herald_core::domain::UserRef::Platform {
                    platform: "tg".into(),
                    id: "234567".into()
                }
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_through_two_worker_instances_stays_under_the_rate_limit() {
    // The fake allows 100 messages per second per token; the two instances share 95.
    let telegram = FakeTelegram::start(TelegramScript {
        limit_per_second: 100,
        ..TelegramScript::default()
    })
    .await;
    let delivery = DeliveryConfig {
        telegram_api: telegram.url.clone(),
        telegram_rate: herald_worker::per_instance_rate(95, 2),
        ..DeliveryConfig::default()
    };
    let stack = Stack::with_delivery(delivery, 2).await;
    let template = "Order {{ last_request.order }} for {{ user.platform_id }}".to_string();
    stack
        .event_with("shop", herald_core::domain::Action::Message { template })
        .await;
    let bot = herald_core::domain::Bot {
        id: "shop".into(),
        telegram_token: Some("42:TOKEN".into()),
        ..Default::default()
    };
    stack.aws.put_bot(&bot).await.unwrap();
    stack
        .users(
            "shop",
            (0..1000).map(|i| ("tg".to_string(), (5000 + i).to_string(), format!("u{i}"))),
        )
        .await;
    let (status, body) = stack
        .api_body(json!({"platform": "tg", "users": "everyone", "data": {"order": 9}}))
        .await;
    assert_eq!(status, 202, "{body}");
    stack.drain(2).await;
    let s = stack.status(body["request_id"].as_str().unwrap()).await;
    assert_eq!(
        (s["delivered"].as_u64(), s["failed"].as_u64()),
        (Some(1000), Some(0)),
        "{s}"
    );
    let log = telegram.log.lock().unwrap();
    assert_eq!(
        log.rate_limited, 0,
        "two instances together kept under the limit"
    );
    assert_eq!(log.delivered.len(), 1000);
    assert!(log
        .delivered
        .iter()
        .all(|(chat, texts)| texts == &[format!("Order 9 for {chat}")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screens_from_the_worker_reach_the_engine_signed() {
    let engine = FakeEngine::start("engine-secret").await;
    let stack = Stack::with_delivery(DeliveryConfig::default(), 1).await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let bot = herald_core::domain::Bot {
        id: "demo".into(),
        screen_url: Some(engine.url.clone()),
        signing_secret: Some("engine-secret".into()),
        ..Default::default()
    };
    stack.aws.put_bot(&bot).await.unwrap();
    let (_, body) = stack.api_fixture("apigw-v2-everyone.json").await;
    stack.drain(1).await;
    let s = stack.status(body["request_id"].as_str().unwrap()).await;
    assert_eq!(s["delivered"], 3, "{s}");
    let log = engine.log.lock().unwrap();
    assert_eq!((log.accepted.len(), log.bad_signatures), (3, 0));
    assert!(log
        .accepted
        .iter()
        .all(|b| b["screen_id"] == "welcome" && b["bot_id"] == "demo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_does_not_send_twice() {
    let telegram = FakeTelegram::start(TelegramScript::default()).await;
    let delivery = DeliveryConfig {
        telegram_api: telegram.url.clone(),
        ..DeliveryConfig::default()
    };
    let stack = Stack::with_delivery(delivery, 1).await;
    stack
        .event_with(
            "demo",
            herald_core::domain::Action::Message {
                template: "Hi {{ user.platform_id }}".into(),
            },
        )
        .await;
    let bot = herald_core::domain::Bot {
        id: "demo".into(),
        telegram_token: Some("42:TOKEN".into()),
        ..Default::default()
    };
    stack.aws.put_bot(&bot).await.unwrap();
    stack.demo_users("demo").await;
    stack
        .api_body(json!({"platform": "tg", "users": ["123456", "234567"]}))
        .await;
    let messages = stack.receive(&stack.aws.settings.queue_url).await;
    let mut event = SqsEvent::default();
    event.records = messages;
    for _ in 0..2 {
        let response = herald_worker::handle(&stack.app, &stack.aws, event.clone()).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let log = telegram.log.lock().unwrap();
    assert_eq!(
        (log.calls["123456"], log.calls["234567"]),
        (1, 1),
        "each user got one message"
    );
}
