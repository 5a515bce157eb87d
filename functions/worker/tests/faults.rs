//! DynamoDB, then SQS, failing in the middle of an `everyone` broadcast on the AWS shape.
//!
//! The shared emulators are never stopped: each test puts a [`FaultProxy`] between the
//! functions' SDK clients and each emulator and fails one of them (refused, silent, or
//! reset) while expansions and deliveries are running. The event source is played by the
//! harness on the emulator directly, in rounds: one round is one visibility timeout, in
//! which every visible message is received once and handed to the worker, successes
//! deleted and failures made visible again. What must hold:
//! - while a service is down, accepts answer 503 with `Retry-After` and nothing of them
//!   is ever delivered; what was accepted before is not lost;
//! - an outage shorter than the receive count × the visibility timeout (here 2 failing
//!   rounds of 3 receives) completes by itself;
//! - a longer one (3 failing rounds) leaves jobs in the dead-letter queue, and a redrive
//!   through the admin API completes the broadcast;
//! - in both cases the request's counters are exact: every user delivered, none failed,
//!   none counted twice, and every user reached at least once.

mod stack;
use herald_fakes::{Fault, FaultProxy};
use stack::*;
use std::sync::Mutex;

const USERS: usize = 200;
/// The queue's maxReceiveCount in these stacks (`Stack::with` provisions 3).
const MAX_RECEIVES: usize = 3;

/// Short bounds so that a silent service fails a call in about a second.
fn short_timeouts() -> herald_aws::CallTimeouts {
    herald_aws::CallTimeouts {
        connect: Duration::from_millis(300),
        attempt: Duration::from_millis(400),
        operation: Duration::from_millis(1200),
    }
}

/// A platform that takes every message and counts them per user.
#[derive(Default)]
struct Counting(Mutex<HashMap<String, u32>>);

#[async_trait::async_trait]
impl Deliverer for Counting {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult {
        *self
            .0
            .lock()
            .unwrap()
            .entry(delivery.user.platform_id.clone())
            .or_default() += 1;
        DeliveryResult::Delivered { detail: None }
    }
}

#[derive(Clone, Copy, Debug)]
enum Service {
    DynamoDb,
    Sqs,
}

struct Broadcast {
    stack: Stack,
    /// The functions' view: adapters through the proxies.
    aws: Aws,
    app: App,
    dynamodb: FaultProxy,
    sqs: FaultProxy,
    counting: Arc<Counting>,
}

impl Broadcast {
    async fn new() -> Broadcast {
        let counting = Arc::new(Counting::default());
        // Small pages and jobs, so that expansions are still running a few rounds in.
        let config = Config {
            base_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            expand_page: 10,
            deliver_batch: 5,
            ..herald_worker::config()
        };
        let stack = Stack::with(config, counting.clone()).await;
        stack.fixture_event("shop").await;
        stack
            .users(
                "shop",
                (0..USERS).map(|i| ("tg".to_string(), i.to_string(), format!("u{i}"))),
            )
            .await;
        let dynamodb = FaultProxy::to_url(&endpoint("HERALD_TEST_DYNAMODB_ENDPOINT")).await;
        let sqs = FaultProxy::to_url(&endpoint("HERALD_TEST_SQS_ENDPOINT")).await;
        let aws = stack.through(&dynamodb, &sqs, short_timeouts()).await;
        let app = aws.app(
            stack.app.config.clone(),
            counting.clone(),
            herald_delivery::CHANNELS,
        );
        Broadcast {
            stack,
            aws,
            app,
            dynamodb,
            sqs,
            counting,
        }
    }

    fn proxy(&self, service: Service) -> &FaultProxy {
        match service {
            Service::DynamoDb => &self.dynamodb,
            Service::Sqs => &self.sqs,
        }
    }

    /// POST the fixture event to everyone through the api function: status, body and
    /// `Retry-After`.
    async fn accept(&self, wave: u32) -> (u16, Value, Option<String>) {
        let body = json!({"platform": "tg", "users": "everyone", "data": {"wave": wave}});
        let path = format!("/v1/events/{FIXTURE_EVENT}/{FIXTURE_SECRET}");
        let event = Stack::gateway_event(
            "POST",
            &path,
            &[("content-type", "application/json")],
            Some(body.to_string()),
        );
        self.stack.api_through(&self.aws, &event).await
    }

    /// One visibility timeout of the event source: every visible message received once,
    /// handed to the worker ten at a time (four invocations at once), then settled.
    /// Returns (messages received, messages failed).
    async fn round(&self) -> (usize, usize) {
        let queue = &self.stack.aws.settings.queue_url;
        let mut batches = Vec::new();
        loop {
            let batch = self.stack.receive_hidden_for(queue, 120).await;
            if batch.is_empty() {
                break;
            }
            batches.push(batch);
        }
        let received = batches.iter().map(Vec::len).sum();
        let started = Instant::now();
        let failed: Vec<Vec<String>> = futures::stream::iter(batches)
            .map(|batch| self.stack.invoke_through(&self.aws, &self.app, batch))
            .buffer_unordered(4)
            .collect()
            .await;
        let failed = failed.iter().map(Vec::len).sum();
        eprintln!(
            "round: {received} received, {failed} failed in {:?}",
            started.elapsed()
        );
        (received, failed)
    }

