//! Deliverers for tests that both runtimes run alike.

use async_trait::async_trait;
use herald_core::domain::DeliveryResult;
use herald_core::ports::{Deliverer, Delivery};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

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

/// A deliverer that answers from a script per platform id and counts calls.
#[derive(Default)]
pub struct ScriptedDeliverer {
    /// platform_id -> results to give, first first; when exhausted: delivered.
    pub script: Mutex<HashMap<String, Vec<DeliveryResult>>>,
    pub calls: Mutex<HashMap<String, u32>>,
    /// How long each delivery takes (none by default).
    pub each: Duration,
}

impl ScriptedDeliverer {
    pub fn fail(&self, platform_id: &str, results: Vec<DeliveryResult>) {
        self.script
            .lock()
            .unwrap()
            .insert(platform_id.into(), results);
    }

    pub fn calls(&self, platform_id: &str) -> u32 {
        self.calls
            .lock()
            .unwrap()
            .get(platform_id)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_calls(&self) -> u32 {
        self.calls.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl Deliverer for ScriptedDeliverer {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult {
        let id = delivery.user.platform_id.clone();
        *self.calls.lock().unwrap().entry(id.clone()).or_default() += 1;
        if !self.each.is_zero() {
            tokio::time::sleep(self.each).await;
        }
        let mut script = self.script.lock().unwrap();
        match script.get_mut(&id) {
            Some(results) if !results.is_empty() => results.remove(0),
            _ => DeliveryResult::Delivered { detail: None },
        }
    }
}

pub fn transient() -> DeliveryResult {
    DeliveryResult::Retry {
        reason: "unavailable".into(),
        message: "503 from the platform".into(),
        after: None,
    }
}

pub fn blocked() -> DeliveryResult {
    DeliveryResult::Permanent {
        reason: "blocked".into(),
        message: "bot was blocked by the user".into(),
    }
}
