//! The behaviour suite (`tests/behaviour`) on the AWS runtime: the `api` handler invoked
//! with API Gateway events, the `worker` handler with SQS batches received from the
//! emulator, over tables and queues of their own on DynamoDB Local and the SQS emulator.

mod stack;

use aws_sdk_dynamodb::types::AttributeValue;
use herald_behaviour::{Answer, Runtime};
use stack::*;

struct OnAws(Stack);

#[async_trait::async_trait]
impl Runtime for OnAws {
    type Job = SqsMessage;

    fn defaults() -> Config {
        herald_worker::config()
    }

    async fn start(config: Config, deliverer: Arc<dyn Deliverer>) -> Self {
        OnAws(Stack::with(config, deliverer).await)
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let event = Stack::gateway_event(method, path, headers, body);
        let request = lambda_http::request::from_str(&event).expect("an API Gateway event");
        let response = herald_api::router(&self.0.aws, self.0.app.config.clone())
            .oneshot(request)
            .await
            .unwrap();
        Answer::of(response).await
    }

    async fn engine_users(&self, bot: &str, users: &[(String, String, String)]) {
        self.0.users(bot, users.to_vec()).await;
    }

    async fn engine_step(&self, bot: &str, bm_id: &str) -> Option<String> {
        self.0
            .user(bot, bm_id)
            .await
            .get("engine_step")
            .and_then(|v| v.as_s().ok())
            .cloned()
    }

    async fn user_count(&self, bot: &str) -> usize {
        let scan = self
            .0
            .aws
            .dynamodb
            .scan()
            .table_name(&self.0.aws.settings.users_table)
            .filter_expression("begins_with(pk, :bot)")
            .expression_attribute_values(":bot", AttributeValue::S(format!("{bot}#")))
            .send()
            .await
            .unwrap();
        assert!(scan.last_evaluated_key().is_none(), "one page of users");
        scan.count() as usize
    }

    async fn take(&self) -> Vec<SqsMessage> {
        let mut taken = Vec::new();
        loop {
            let batch = self.0.receive(&self.0.aws.settings.queue_url).await;
            if batch.is_empty() {
                return taken;
            }
            taken.extend(batch);
        }
    }

    async fn work(&self, jobs: Vec<SqsMessage>, settle: bool) {
        for batch in jobs.chunks(10) {
            if settle {
                self.0.invoke_worker(batch.to_vec()).await;
            } else {
                let mut event = SqsEvent::default();
                event.records = batch.to_vec();
                let response = herald_worker::handle(&self.0.app, &self.0.aws, event).await;
                assert!(response.batch_item_failures.is_empty());
            }
        }
    }

    async fn drain(&self) {
        self.0.drain(4).await;
    }

    async fn queued(&self) -> usize {
        self.0.queue_count(&self.0.aws.settings.queue_url).await
    }
}

herald_behaviour::behaviour_suite!(OnAws);
