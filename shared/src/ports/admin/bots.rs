//! Registering bots and changing their connections.

use crate::admin::Removal;
use crate::channels::{BotChanges, BotRecord, Connections};
use crate::error::StoreError;
use crate::ids::BotId;
use async_trait::async_trait;

/// Bots as operators manage them. A store keeps a bot's connections as one opaque map: it
/// knows no channel by name (the registry, [`crate::channels`], does).
#[async_trait]
pub trait BotAdmin: Send + Sync {
    /// Register a bot with these connections; false when it exists already.
    async fn create_bot(
        &self,
        bot_id: &BotId,
        connections: &Connections,
    ) -> Result<bool, StoreError>;
    /// Apply changes to a bot's connections in one step ([`Connections::apply`]); false
    /// when there is no such bot.
    async fn update_bot(&self, bot_id: &BotId, changes: &BotChanges) -> Result<bool, StoreError>;
    async fn bots(&self) -> Result<Vec<BotRecord>, StoreError>;
    async fn bot_record(&self, bot_id: &BotId) -> Result<Option<BotRecord>, StoreError>;
    /// Delete a bot that no event uses (its users stay: they belong to the bot engine).
    async fn delete_bot(&self, bot_id: &BotId) -> Result<Removal, StoreError>;
}
