//! Looking events and bots up: what the accept path and the processor read first.

use crate::domain::{Bot, Event};
use crate::error::StoreError;
use crate::ids::{BotId, EventId};
use async_trait::async_trait;

/// Looks events and bots up by id.
#[async_trait]
pub trait EventDirectory: Send + Sync {
    async fn event(&self, event_id: &EventId) -> Result<Option<Event>, StoreError>;

    /// A bot's connections; a bot never configured has none (`Bot::default` with its id).
    async fn bot(&self, bot_id: &BotId) -> Result<Bot, StoreError>;
}
