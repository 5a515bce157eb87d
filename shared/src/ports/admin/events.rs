//! Creating, changing, rotating and deleting events.

use crate::admin::EventChanges;
use crate::domain::Event;
use crate::error::StoreError;
use crate::ids::{BotId, EventId};
use async_trait::async_trait;

/// Events as operators manage them.
#[async_trait]
pub trait EventAdmin: Send + Sync {
    /// Store a new event, registering its bot (with no connections) if new.
    async fn create_event(&self, event: &Event) -> Result<(), StoreError>;
    /// Events, of one bot or all, oldest first.
    async fn events(&self, bot_id: Option<&BotId>) -> Result<Vec<Event>, StoreError>;
    /// Change an event; false when there is no such event.
    async fn update_event(
        &self,
        event_id: &EventId,
        changes: &EventChanges,
    ) -> Result<bool, StoreError>;
    /// Replace an event's secret; the old one keeps working until `previous_valid_until`
    /// (ms since the epoch; in the past: at once). False when there is no such event.
    async fn rotate_secret(
        &self,
        event_id: &EventId,
        new_hash: [u8; 32],
        previous_valid_until: i64,
    ) -> Result<bool, StoreError>;
    async fn delete_event(&self, event_id: &EventId) -> Result<bool, StoreError>;
}
