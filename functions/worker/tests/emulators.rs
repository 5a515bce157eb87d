//! The AWS runtime end to end on DynamoDB Local and an SQS emulator: the `api` handler and
//! the `worker` handler invoked in-process with the fixture events, real SDK clients, and
//! tables created from `template.yaml`. `./scripts/test` starts the emulators
//! (`infra/emulators start`) and exports their endpoints.

mod stack;

use herald_core::channels::Connections;
use stack::*;

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

/// The fixture batch (`events/sqs-batch.json`): a job and a body that is not one. The job
/// is delivered; the poison body can never succeed, so it goes to the dead-letter queue at
/// once (it used to fail the batch until the queue's maxReceiveCount moved it), and the
/// batch reports no failure. Failures the queue retries are in `faults.rs`.
#[tokio::test]
async fn a_batch_with_a_poison_message_delivers_the_rest_and_buries_the_poison() {
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (_, body) = stack
        .api_body(json!({"platform": "tg", "users": ["123456"]}))
        .await;
    let mut event: SqsEvent = serde_json::from_str(&repo_file("events/sqs-batch.json")).unwrap();
    // The fixture's first message, pointed at the request just accepted.
    let mut job: Job = serde_json::from_str(event.records[0].body.as_deref().unwrap()).unwrap();
    job.request_id = body["request_id"].as_str().unwrap().parse().unwrap();
    event.records[0].body = Some(serde_json::to_string(&job).unwrap());
    let response = herald_worker::handle(&stack.app, &stack.aws, event).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "nothing to retry: {:?}",
        response.batch_item_failures
    );
    assert_eq!(stack.status(&job.request_id).await["delivered"], 1);
    let dead = stack.receive(&stack.dlq_url).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body.as_deref(), Some("not a job"));
}

