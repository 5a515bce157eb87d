//! A bot's send budget shared by every worker instance: the budget's state in DynamoDB.
//!
//! One item per bot and channel in the requests table, `pk` = `pace#{bot}#{channel}`,
//! `sk` = `budget`, holds the time its next slot is free, `tat` (Unix microseconds). A
//! claim reads it, applies [`herald_core::budget::claim`] and writes the new value on
//! condition that it is still the one read (optimistic concurrency, a few retries under
//! contention), so instances never take the same slot. Cost: one strongly consistent read
//! and one conditional write per claim — a transactional send, or up to five bulk sends.
//! A 429 met by any instance moves `tat` past its `retry_after` the same way. The item
//! expires a day after its last write.

use crate::{get_n, n, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use herald_core::budget::{claim, interval_us, paused, slots_from};
use herald_core::lane::Lane;
use herald_core::ports::SendBudget;
use herald_core::throttle::now_us;
use herald_core::StoreError;
use std::time::Duration;

/// Attempts at the conditional write before the claim is answered with a short wait.
const ATTEMPTS: u32 = 5;

/// The budget item's sort key.
const BUDGET_SK: &str = "budget";

/// How long an unused budget item is kept.
const KEEP_SECS: i64 = 24 * 3600;

#[async_trait]
impl SendBudget for Aws {
    async fn claim(
        &self,
        key: &str,
        per_second: u32,
        lane: Lane,
        want: u32,
    ) -> Result<Result<Vec<Duration>, Duration>, StoreError> {
        let item_key = self.request_key(&format!("pace#{key}"), BUDGET_SK);
        for _ in 0..ATTEMPTS {
            let old = self.budget_tat(&item_key).await?;
            let now = now_us();
            let (tat, slots) = match claim(old, now, per_second, lane, want) {
                Ok(claimed) => claimed,
                Err(wait) => return Ok(Err(wait)),
            };
            if self.put_budget(&item_key, old, tat, now).await? {
                return Ok(Ok(slots_from(now, &slots)));
            }
        }
        // Contended this hard, the budget is surely taken: look again in a slot's time.
        Ok(Err(Duration::from_micros(interval_us(per_second) as u64)))
    }

    async fn pause(&self, key: &str, wait: Duration) -> Result<(), StoreError> {
        let item_key = self.request_key(&format!("pace#{key}"), BUDGET_SK);
        for _ in 0..ATTEMPTS {
            let old = self.budget_tat(&item_key).await?;
            let now = now_us();
            let Some(until) = paused(old, now, wait) else {
                return Ok(());
            };
            if self.put_budget(&item_key, old, until, now).await? {
                return Ok(());
            }
        }
        Err(StoreError::conflict(
            "the send budget is contended; the pause stays local",
        ))
    }
}

impl Aws {
    /// The budget item's `tat`, read strongly consistent (None: never claimed).
    async fn budget_tat(&self, item_key: &Item) -> Result<Option<i64>, StoreError> {
        let found = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(item_key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(found.item.as_ref().map(|item| get_n(item, "tat")))
    }

    /// Write `tat` on condition that the item still holds `old`: false when another
    /// claim came first.
    async fn put_budget(
        &self,
        item_key: &Item,
        old: Option<i64>,
        tat: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(&self.settings.requests_table)
            .set_item(Some(item_key.clone()))
            .item("tat", n(tat))
            .item("expires_at", n(now / 1_000_000 + KEEP_SECS));
        put = match old {
            Some(old) => put
                .condition_expression("tat = :old")
                .expression_attribute_values(":old", n(old)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(e)),
        }
    }
}
