//! A bot's send budget shared by every process that sends for it (the AWS worker's
//! instances), so that together they keep the bot's rate and one alone may use all of it.

use crate::error::StoreError;
use crate::lane::Lane;
use async_trait::async_trait;
use std::time::Duration;

/// Where a shared send budget lives ([`crate::budget`] holds the rule and an in-process
/// implementation).
#[async_trait]
pub trait SendBudget: Send + Sync {
    /// Claim `want` sends on `key` (a bot on one channel) at `per_second`, for a send of
    /// `lane`: Ok(Ok(slots)), how long from now each claimed send may go, in order; or
    /// Ok(Err(wait)) when the budget is taken that far ahead for this lane.
    async fn claim(
        &self,
        key: &str,
        per_second: u32,
        lane: Lane,
        want: u32,
    ) -> Result<Result<Vec<Duration>, Duration>, StoreError>;

    /// The platform said to wait `wait` on `key` (a 429's `retry_after`): no slot is
    /// granted to anyone before then.
    async fn pause(&self, key: &str, wait: Duration) -> Result<(), StoreError>;
}
