//! Events in DynamoDB: one item per event, `pk` = event id, with `bot_id`, `name`,
//! `secret_hash` (binary SHA-256), `action` (map) and `enabled`; and one item per
//! configured bot, `pk` = `bot#{bot_id}`, with its connections.

use crate::{get_s, s, store_error, Aws};
use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use herald_core::domain::{Action, Bot, Event};
use herald_core::ports::EventDirectory;
use herald_core::{secret, StoreError};

impl Aws {
    /// Store an event whose secret is `secret` (only its hash is kept).
    pub async fn put_event(
        &self,
        event_id: &str,
        bot_id: &str,
        name: &str,
        secret: &str,
        action: &Action,
    ) -> Result<(), StoreError> {
        let action = serde_dynamo::to_attribute_value(action).map_err(StoreError::new)?;
        self.dynamodb
            .put_item()
            .table_name(&self.settings.events_table)
            .item("pk", s(event_id))
            .item("bot_id", s(bot_id))
            .item("name", s(name))
            .item(
                "secret_hash",
                AttributeValue::B(Blob::new(secret::hash(secret).to_vec())),
            )
            .item("action", action)
            .item("enabled", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

impl Aws {
    /// Store a bot's connections (item `bot#{id}` of the events table).
    pub async fn put_bot(&self, bot: &Bot) -> Result<(), StoreError> {
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(&self.settings.events_table)
            .item("pk", s(format!("bot#{}", bot.id)));
        for (name, value) in [
            ("telegram_token", &bot.telegram_token),
            ("screen_url", &bot.screen_url),
            ("signing_secret", &bot.signing_secret),
        ] {
            if let Some(value) = value {
                put = put.item(name, s(value));
            }
        }
        put.send().await.map_err(store_error)?;
        Ok(())
    }
}

#[async_trait]
impl EventDirectory for Aws {
    async fn bot(&self, bot_id: &str) -> Result<Bot, StoreError> {
        let found = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(format!("bot#{bot_id}")))
            .send()
            .await
            .map_err(store_error)?;
        let item = found.item.unwrap_or_default();
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(Bot {
            id: bot_id.to_string(),
            telegram_token: text("telegram_token"),
            screen_url: text("screen_url"),
            signing_secret: text("signing_secret"),
        })
    }

    async fn event(&self, event_id: &str) -> Result<Option<Event>, StoreError> {
        let found = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(event_id))
            .send()
            .await
            .map_err(store_error)?;
        let Some(item) = found.item else {
            return Ok(None);
        };
        let secret_hash = item
            .get("secret_hash")
            .and_then(|v| v.as_b().ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_ref()).ok())
            .unwrap_or([0u8; 32]);
        let action = item
            .get("action")
            .cloned()
            .ok_or_else(|| StoreError::new(format!("event {event_id} has no action")))?;
        Ok(Some(Event {
            id: event_id.to_string(),
            bot_id: get_s(&item, "bot_id").to_string(),
            name: get_s(&item, "name").to_string(),
            secret_hash,
            action: serde_dynamo::from_attribute_value(action).map_err(StoreError::new)?,
            enabled: item
                .get("enabled")
                .and_then(|v| v.as_bool().ok())
                .copied()
                .unwrap_or(false),
        }))
    }
}
