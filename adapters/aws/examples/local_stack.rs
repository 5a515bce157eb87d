//! Provision Herald's AWS resources on local emulators and print the environment the
//! Lambda functions need, for `cargo lambda watch`:
//!
//! ```sh
//! infra/emulators start && . .cache/run/env
//! eval "$(cargo run -q -p herald-aws --features local --example local_stack)"
//! cargo lambda watch
//! ```
//!
//! Tables come from template.yaml; the fixture event of `events/` (`fixture-event`) and the
//! demo users of the documentation are registered so that the fixtures work as they are.

use herald_aws::{Aws, AwsSettings};
use herald_core::domain::Action;

const FIXTURE_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = |name: &str, test: &str| {
        std::env::var(name)
            .or_else(|_| std::env::var(test))
            .map_err(|_| {
                format!("set {name} (or source .cache/run/env after infra/emulators start)")
            })
    };
    let dynamodb = endpoint("HERALD_DYNAMODB_ENDPOINT", "HERALD_TEST_DYNAMODB_ENDPOINT")?;
    let sqs = endpoint("HERALD_SQS_ENDPOINT", "HERALD_TEST_SQS_ENDPOINT")?;
    let prefix = format!("herald-local-{}", herald_core::domain::now_ms());
    let settings = AwsSettings {
        users_table: format!("{prefix}-users"),
        events_table: format!("{prefix}-events"),
        requests_table: format!("{prefix}-requests"),
        queue_url: String::new(),
        transactional_queue_url: None,
        dlq_url: String::new(),
        user_shards: 16,
        region: Some("us-east-1".into()),
        dynamodb_endpoint: Some(dynamodb.clone()),
        sqs_endpoint: Some(sqs.clone()),
        timeouts: Default::default(),
    };
    let mut aws = Aws::connect(settings).await?;
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml"))?;
    herald_aws::local::provision(&mut aws, &template, &prefix, 5).await?;
    let action = Action::Screen {
        screen_id: "welcome".into(),
    };
    aws.put_event("fixture-event", "demo", "fixture", FIXTURE_SECRET, &action)
        .await?;
    for (platform, id, bm_id) in [
        ("tg", "123456", "5c517b7773515eaha3078e2f"),
        ("tg", "234567", "5c517b7773515eaha3078e30"),
        ("vk", "456789", "5c517b7773515eaha3078e32"),
    ] {
        aws.dynamodb
            .put_item()
            .table_name(&aws.settings.users_table)
            .set_item(Some(aws.user_item("demo", platform, id, bm_id)))
            .send()
            .await?;
    }
    let s = &aws.settings;
    println!("export HERALD_USERS_TABLE={}", s.users_table);
    println!("export HERALD_EVENTS_TABLE={}", s.events_table);
    println!("export HERALD_REQUESTS_TABLE={}", s.requests_table);
    println!("export HERALD_QUEUE_URL={}", s.queue_url);
    println!("export HERALD_DLQ_URL={}", s.dlq_url);
    println!("export HERALD_DYNAMODB_ENDPOINT={dynamodb}");
    println!("export HERALD_SQS_ENDPOINT={sqs}");
    println!("export HERALD_FIXTURE_SECRET={FIXTURE_SECRET}");
    Ok(())
}
