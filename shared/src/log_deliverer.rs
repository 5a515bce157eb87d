//! The `log` deliverer: records what would be sent instead of sending it.
//!
//! The default when a bot has no platform connection, so that a newcomer sees the whole
//! flow with no accounts: every user's outcome is `delivered` (a message whose template
//! fails for the user is failed, as it would be for real), and the record of what would
//! have been sent appears in the request's status (`deliveries`) and in the logs (without
//! the user's data).

use crate::domain::{Action, DeliveryResult};
use crate::ports::{Deliverer, Delivery};
use async_trait::async_trait;
use serde_json::json;

#[derive(Debug, Default, Clone, Copy)]
pub struct LogDeliverer {
    /// Simulated time per delivery (zero by default), to watch a fan-out progress.
    delay: std::time::Duration,
}

impl LogDeliverer {
    pub fn with_delay(delay: std::time::Duration) -> Self {
        LogDeliverer { delay }
    }
}

#[async_trait]
impl Deliverer for LogDeliverer {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let user = json!({
            "platform": delivery.user.platform,
            "platform_id": delivery.user.platform_id,
            "bm_id": delivery.user.bm_id,
        });
        let detail = match &delivery.request.action {
            Action::Screen { screen_id } => json!({
                "deliverer": "log",
                "action": "screen",
                "screen_id": screen_id,
                "user": user,
            }),
            Action::Message(message) => {
                match crate::template::for_user(
                    message,
                    &delivery.request.event_name,
                    delivery.user,
                    delivery.data,
                )
                .await
                {
                    Ok(rendered) => json!({
                        "deliverer": "log",
                        "action": "message",
                        "text": rendered.text,
                        "user": user,
                    }),
                    Err(failure) => return failure,
                }
            }
        };
        tracing::debug!(
            request_id = %delivery.request.id,
            bm_id = %delivery.user.bm_id,
            "log deliverer: would run the event's action"
        );
        DeliveryResult::Delivered {
            detail: Some(detail),
        }
    }
}
