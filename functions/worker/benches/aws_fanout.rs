//! Benchmark: the AWS-shape fan-out — the `worker` handler draining an `everyone` request
//! on DynamoDB Local and the SQS emulator — against a raw `UpdateItem` loop writing the
//! same attributes to the same users at the same concurrency on the same emulator.
//!
//! Herald: USERS users (default 5,000) written as the bot engine would, `everyone`
//! accepted through the `api` handler, then one worker instance invoked on batches of 10
//! received from the queue until it is empty (expand pages, deliver jobs, outcome markers
//! and counters, status `done`). Baseline: the conditional `UpdateItem` Herald sends per
//! user, and nothing else, 32 in flight (the user store's per-job concurrency). The figure
//! is the ratio of users/s (goal ≥ 0.80).
//!
//! DynamoDB Local is a JVM: its first thousands of calls run before the JIT has compiled
//! them and are up to three times slower (a fifth of the users was not warm-up enough).
//! So both sides first run once, unmeasured; then the baseline runs before and after
//! Herald, and Herald is compared with their mean. Herald's time ends when the last worker
//! invocation that had messages returns (not when the harness has made sure the queue
//! stays empty). Needs the emulators:
//!
//!     infra/emulators start && . .cache/run/env && cargo bench -p herald-worker --bench aws_fanout

#[path = "../tests/stack/mod.rs"]
mod stack;

use futures::stream::{self, StreamExt};
use stack::*;
use std::time::Instant;

const CONCURRENCY: usize = 32;

fn users(count: usize) -> Vec<(String, String, String)> {
    (0..count)
        .map(|i| ("tg".to_string(), i.to_string(), format!("bm-{i:08}")))
        .collect()
}

async fn herald_rate(count: usize) -> f64 {
    let stack = Stack::new().await;
    stack.fixture_event("big").await;
    stack.users("big", users(count)).await;
    let started = Instant::now();
    let (status, accepted) = stack
        .api_body(json!({"platform": "tg", "users": "everyone", "data": {"campaign": "bench"}}))
        .await;
    assert_eq!(status, 202, "{accepted}");
    let elapsed = stack.drain(1).await - started;
    let done = stack.status(accepted["request_id"].as_str().unwrap()).await;
    assert_eq!(done["delivered"], count as u64, "{done}");
    count as f64 / elapsed.as_secs_f64()
}

async fn baseline_rate(count: usize) -> f64 {
    let stack = Stack::new().await;
    stack.users("big", users(count)).await;
    let aws = &stack.aws;
    let data: aws_sdk_dynamodb::types::AttributeValue =
        serde_dynamo::to_attribute_value(json!({"campaign": "bench"})).unwrap();
    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let data = data.clone();
            async move {
                aws.dynamodb
                    .update_item()
                    .table_name(&aws.settings.users_table)
                    .key(
                        "pk",
                        aws_sdk_dynamodb::types::AttributeValue::S(format!("big#bm-{i:08}")),
                    )
                    .update_expression(
                        "SET last_request = :data, last_request_at = :at, last_request_id = :rid, last_event_id = :eid",
                    )
                    .condition_expression(
                        "attribute_exists(pk) AND (attribute_not_exists(last_request_id) OR last_request_id <= :rid)",
                    )
                    .expression_attribute_values(":data", data)
                    .expression_attribute_values(":at", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
                    .expression_attribute_values(":rid", aws_sdk_dynamodb::types::AttributeValue::S("r".into()))
                    .expression_attribute_values(":eid", aws_sdk_dynamodb::types::AttributeValue::S("e".into()))
                    .send()
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    count as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::var("USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    println!(
        "aws-shape fan-out on DynamoDB Local + moto: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    baseline_rate(count).await;
    herald_rate(count).await;
    let before = baseline_rate(count).await;
    let herald = herald_rate(count).await;
    let after = baseline_rate(count).await;
    let baseline = (before + after) / 2.0;
    println!(
        "{count} users (after one unmeasured run of each): herald worker {herald:.0} users/s (accept to done), raw UpdateItem loop {before:.0} before and {after:.0} after at {CONCURRENCY} in flight — ratio {:.3} to their mean (goal ≥ 0.80)",
        herald / baseline
    );
}
