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

use crate::tat::ATTEMPTS;
use crate::Aws;
use async_trait::async_trait;
use herald_core::budget::{claim, interval_us, paused, slots_from};
use herald_core::lane::Lane;
use herald_core::ports::SendBudget;
use herald_core::throttle::now_us;
use herald_core::StoreError;
use std::time::Duration;

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
        let table = &self.settings.requests_table;
        for _ in 0..ATTEMPTS {
            let old = self.read_tat(table, &item_key).await?;
            let now = now_us();
            let (tat, slots) = match claim(old, now, per_second, lane, want) {
                Ok(claimed) => claimed,
                Err(wait) => return Ok(Err(wait)),
            };
            if self
                .write_tat(table, &item_key, (old, tat), Some(kept_until(now)))
                .await?
            {
                return Ok(Ok(slots_from(now, &slots)));
            }
        }
        // Contended this hard, the budget is surely taken: look again in a slot's time.
        Ok(Err(Duration::from_micros(interval_us(per_second) as u64)))
    }

    async fn pause(&self, key: &str, wait: Duration) -> Result<(), StoreError> {
        let item_key = self.request_key(&format!("pace#{key}"), BUDGET_SK);
        let table = &self.settings.requests_table;
        for _ in 0..ATTEMPTS {
            let old = self.read_tat(table, &item_key).await?;
            let now = now_us();
            let Some(until) = paused(old, now, wait) else {
                return Ok(());
            };
            if self
                .write_tat(table, &item_key, (old, until), Some(kept_until(now)))
                .await?
            {
                return Ok(());
            }
        }
        Err(StoreError::conflict(
            "the send budget is contended; the pause stays local",
        ))
    }
}

/// The TTL of a budget item written at `now` (microseconds): a day on, in seconds.
fn kept_until(now: i64) -> i64 {
    now / 1_000_000 + KEEP_SECS
}
