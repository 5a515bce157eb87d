//! The emulator test harness: a fresh set of tables and queues per test (created from
//! `template.yaml`), the `api` handler invoked with API Gateway events, the `worker`
//! handler invoked with SQS batches received from the emulator, and deliverers that fail
//! on demand.
#![allow(dead_code, unused_imports)]

pub use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
pub use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
pub use aws_sdk_sqs::types::QueueAttributeName;
pub use futures::StreamExt;
pub use herald_aws::{Aws, AwsSettings};
pub use herald_core::channels::Connections;
pub use herald_core::domain::DeliveryResult;
pub use herald_core::domain::Job;
pub use herald_core::log_deliverer::LogDeliverer;
pub use herald_core::ports::{Deliverer, Delivery};
pub use herald_core::{App, Config};
pub use herald_delivery::dispatch::Dispatcher;
pub use herald_delivery::DeliveryConfig;
pub use herald_fakes::{FakeEngine, FakeTelegram, TelegramScript};
pub use http_body_util::BodyExt;
pub use serde_json::{json, Value};
pub use std::collections::HashMap;
pub use std::sync::Arc;
pub use std::time::{Duration, Instant};
pub use tower::ServiceExt;

pub const FIXTURE_EVENT: &str = "fixture-event";
/// The admin token every test stack accepts (the behaviour suite's).
pub use herald_behaviour::ADMIN_TOKEN;

pub const FIXTURE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn endpoint(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run ./scripts/test, which starts DynamoDB Local and the SQS emulator (infra/emulators start)")
    })
}

pub fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fresh set of tables and queues on the emulators, named uniquely for one test.
pub struct Stack {
    pub aws: Aws,
    pub app: App,
    pub dlq_url: String,
    /// Worker instances for `drain`, each with its own deliverer, as separate Lambda
    /// instances have; `[app]` unless a test adds more.
    pub instances: Vec<App>,
}

