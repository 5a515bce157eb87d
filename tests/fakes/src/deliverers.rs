//! Deliverers for tests that both runtimes run alike.

use async_trait::async_trait;
use herald_core::domain::DeliveryResult;
use herald_core::ports::{Deliverer, Delivery};

/// Fails every user for good, with reason `r{platform id mod reasons}`.
pub struct FailingByReason {
    pub reasons: u64,
}

#[async_trait]
impl Deliverer for FailingByReason {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult {
        let n: u64 = delivery.user.platform_id.parse().unwrap_or(0);
        DeliveryResult::Permanent {
            reason: format!("r{}", n % self.reasons.max(1)),
            message: "refused".into(),
        }
    }
}
