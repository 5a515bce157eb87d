//! Per-event rate limits shared by every `api` instance: GCRA state in DynamoDB.
//!
//! One item per limited event in the events table, `pk` = `rate#{event_id}`, holds the
//! theoretical arrival time `tat` (microseconds). Admitting a request reads it, applies
//! [`gcra`], and writes the new value on condition that it is still the one read
//! (optimistic concurrency, a few retries under contention). Cost: one strongly consistent
//! read and one conditional write per request of a limited event; events without a limit
//! never touch it.

use crate::events::RATE_PREFIX;
use crate::{get_n, n, s, store_error, Aws};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use herald_core::domain::RateLimit;
use herald_core::ports::Throttle;
use herald_core::throttle::{gcra, now_us};
use herald_core::StoreError;
use std::time::Duration;

/// Attempts at the conditional write before the request is refused as contended.
const ATTEMPTS: u32 = 5;

#[async_trait]
impl Throttle for Aws {
    async fn admit(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> Result<Result<(), Duration>, StoreError> {
        let pk = format!("{RATE_PREFIX}{key}");
        for _ in 0..ATTEMPTS {
            let found = self
                .dynamodb
                .get_item()
                .table_name(&self.settings.events_table)
                .key("pk", s(&pk))
                .consistent_read(true)
                .send()
                .await
                .map_err(store_error)?;
            let old = found.item.as_ref().map(|item| get_n(item, "tat"));
            let tat = match gcra(old, now_us(), limit) {
                Ok(tat) => tat,
                Err(wait) => return Ok(Err(wait)),
            };
            let mut put = self
                .dynamodb
                .put_item()
                .table_name(&self.settings.events_table)
                .item("pk", s(&pk))
                .item("tat", n(tat));
            put = match old {
                Some(old) => put
                    .condition_expression("tat = :old")
                    .expression_attribute_values(":old", n(old)),
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            match put.send().await {
                Ok(_) => return Ok(Ok(())),
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(PutItemError::ConditionalCheckFailedException(_))
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(store_error(e)),
            }
        }
        // Contended this hard, the limit is surely used up: ask for a short wait.
        Ok(Err(Duration::from_millis(
            (1000.0 / limit.per_second) as u64,
        )))
    }
}