/// A poison message sent to the queue reaches the dead-letter queue on its first receive,
/// its body as it was, and is not received again.
#[tokio::test]
async fn a_poison_message_reaches_the_dead_letter_queue_on_its_first_receive() {
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
    let messages = stack.receive(&stack.aws.settings.queue_url).await;
    assert_eq!(messages.len(), 1);
    assert!(stack.invoke_worker(messages).await.is_empty());
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
    let broken = Aws::connect(settings).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_through_two_worker_instances_stays_under_the_rate_limit() {
    // The fake allows 100 messages per second per token. Each instance paces the bot at
    // its whole rate, 95: only the budget they share keeps the two together under it.
    let telegram = FakeTelegram::with_limit(100).await;
    let delivery = DeliveryConfig {
        telegram_rate: 95,
        ..DeliveryConfig::default()
    }
    .with_api("telegram", telegram.url.clone());
    let stack = Stack::with_delivery(delivery, 2).await;
    let template = "Order {{ last_request.order }} for {{ user.platform_id }}".to_string();
    stack
        .event_with(
            "shop",
            herald_core::domain::Action::Message(herald_core::message::Message::text(template)),
        )
        .await;
    stack.telegram_bot("shop").await;
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
    for (chat, texts) in log.delivered.iter().filter(|(_, t)| t.len() > 1) {
        let t0 = log.arrivals[0].2;
        let at: Vec<_> = log
            .arrivals
            .iter()
            .filter(|a| &a.0 == chat)
            .map(|a| a.2 - t0)
            .collect();
        eprintln!(
            "DUPLICATE chat {chat}: {texts:?} at {at:?} calls {:?}",
            log.calls.get(chat)
        );
    }
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
        id: "demo".parse().unwrap(),
        connections: Connections::default()
            .with("engine", "url", &engine.url)
            .with("engine", "signing_secret", "engine-secret"),
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
    let (telegram, stack) = Stack::greeting(1).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_twice_at_once_runs_once() {
    // SQS (and its emulator) now and then hands one message to two receivers at the same
    // moment: two instances then run the same job side by side, both find its users not
    // yet final, and without the job's lease both message every one of them.
    let (telegram, stack) = Stack::greeting(2).await;
    let chats: Vec<String> = (0..8).map(|i| (4100 + i).to_string()).collect();
    stack
        .users(
            "demo",
            chats
                .iter()
                .enumerate()
                .map(|(i, chat)| ("tg".to_string(), chat.clone(), format!("d{i}"))),
        )
        .await;
    let (status, body) = stack
        .api_body(json!({"platform": "tg", "users": chats}))
        .await;
    assert_eq!(status, 202, "{body}");
    let messages = stack.receive(&stack.aws.settings.queue_url).await;
    assert_eq!(messages.len(), 1, "one job");
    // Both runs settle the message as the event source does (done: deleted).
    let (first, second) = tokio::join!(
        stack.invoke_instance(&stack.instances[0], messages.clone()),
        stack.invoke_instance(&stack.instances[1], messages),
    );
    assert!(first.is_empty() && second.is_empty(), "no message failed");
    {
        let log = telegram.log.lock().unwrap();
        let calls: u32 = log.calls.values().sum();
        assert_eq!(calls, 8, "each user messaged once: {:?}", log.calls);
    }
    // The copy that found the job running was put back for when that run's lease ends;
    // it finds everyone final then, and messages nobody.
    assert_eq!(
        stack.queue_count(&stack.aws.settings.queue_url).await,
        1,
        "the copy, put back"
    );
    let s = stack.status(body["request_id"].as_str().unwrap()).await;
    assert_eq!(
        (s["state"].as_str(), s["delivered"].as_u64()),
        (Some("done"), Some(8)),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_out_of_time_hands_its_users_on_through_the_queue() {
    // Paced at 4 messages a second, 8 users take 2 s; a job may start deliveries for
    // 300 ms. An invocation must not wait out the pace (on Lambda, past its timeout, after
    // which nothing is recorded and the same users are messaged again): the job sends what
    // it can and enqueues the rest.
    let telegram = FakeTelegram::with_limit(10).await;
    let delivery = DeliveryConfig {
        telegram_rate: 4,
        ..DeliveryConfig::default()
    }
    .with_api("telegram", telegram.url.clone());
    let mut stack = Stack::with_delivery(delivery.clone(), 1).await;
    let config = Config {
        job_time_budget: Duration::from_millis(300),
        ..stack.app.config.clone()
    };
    let dispatcher = Arc::new(
        Dispatcher::with_pacer(
            Arc::new(stack.aws.clone()),
            &delivery,
            herald_worker::pacer(&stack.aws),
        )
        .unwrap(),
    );
    stack.app = stack.aws.app(config, dispatcher, herald_delivery::CHANNELS);
    stack.instances = vec![stack.app.clone()];
    let template = "Hello {{ user.platform_id }}".to_string();
    stack
        .event_with(
            "shop",
            herald_core::domain::Action::Message(herald_core::message::Message::text(template)),
        )
        .await;
    stack.telegram_bot("shop").await;
    let ids: Vec<String> = (0..8).map(|i| (700 + i).to_string()).collect();
    stack
        .users(
            "shop",
            ids.iter()
                .map(|id| ("tg".to_string(), id.clone(), format!("u{id}"))),
        )
        .await;
    let (status, body) = stack
        .api_body(json!({"platform": "tg", "users": ids}))
        .await;
    assert_eq!(status, 202, "{body}");

    // The one deliver job, in one invocation: it reaches some users and hands the rest on.
    let batch = stack.receive(&stack.aws.settings.queue_url).await;
    assert_eq!(batch.len(), 1);
    let failed = stack.invoke_instance(&stack.app, batch).await;
    assert!(failed.is_empty());
    let reached = telegram.log.lock().unwrap().delivered.len();
    assert!(
        (1..8).contains(&reached),
        "some users reached in the first job: {reached}"
    );
    assert_eq!(
        stack.queue_count(&stack.aws.settings.queue_url).await,
        1,
        "the rest went on in a new job"
    );

    stack.drain(1).await;
    let s = stack.status(body["request_id"].as_str().unwrap()).await;
    assert_eq!(
        (s["delivered"].as_u64(), s["failed"].as_u64()),
        (Some(8), Some(0)),
        "{s}"
    );
    let log = telegram.log.lock().unwrap();
    assert_eq!(log.rate_limited, 0);
    assert_eq!(log.delivered.len(), 8);
    assert_eq!(log.messaged_more_than_once(), 0, "{:?}", log.delivered);
}

/// A message that can never succeed — a body that is not a job, or a job whose request
/// record cannot be read — goes to the dead-letter queue on its first receive, with why,
/// instead of being received until the queue's maxReceiveCount; the batch reports no
/// failure for it, and it is listed as a dead letter.
#[tokio::test]
async fn a_corrupt_message_goes_to_the_dead_letters_on_its_first_receive() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (status, body) = stack.api_fixture("apigw-v2-everyone.json").await;
    assert_eq!(status, 202, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_string();
    stack
        .aws
        .dynamodb
        .update_item()
        .table_name(&stack.aws.settings.requests_table)
        .key("pk", AttributeValue::S(request_id.clone()))
        .key("sk", AttributeValue::S("request".into()))
        .update_expression("SET #r = :bad")
        .expression_attribute_names("#r", "record")
        .expression_attribute_values(":bad", AttributeValue::S("not a record".into()))
        .send()
        .await
        .unwrap();
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.aws.settings.queue_url)
        .message_body("{\"not\": \"a job\"}")
        .send()
        .await
        .unwrap();
    let mut received = 0;
    loop {
        let messages = stack.receive(&stack.aws.settings.queue_url).await;
        if messages.is_empty() {
            break;
        }
        received += messages.len();
        let failed = stack.invoke_worker(messages).await;
        assert!(failed.is_empty(), "nothing is left to retry: {failed:?}");
    }
    assert!(received >= 2, "the expand jobs and the stray body");
    assert_eq!(stack.queue_count(&stack.aws.settings.queue_url).await, 0);
    let (status, dead) = stack.admin("GET", "/v1/admin/dead-letters", None).await;
    assert_eq!(status, 200, "{dead}");
    let letters = dead["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), received, "each on its first receive: {dead}");
    for letter in letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.starts_with("corrupt record"), "{letter}");
    }
    assert!(letters.iter().any(|l| l["kind"] == "unknown"), "{dead}");
    assert!(
        letters
            .iter()
            .any(|l| l["request_id"] == request_id.as_str()),
        "{dead}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_job_has_its_own_queue_and_overtakes_a_queued_broadcast() {
    // As template.yaml deploys it: transactional jobs on a queue with an event source of
    // its own. The fake limits like Telegram (30/s per token, 1/s per chat); two
    // instances spend the bot's one budget of 30/s.
    let telegram = FakeTelegram::start(TelegramScript {
        limit_per_second: 30,
        chat_gap: Duration::from_secs(1),
        ..TelegramScript::default()
    })
    .await;
    let broadcast: Vec<String> = (0..300).map(|i| (9000 + i).to_string()).collect();
    let everybody: Vec<String> = broadcast
        .iter()
        .cloned()
        .chain(["777".to_string()])
        .collect();
    let stack = Stack::on_lanes(&telegram, "shop", &everybody).await;
    // 300 explicit users: bulk, 30 messages on the job queue.
    let (status, bulk) = stack
        .api_body(json!({"platform": "tg", "users": broadcast}))
        .await;
    assert_eq!(status, 202, "{bulk}");
    // One user, after them: transactional, on its own queue.
    let (status, order) = stack
        .api_body(json!({"platform": "tg", "users": ["777"]}))
        .await;
    assert_eq!(status, 202, "{order}");
    let transactional = stack.aws.settings.transactional_queue_url.clone().unwrap();
    assert_eq!(stack.queue_count(&stack.aws.settings.queue_url).await, 30);
    assert_eq!(stack.queue_count(&transactional).await, 1);
    stack.drain_lanes().await;
    let s = stack.status(order["request_id"].as_str().unwrap()).await;
    assert_eq!(
        (s["delivered"].as_u64(), &s["lane"]),
        (Some(1), &json!("transactional")),
        "{s}"
    );
    let s = stack.status(bulk["request_id"].as_str().unwrap()).await;
    assert_eq!(
        (s["delivered"].as_u64(), &s["lane"]),
        (Some(300), &json!("bulk")),
        "{s}"
    );
    let log = telegram.log.lock().unwrap();
    let chats: Vec<&str> = log.arrivals.iter().map(|(c, _, _)| c.as_str()).collect();
    let at = chats
        .iter()
        .position(|c| *c == "777")
        .expect("the order arrived");
    // Behind the broadcast in one queue it would come after at least its first two
    // batches of 100 users.
    assert!(at <= 30, "the order was message {at} of {}", chats.len());
    assert_eq!(log.rate_limited, 0, "{:?}", log.limited);
    assert_eq!(log.messaged_more_than_once(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_come_up_early_goes_back_to_sqs_for_at_most_fifteen_minutes() {
    use herald_core::ports::JobQueue;
    let stack = Stack::new().await;
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let in_a_day = herald_core::domain::now_ms() + 86_400_000;
    let (status, body) = stack
        .api_body(json!({"platform": "tg", "users": ["123456"],
                         "send_at": herald_core::status::rfc3339(in_a_day)}))
        .await;
    assert_eq!(status, 202, "{body}");
    let request_id: herald_core::ids::RequestId =
        body["request_id"].as_str().unwrap().parse().unwrap();
    let queue = stack.aws.settings.queue_url.clone();
    let delayed = || async {
        let out = stack
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(&queue)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        out.attributes().unwrap()[&QueueAttributeName::ApproximateNumberOfMessagesDelayed]
            .parse::<usize>()
            .unwrap()
    };
    assert_eq!(delayed().await, 1, "SQS holds the job back");
    assert!(stack.receive(&queue).await.is_empty());
    // The same job, come up a day early: the worker does nothing and delays it again.
    let early = herald_core::domain::Job::deliver(
        &request_id,
        herald_core::lane::Lane::Transactional,
        0,
        vec![herald_core::domain::JobUser {
            user: herald_core::domain::UserRef::Platform {
                platform: "tg".into(),
                id: "123456".into(),
            },
            patch: None,
        }],
    );
    stack
        .aws
        .enqueue(vec![early], std::time::Duration::ZERO)
        .await
        .unwrap();
    let messages = stack.receive(&queue).await;
    assert_eq!(messages.len(), 1);
    assert!(stack.invoke_worker(messages).await.is_empty());
    assert_eq!(delayed().await, 2, "put back, delayed");
    let s = stack.status(request_id.as_str()).await;
    assert_eq!(
        (s["state"].as_str(), s["delivered"].as_u64()),
        (Some("scheduled"), Some(0))
    );
    assert_eq!(
        stack.last_request("demo", "5c517b7773515eaha3078e2f").await,
        Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_met_by_one_instance_pauses_the_bot_on_every_instance() {
    // A broadcast on the job queue's instance meets a 429 (retry_after 2 s) at its first
    // message; orders keep coming on the transactional instance meanwhile.
    let telegram = FakeTelegram::start(TelegramScript {
        limit_per_second: 30,
        limited_once: std::collections::HashMap::from([("9000".to_string(), 2)]),
        ..TelegramScript::default()
    })
    .await;
    let broadcast: Vec<String> = (9000..9040).map(|i| i.to_string()).collect();
    let orders: Vec<String> = (7000..7030).map(|i| i.to_string()).collect();
    let everybody: Vec<String> = broadcast.iter().chain(&orders).cloned().collect();
    let stack = Stack::on_lanes(&telegram, "shop", &everybody).await;
    let (status, _) = stack
        .api_body(json!({"platform": "tg", "users": broadcast, "lane": "bulk"}))
        .await;
    assert_eq!(status, 202);
    let keep_ordering = async {
        for order in &orders {
            let (status, _) = stack
                .api_body(json!({"platform": "tg", "users": [order]}))
                .await;
            assert_eq!(status, 202);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(stack.drain_lanes(), keep_ordering);
    stack.drain_lanes().await;
    let log = telegram.log.lock().unwrap();
    assert_eq!(log.limited.len(), 1, "{:?}", log.limited);
    assert_eq!(
        log.delivered.len(),
        70,
        "everyone once, 9000 after the pause"
    );
    let (_, limited_at) = log.limited[0].clone();
    // Sends already on their way may still land; nothing else of the bot, on either
    // instance, until the retry_after has passed.
    let during_pause: Vec<&String> = log
        .arrivals
        .iter()
        .filter(|(_, _, at)| *at > limited_at && *at - limited_at < Duration::from_secs(2))
        .map(|(chat, _, _)| chat)
        .collect();
    assert!(
        during_pause.len() <= 3,
        "sent during the pause: {during_pause:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expansions_advance_while_outcome_batches_write_the_same_counters() {
    // Every page of an `everyone` request moves its counters item, as every outcome batch
    // does: on DynamoDB their transactions lose to each other (TransactionConflict; the
    // relay makes every other one lose), and an advance that took such a loss for "the
    // cursor moved" left its shard unfinished for good, an outcome batch failed its job.
    use herald_core::ports::RequestLog;
    let stack = Stack::new().await;
    let relay =
        herald_fakes::ConflictRelay::start(&endpoint("HERALD_TEST_DYNAMODB_ENDPOINT"), 2).await;
    let conflicted = herald_aws::Aws::connect(herald_aws::AwsSettings {
        dynamodb_endpoint: Some(relay.url.clone()),
        ..stack.aws.settings.clone()
    })
    .await
    .unwrap();
    stack.fixture_event("demo").await;
    stack.demo_users("demo").await;
    let (status, body) = stack.api_fixture("apigw-v2-everyone.json").await;
    assert_eq!(status, 202, "{body}");
    let request_id: herald_core::ids::RequestId =
        body["request_id"].as_str().unwrap().parse().unwrap();
    let Some((record, _)) = stack.aws.record(&request_id).await.unwrap() else {
        panic!("the request is recorded")
    };
    let herald_core::domain::Audience::Everyone { shards, .. } = record.audience else {
        panic!("an everyone request")
    };
    const PAGES: usize = 6;
    let pages = |shard: u32| {
        let aws = conflicted.clone();
        let request_id = request_id.clone();
        async move {
            let mut from: Option<String> = None;
            for page in 0..PAGES {
                let to = (page + 1 < PAGES).then(|| format!("page-{page}"));
                let advanced = aws
                    .advance_expansion(&request_id, shard, from.as_deref(), to.as_deref(), 2)
                    .await
                    .unwrap();
                assert!(
                    advanced,
                    "shard {shard}, page {page}: its cursor was at `from`"
                );
                from = to;
            }
        }
    };
    let outcomes = |writer: usize| {
        let aws = conflicted.clone();
        let request_id = request_id.clone();
        async move {
            for user in 0..15 {
                let key = format!("tg:w{writer}-{user}");
                aws.record_outcomes(
                    &request_id,
                    &[(key, herald_core::domain::Outcome::NotFound)],
                )
                .await
                .unwrap();
            }
        }
    };
    futures::future::join(
        futures::future::join_all((0..shards).map(pages)),
        futures::future::join_all((0..6).map(outcomes)),
    )
    .await;
    let s = stack.status(request_id.as_str()).await;
    assert_eq!(
        (s["targeted"].as_u64(), s["not_found"].as_u64()),
        (Some(u64::from(shards) * PAGES as u64 * 2), Some(90)),
        "targeted is shown once every shard has finished: {s}"
    );
    assert!(relay.conflicts() >= 45, "{} conflicts", relay.conflicts());
}

#[tokio::test]
async fn a_jobs_run_lease_ends_by_itself_and_only_its_owner_gives_it_back() {
    // A run that died never gives its lease back: the next copy must still run once the
    // lease has ended, and the dead run's late give-back must not free a lease it lost.
    use herald_aws::job_runs::RunClaim;
    let stack = Stack::new().await;
    let job = Job::deliver(
        &herald_core::domain::new_id().parse().unwrap(),
        herald_core::lane::Lane::Transactional,
        0,
        vec![],
    );
    let lease = Duration::from_millis(300);
    let RunClaim::Held(died) = stack.aws.start_run(&job, lease).await.unwrap() else {
        panic!("a free job's lease is taken")
    };
    let RunClaim::Busy(left) = stack.aws.start_run(&job, lease).await.unwrap() else {
        panic!("a held lease is not taken twice")
    };
    assert!(left <= lease, "{left:?}");
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let RunClaim::Held(_next) = stack.aws.start_run(&job, lease).await.unwrap() else {
        panic!("an ended lease is taken again")
    };
    stack.aws.end_run(died).await.unwrap();
    assert!(
        matches!(
            stack.aws.start_run(&job, lease).await.unwrap(),
            RunClaim::Busy(_)
        ),
        "the dead run's give-back left the next run's lease alone"
    );
}

#[tokio::test]
async fn a_chat_claimed_on_the_user_item_refuses_another_send_within_the_gap() {
    use herald_core::domain::LastRequestWrite;
    use herald_core::ports::{ChatClaim, ChatClaims, RequestStamp};
    let stack = Stack::new().await;
    stack
        .users(
            "demo",
            [("tg", "1", "bm-1")].map(|(p, i, b)| (p.into(), i.into(), b.into())),
        )
        .await;
    let bot: herald_core::ids::BotId = "demo".parse().unwrap();
    let gap = Duration::from_millis(1050);
    let now = herald_core::domain::now_ms();
    let stamp = |request: &str, at: i64| RequestStamp {
        request_id: request.parse().unwrap(),
        event_id: "ev".parse().unwrap(),
        at,
    };
    let write = |bm: &str| LastRequestWrite {
        bm_id: bm.into(),
        data: None,
    };
    let data = |n: u64| json!({"n": n}).as_object().unwrap().clone();
    let first = "01ja0000000000000000000001";
    let second = "01ja0000000000000000000002";
    let claim = |request: &'static str, at: i64, n: u64, bm: &'static str| {
        let (aws, bot) = (stack.aws.clone(), bot.clone());
        let (stamp, write, data) = (stamp(request, at), write(bm), data(n));
        async move {
            aws.write_claiming_chat(&bot, &stamp, &data, &write, gap)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim(first, now, 1, "bm-1").await, ChatClaim::Claimed);
    let item = stack.user("demo", "bm-1").await;
    assert_eq!(
        item["herald_chat_at"].as_n().unwrap(),
        &now.to_string(),
        "the chat's time is on the user, from the same update"
    );
    assert_eq!(stack.last_request("demo", "bm-1").await, json!({"n": 1}));
    assert_eq!(
        item["engine_step"].as_s().unwrap(),
        "cart",
        "the engine's own stays"
    );

    // Another instance, 300 ms later: refused, nothing written, told how long to wait.
    match claim(second, now + 300, 2, "bm-1").await {
        ChatClaim::Busy(wait) => assert_eq!(wait, Duration::from_millis(750)),
        other => panic!("the chat was sent to 300 ms ago: {other:?}"),
    }
    assert_eq!(stack.last_request("demo", "bm-1").await, json!({"n": 1}));

    // Once the gap has passed: its write goes through.
    assert_eq!(
        claim(second, now + 1050, 2, "bm-1").await,
        ChatClaim::Claimed
    );
    assert_eq!(stack.last_request("demo", "bm-1").await, json!({"n": 2}));

    // An older request's message after the gap: the newer data stays, the chat is claimed.
    assert_eq!(
        claim(first, now + 2100, 1, "bm-1").await,
        ChatClaim::Claimed
    );
    let item = stack.user("demo", "bm-1").await;
    assert_eq!(stack.last_request("demo", "bm-1").await, json!({"n": 2}));
    assert_eq!(
        item["herald_chat_at"].as_n().unwrap(),
        &(now + 2100).to_string()
    );

    // Nobody to write: never created.
    assert_eq!(claim(first, now, 1, "bm-gone").await, ChatClaim::NotFound);
    assert!(stack.aws.user("demo", "bm-gone").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_messaging_one_chat_space_their_sends_by_the_chat_gap() {
    // Each of 8 users gets a broadcast's message on the job queue's instance and an order
    // on the transactional queue's, at once. Each instance's pacer knows only its own
    // sends; the chat's time on the user item spaces the two. The fake answers a second
    // message to one chat within a second with 429, as Telegram does.
    let telegram = FakeTelegram::start(TelegramScript {
        limit_per_second: 30,
        chat_gap: Duration::from_secs(1),
        ..TelegramScript::default()
    })
    .await;
    let ids: Vec<String> = (5000..5008).map(|i| i.to_string()).collect();
    let stack = Stack::on_lanes(&telegram, "shop", &ids).await;
    let (status, bulk) = stack
        .api_body(json!({"platform": "tg", "users": ids, "lane": "bulk"}))
        .await;
    assert_eq!(status, 202, "{bulk}");
    for id in &ids {
        let (status, order) = stack
            .api_body(json!({"platform": "tg", "users": [id]}))
            .await;
        assert_eq!(status, 202, "{order}");
    }
    stack.drain_lanes().await;
    let log = telegram.log.lock().unwrap();
    assert_eq!(log.rate_limited, 0, "{:?}", log.limited);
    for id in &ids {
        let at: Vec<Instant> = log
            .arrivals
            .iter()
            .filter(|(chat, _, _)| chat == id)
            .map(|(_, _, at)| *at)
            .collect();
        assert_eq!(at.len(), 2, "chat {id}: the broadcast's and the order's");
        assert!(
            at[1].duration_since(at[0]) >= Duration::from_secs(1),
            "chat {id} got two messages {:?} apart",
            at[1].duration_since(at[0])
        );
    }
}

#[tokio::test]
async fn a_moved_chat_is_remembered_on_its_user_item_and_read_back_and_no_user_is_created() {
    use herald_core::domain::UserRef;
    use herald_core::ports::UserStore;
    let stack = Stack::new().await;
    stack
        .users(
            "demo",
            [("tg", "-123", "bm-group")].map(|(p, i, b)| (p.into(), i.into(), b.into())),
        )
        .await;
    let bot: herald_core::ids::BotId = "demo".parse().unwrap();
    let moved = [
        ("bm-group".to_string(), "-100123".to_string()),
        ("bm-nobody".to_string(), "-100999".to_string()),
    ];
    stack
        .aws
        .remember_migrated_chats(&bot, &moved)
        .await
        .unwrap();
    let found = stack
        .aws
        .resolve(
            &bot,
            &[
                UserRef::Bm {
                    id: "bm-group".into(),
                },
                UserRef::Platform {
                    platform: "tg".into(),
                    id: "-123".into(),
                },
            ],
        )
        .await
        .unwrap();
    let by_state_id = found[0].clone().expect("the user");
    assert_eq!(
        by_state_id.platform_id, "-123",
        "the engine's id is not rewritten"
    );
    assert_eq!(by_state_id.migrated_chat_id.as_deref(), Some("-100123"));
    assert_eq!(by_state_id.chat_id(), "-100123");
    // By platform id the user is found through an index that does not project it
    // (docs/aws.md): Telegram's answer re-addresses that message.
    let by_platform_id = found[1].clone().expect("the user");
    assert_eq!(by_platform_id.migrated_chat_id, None);
    assert!(
        stack.aws.user("demo", "bm-nobody").await.unwrap().is_none(),
        "a user that does not exist is not created"
    );
}