impl Stack {
    pub async fn new() -> Stack {
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

    pub async fn with(config: Config, deliverer: Arc<dyn Deliverer>) -> Stack {
        Stack::provisioned(config, deliverer, false).await
    }

    /// With a queue of transactional jobs when `lanes` is set, as template.yaml deploys.
    async fn provisioned(mut config: Config, deliverer: Arc<dyn Deliverer>, lanes: bool) -> Stack {
        config.admin_token_hash = Some(herald_core::secret::hash(ADMIN_TOKEN));
        let suffix = ulid::Ulid::new().to_string().to_lowercase();
        let settings = AwsSettings {
            users_table: format!("users-{suffix}"),
            events_table: format!("events-{suffix}"),
            requests_table: format!("requests-{suffix}"),
            queue_url: String::new(),
            transactional_queue_url: None,
            dlq_url: String::new(),
            user_shards: 16,
            region: Some("us-east-1".into()),
            dynamodb_endpoint: Some(endpoint("HERALD_TEST_DYNAMODB_ENDPOINT")),
            sqs_endpoint: Some(endpoint("HERALD_TEST_SQS_ENDPOINT")),
            // The emulators can be slow under a whole test run: the harness waits.
            timeouts: herald_aws::CallTimeouts {
                connect: Duration::from_secs(5),
                attempt: Duration::from_secs(60),
                operation: Duration::from_secs(120),
            },
        };
        let mut aws = Aws::connect(settings).await.unwrap();
        let template = repo_file("template.yaml");
        if lanes {
            herald_aws::local::provision_with_lanes(&mut aws, &template, &suffix, 3)
                .await
                .unwrap();
        } else {
            herald_aws::local::provision(&mut aws, &template, &suffix, 3)
                .await
                .unwrap();
        }
        let dlq_url = aws.settings.dlq_url.clone();
        let app = aws.app(config, deliverer, herald_delivery::CHANNELS);
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

    /// The same tables and queues reached through `dynamodb` and `sqs` (fault proxies),
    /// with these call timeouts: what a function instance on a failing network sees.
    pub async fn through(
        &self,
        dynamodb: &herald_fakes::FaultProxy,
        sqs: &herald_fakes::FaultProxy,
        timeouts: herald_aws::CallTimeouts,
    ) -> Aws {
        let settings = AwsSettings {
            dynamodb_endpoint: Some(dynamodb.url()),
            sqs_endpoint: Some(sqs.url()),
            timeouts,
            ..self.aws.settings.clone()
        };
        Aws::connect(settings).await.unwrap()
    }

    /// Run `instances` worker instances that deliver through real HTTP per `delivery`,
    /// sharing each bot's send budget.
    pub async fn with_delivery(delivery: DeliveryConfig, instances: usize) -> Stack {
        Stack::delivering(delivery, instances, false).await
    }

    /// `instances` instances delivering to a fake Telegram that answers every message,
    /// and bot `demo` on it with a `message` event greeting each user by id.
    pub async fn greeting(instances: usize) -> (FakeTelegram, Stack) {
        let telegram = FakeTelegram::start(TelegramScript::default()).await;
        let delivery = DeliveryConfig::default().with_api("telegram", telegram.url.clone());
        let stack = Stack::with_delivery(delivery, instances).await;
        stack
            .event_with(
                "demo",
                herald_core::domain::Action::Message(herald_core::message::Message::text(
                    "Hi {{ user.platform_id }}",
                )),
            )
            .await;
        stack.telegram_bot("demo").await;
        (telegram, stack)
    }

    /// [`Stack::with_delivery`] with transactional jobs on a queue of their own.
    pub async fn with_lanes(delivery: DeliveryConfig, instances: usize) -> Stack {
        Stack::delivering(delivery, instances, true).await
    }

    /// As template.yaml deploys it, against `telegram` at 30 messages/s per bot: two
    /// instances, one per queue, on one send budget; a bot `bot` connected to the fake with
    /// the users `ids` on `tg` and a message event saying hello to each.
    pub async fn on_lanes(telegram: &FakeTelegram, bot: &str, ids: &[String]) -> Stack {
        let delivery = DeliveryConfig {
            telegram_rate: 30,
            ..DeliveryConfig::default()
        }
        .with_api("telegram", telegram.url.clone());
        let stack = Stack::with_lanes(delivery, 2).await;
        let template = "Hello {{ user.platform_id }}".to_string();
        stack
            .event_with(
                bot,
                herald_core::domain::Action::Message(herald_core::message::Message::text(template)),
            )
            .await;
        stack.telegram_bot(bot).await;
        stack
            .users(
                bot,
                ids.iter()
                    .map(|id| ("tg".to_string(), id.clone(), format!("u{id}"))),
            )
            .await;
        stack
    }

    async fn delivering(delivery: DeliveryConfig, instances: usize, lanes: bool) -> Stack {
        let mut config = Config {
            base_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            ..herald_worker::config()
        };
        if lanes {
            // Deliver jobs of 10 users: a 300-user broadcast is 30 messages, three of the
            // event source's batches, as a large broadcast is many.
            config.deliver_batch = 10;
        }
        let mut stack = Stack::provisioned(config, Arc::new(LogDeliverer::default()), lanes).await;
        // Each instance its own scheduler, as each Lambda instance has; all of them spend
        // one send budget in DynamoDB, as deployed.
        let dispatcher = || -> Arc<dyn Deliverer> {
            Arc::new(
                Dispatcher::with_pacer(
                    Arc::new(stack.aws.clone()),
                    &delivery,
                    herald_worker::pacer(&stack.aws),
                )
                .unwrap(),
            )
        };
        stack.instances = (0..instances)
            .map(|_| {
                stack.aws.app(
                    stack.app.config.clone(),
                    dispatcher(),
                    herald_delivery::CHANNELS,
                )
            })
            .collect();
        stack.app = stack.instances[0].clone();
        stack
    }

    /// Register `bot` with a Telegram token.
    pub async fn telegram_bot(&self, bot: &str) {
        let bot = herald_core::domain::Bot {
            id: bot.parse().unwrap(),
            connections: Connections::default().with("telegram", "token", "42:TOKEN"),
        };
        self.aws.put_bot(&bot).await.unwrap();
    }

    pub async fn event_with(&self, bot: &str, action: herald_core::domain::Action) {
        self.aws
            .put_event(FIXTURE_EVENT, bot, "fixture", FIXTURE_SECRET, &action)
            .await
            .unwrap();
    }

    pub async fn fixture_event(&self, bot: &str) {
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
    pub async fn users(
        &self,
        bot: &str,
        users: impl IntoIterator<Item = (String, String, String)>,
    ) {
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
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[_]>::to_vec).collect();
        let writes = chunks.into_iter().map(|chunk| {
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

    pub async fn demo_users(&self, bot: &str) {
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
    pub async fn api(&self, event: &str) -> (u16, Value) {
        let (status, body, _) = self.api_through(&self.aws, event).await;
        (status, body)
    }

    /// Invoke an api handler whose adapters are `aws`: status, body and `Retry-After`.
    pub async fn api_through(&self, aws: &Aws, event: &str) -> (u16, Value, Option<String>) {
        let request = lambda_http::request::from_str(event).expect("an API Gateway event");
        let response = herald_api::router(aws, self.app.config.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            retry_after,
        )
    }

    pub async fn api_fixture(&self, name: &str) -> (u16, Value) {
        self.api(&repo_file(&format!("events/{name}"))).await
    }

    /// An API Gateway v2 event for `method path` with these headers and body.
    pub fn gateway_event(
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> String {
        let mut event: Value =
            serde_json::from_str(&repo_file("events/apigw-v2-explicit-user.json")).unwrap();
        let (raw_path, query) = path.split_once('?').unwrap_or((path, ""));
        event["routeKey"] = json!("$default");
        event["rawPath"] = json!(raw_path);
        event["rawQueryString"] = json!(query);
        event["requestContext"]["http"]["method"] = json!(method);
        event["requestContext"]["http"]["path"] = json!(raw_path);
        event["requestContext"]["routeKey"] = json!("$default");
        event.as_object_mut().unwrap().remove("pathParameters");
        let mut all = json!({"host": "abc123.execute-api.us-east-1.amazonaws.com"});
        for (name, value) in headers {
            all[name.to_ascii_lowercase()] = json!(value);
        }
        event["headers"] = all;
        match body {
            Some(body) => event["body"] = json!(body),
            None => {
                event.as_object_mut().unwrap().remove("body");
            }
        }
        event.to_string()
    }

    /// An admin API call through the api handler, with the admin token.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        let event = Self::gateway_event(method, path, &headers, body.map(|b| b.to_string()));
        self.api(&event).await
    }

    /// An admin call with a raw body of this content type.
    pub async fn admin_raw(&self, path: &str, content_type: &str, body: String) -> (u16, Value) {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", content_type),
        ];
        self.api(&Self::gateway_event("POST", path, &headers, Some(body)))
            .await
    }

    /// POST an event request with extra headers (e.g. an idempotency key).
    pub async fn post_event(
        &self,
        event_id: &str,
        secret: &str,
        headers: &[(&str, &str)],
        body: Value,
    ) -> (u16, Value, Option<String>) {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let path = format!("/v1/events/{event_id}/{secret}");
        let event = Self::gateway_event("POST", &path, &all, Some(body.to_string()));
        self.api_through(&self.aws, &event).await
    }

    /// An event like the fixtures, with another body.
    pub async fn api_body(&self, body: Value) -> (u16, Value) {
        let mut event: Value =
            serde_json::from_str(&repo_file("events/apigw-v2-explicit-user.json")).unwrap();
        event["body"] = Value::String(body.to_string());
        self.api(&event.to_string()).await
    }

    pub async fn status(&self, request_id: &str) -> Value {
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

    /// Receive up to ten messages as the SQS event source would, hidden for the queue's
    /// visibility timeout in `template.yaml` (360 s): a slow invocation on a loaded machine
    /// must not see its messages handed to another invocation meanwhile.
    pub async fn receive(&self, queue_url: &str) -> Vec<SqsMessage> {
        self.receive_hidden_for(queue_url, 360).await
    }

    /// Receive up to ten messages, hidden for `visibility` seconds.
    pub async fn receive_hidden_for(&self, queue_url: &str, visibility: i32) -> Vec<SqsMessage> {
        let out = self
            .aws
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(visibility)
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
    pub async fn invoke_worker(&self, messages: Vec<SqsMessage>) -> Vec<String> {
        self.invoke_instance(&self.app, messages).await
    }

    pub async fn invoke_instance(&self, app: &App, messages: Vec<SqsMessage>) -> Vec<String> {
        self.invoke_through(&self.aws, app, messages).await
    }

    /// One worker invocation whose adapters are `aws` (say, through fault proxies), the
    /// messages settled on the emulator directly, as the event source does.
    pub async fn invoke_through(
        &self,
        aws: &Aws,
        app: &App,
        messages: Vec<SqsMessage>,
    ) -> Vec<String> {
        self.invoke_via(aws, app, &self.aws.settings.queue_url, messages)
            .await
    }

    /// One worker invocation on `messages` received from `queue_url`, settled there.
    pub async fn invoke_via(
        &self,
        aws: &Aws,
        app: &App,
        queue_url: &str,
        messages: Vec<SqsMessage>,
    ) -> Vec<String> {
        let mut event = SqsEvent::default();
        event.records = messages.clone();
        let response = herald_worker::handle(app, aws, event).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        // As Lambda's SQS event source does: failed messages become visible again, the
        // rest are deleted in one batch call.
        let mut done = Vec::new();
        for (i, message) in messages.into_iter().enumerate() {
            let receipt = message.receipt_handle.unwrap();
            if failed.contains(message.message_id.as_ref().unwrap()) {
                self.aws
                    .sqs
                    .change_message_visibility()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                done.push(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .unwrap(),
                );
            }
        }
        if !done.is_empty() {
            let deleted = self
                .aws
                .sqs
                .delete_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .unwrap();
            assert!(deleted.failed.is_empty(), "{:?}", deleted.failed);
        }
        failed
    }

    /// Run the worker over the queue until it is empty, with `concurrency` invocations at a
    /// time as Lambda scales out; when the last invocation that had messages finished.
    pub async fn drain(&self, concurrency: usize) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut idle = 0;
        let mut last_work = Instant::now();
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
            last_work = Instant::now();
        }
        last_work
    }

    /// Run both queues' event sources at once, as template.yaml deploys them: the job
    /// queue's on instance 0 and the transactional queue's on instance 1, each receiving
    /// a batch and invoking as soon as its last invocation ended, until both queues stay
    /// empty.
    pub async fn drain_lanes(&self) {
        let transactional = self
            .aws
            .settings
            .transactional_queue_url
            .clone()
            .expect("a stack with lanes");
        let queues = [self.aws.settings.queue_url.clone(), transactional];
        let source = |queue: usize| {
            let queues = &queues;
            async move {
                let deadline = Instant::now() + Duration::from_secs(300);
                let mut idle = 0;
                while idle < 3 {
                    assert!(Instant::now() < deadline, "the queues did not drain");
                    let batch = self.receive(&queues[queue]).await;
                    if batch.is_empty() {
                        let mut left = 0;
                        for url in queues {
                            left += self.queue_count(url).await;
                        }
                        idle = if left == 0 { idle + 1 } else { 0 };
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    idle = 0;
                    let instance = &self.instances[queue % self.instances.len()];
                    self.invoke_via(&self.aws, instance, &queues[queue], batch)
                        .await;
                }
            }
        };
        tokio::join!(source(0), source(1));
    }

    pub async fn user(
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

    pub async fn last_request(&self, bot: &str, bm_id: &str) -> Value {
        match self.user(bot, bm_id).await.get("last_request") {
            Some(v) => serde_dynamo::from_attribute_value(v.clone()).unwrap(),
            None => Value::Null,
        }
    }

    pub async fn queue_count(&self, url: &str) -> usize {
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