    /// Rounds until the queue is empty (nothing visible, delayed or in flight).
    async fn drain(&self) {
        for _ in 0..200 {
            let (received, _) = self.round().await;
            if received == 0 {
                if self
                    .stack
                    .queue_count(&self.stack.aws.settings.queue_url)
                    .await
                    == 0
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("the queue did not drain");
    }

    /// Every user's `last_request`, by scanning the users table directly.
    async fn waves(&self) -> HashMap<String, usize> {
        let mut waves = HashMap::new();
        let mut pages = self
            .stack
            .aws
            .dynamodb
            .scan()
            .table_name(&self.stack.aws.settings.users_table)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.unwrap();
            let wave = match item.get("last_request") {
                Some(v) => serde_dynamo::from_attribute_value::<_, Value>(v.clone())
                    .unwrap()
                    .to_string(),
                None => "none".to_string(),
            };
            *waves.entry(wave).or_default() += 1;
        }
        waves
    }
}

/// An `everyone` to 200 users with `service` failing as `fault` for `failing_rounds`
/// rounds after the first: the broadcast completes (by itself, or after a redrive when
/// the outage outlasted the receive count) with exact counters.
#[allow(clippy::too_many_lines)] // one scenario, read best whole
async fn an_outage_in_the_middle_of_everyone(
    service: Service,
    fault: Fault,
    failing_rounds: usize,
) {
    // One at a time: four broadcasts at once slow the SQS emulator past the rounds'
    // visibility timeout, which is not the failure under test.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let broadcast = Broadcast::new().await;
    let (status, body, _) = broadcast.accept(1).await;
    assert_eq!(status, 202, "{body}");
    let request_id = body["request_id"].as_str().unwrap().to_string();
    // The broadcast gets going: the first pages are expanded and their users delivered.
    let (received, failed) = broadcast.round().await;
    assert_eq!(failed, 0);
    assert!(received > 0);
    let first = broadcast.stack.status(&request_id).await;
    assert!(
        first["delivered"].as_u64().unwrap() < USERS as u64,
        "the outage is to come mid-broadcast: {first}"
    );

    broadcast.proxy(service).fail(fault);
    // While the service is down an accept is refused, never half-taken.
    let (status, refused, retry_after) = broadcast.accept(2).await;
    assert_eq!(status, 503, "{service:?} down: {refused}");
    assert!(retry_after.is_some(), "a 503 says when to retry");
    assert_eq!(refused["type"], "/problems/unavailable", "{refused}");
    for round in 0..failing_rounds {
        let (received, failed) = broadcast.round().await;
        assert!(
            failed > 0,
            "round {round} of the outage failed nothing ({received} received)"
        );
    }
    broadcast.proxy(service).heal();

    broadcast.drain().await;
    let dead = broadcast.stack.queue_count(&broadcast.stack.dlq_url).await;
    if failing_rounds >= MAX_RECEIVES {
        // Past the receive count the failed jobs wait in the dead letters: not lost, not
        // done, and the request says so.
        assert!(
            dead > 0,
            "an outage past the receive count dead-letters jobs"
        );
        let waiting = broadcast.stack.status(&request_id).await;
        assert_eq!(waiting["state"], "running", "{waiting}");
        let (code, listed) = broadcast
            .stack
            .admin("GET", "/v1/admin/dead-letters", None)
            .await;
        assert_eq!(code, 200, "{listed}");
        assert_eq!(
            listed["dead_letters"].as_array().unwrap().len(),
            dead,
            "{listed}"
        );
        let (code, redriven) = broadcast
            .stack
            .admin(
                "POST",
                "/v1/admin/dead-letters/redrive",
                Some(json!({"all": true})),
            )
            .await;
        assert_eq!(code, 200, "{redriven}");
        assert_eq!(redriven["redriven"], dead, "{redriven}");
        broadcast.drain().await;
    } else {
        assert_eq!(
            dead, 0,
            "an outage inside the receive count heals by itself"
        );
    }

    let done = broadcast.stack.status(&request_id).await;
    assert_eq!(
        (
            done["state"].as_str(),
            done["targeted"].as_u64(),
            done["delivered"].as_u64(),
            done["failed"].as_u64(),
            done["pending"].as_u64(),
        ),
        (
            Some("done"),
            Some(USERS as u64),
            Some(USERS as u64),
            Some(0),
            Some(0)
        ),
        "{done}"
    );
    assert_eq!(
        broadcast.stack.queue_count(&broadcast.stack.dlq_url).await,
        0
    );
    // Every user reached at least once (at-least-once delivery: a job whose outcomes did
    // not reach the store runs again), and every user's state holds the accepted
    // request's data, none the refused one's.
    let counts = broadcast.counting.0.lock().unwrap().clone();
    assert_eq!(counts.len(), USERS, "users reached");
    let repeats: u32 = counts.values().map(|n| n - 1).sum();
    eprintln!("{service:?} {fault:?} for {failing_rounds} rounds: {dead} dead-lettered, {repeats} repeated deliveries");
    assert_eq!(
        broadcast.waves().await,
        HashMap::from([(json!({"wave": 1}).to_string(), USERS)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_reset_for_less_than_the_receive_count_heals_by_itself() {
    an_outage_in_the_middle_of_everyone(Service::DynamoDb, Fault::Reset, MAX_RECEIVES - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_silent_past_the_receive_count_is_completed_by_a_redrive() {
    an_outage_in_the_middle_of_everyone(Service::DynamoDb, Fault::Blackhole, MAX_RECEIVES).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_refusing_for_less_than_the_receive_count_heals_by_itself() {
    an_outage_in_the_middle_of_everyone(Service::Sqs, Fault::Refuse, MAX_RECEIVES - 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_silent_past_the_receive_count_is_completed_by_a_redrive() {
    an_outage_in_the_middle_of_everyone(Service::Sqs, Fault::Blackhole, MAX_RECEIVES).await;
}
