//! Per-event rate limits shared by every `api` instance: GCRA state in DynamoDB.
//!
//! One item per limited event in the events table, `pk` = `rate#{event_id}`, holds the
//! theoretical arrival time `tat` (microseconds). Admitting a request reads it, applies
//! [`gcra`], and writes the new value on condition that it is still the one read
//! (optimistic concurrency, a few retries under contention). Cost: one strongly consistent
//! read and one conditional write per request of a limited event; events without a limit
//! never touch it.

use crate::events::RATE_PREFIX;
use crate::tat::ATTEMPTS;
use crate::{s, Aws};
use async_trait::async_trait;
use herald_core::domain::RateLimit;
use herald_core::ports::Throttle;
use herald_core::throttle::{gcra, now_us};
use herald_core::StoreError;
use std::collections::HashMap;
use std::time::Duration;

#[async_trait]
impl Throttle for Aws {
    async fn admit(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> Result<Result<(), Duration>, StoreError> {
        let item_key = HashMap::from([("pk".to_string(), s(format!("{RATE_PREFIX}{key}")))]);
        let table = &self.settings.events_table;
        for _ in 0..ATTEMPTS {
            let old = self.read_tat(table, &item_key).await?;
            let tat = match gcra(old, now_us(), limit) {
                Ok(tat) => tat,
                Err(wait) => return Ok(Err(wait)),
            };
            if self.write_tat(table, &item_key, (old, tat), None).await? {
                return Ok(Ok(()));
            }
        }
        // Contended this hard, the limit is surely used up: ask for a short wait.
        Ok(Err(Duration::from_millis(
            (1000.0 / limit.per_second) as u64,
        )))
    }
}
