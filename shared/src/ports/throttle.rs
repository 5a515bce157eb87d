//! Where rate-limit state lives: in the process, or shared by every instance.

use crate::domain::RateLimit;
use crate::error::StoreError;
use async_trait::async_trait;
use std::time::Duration;

/// Where rate-limit state lives ([`crate::throttle`] holds the rule and the in-process
/// implementation).
#[async_trait]
pub trait Throttle: Send + Sync {
    /// Admit one request for `key` under `limit`: Ok(Ok) when admitted, Ok(Err(wait))
    /// when over the limit.
    async fn admit(&self, key: &str, limit: &RateLimit)
        -> Result<Result<(), Duration>, StoreError>;
}
