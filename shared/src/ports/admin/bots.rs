//! Registering bots and changing their connections.

use crate::admin::{BotChanges, BotSummary, Removal};
use crate::error::StoreError;
use async_trait::async_trait;

/// Bots as operators manage them.
#[async_trait]
pub trait BotAdmin: Send + Sync {
    /// Register a bot with these connections; false when it exists already.
    async fn create_bot(&self, bot_id: &str, changes: &BotChanges) -> Result<bool, StoreError>;
    /// Change a bot's connections; false when there is no such bot.
    async fn update_bot(&self, bot_id: &str, changes: &BotChanges) -> Result<bool, StoreError>;
    async fn bots(&self) -> Result<Vec<BotSummary>, StoreError>;
    async fn bot_summary(&self, bot_id: &str) -> Result<Option<BotSummary>, StoreError>;
    /// Delete a bot that no event uses (its users stay: they belong to the bot engine).
    async fn delete_bot(&self, bot_id: &str) -> Result<Removal, StoreError>;
}
