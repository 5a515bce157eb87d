//! Importing, reading and deleting bot users.

use crate::admin::{ImportReport, NewUser};
use crate::domain::{Object, UserRef};
use crate::error::StoreError;
use crate::ids::BotId;
use async_trait::async_trait;

/// Users as operators manage them.
#[async_trait]
pub trait UserAdmin: Send + Sync {
    /// Add the users that are new (by platform id or state id); leave the others alone.
    async fn import_users(
        &self,
        bot_id: &BotId,
        users: &[NewUser],
    ) -> Result<ImportReport, StoreError>;
    /// One user's whole state as stored (with `last_request`), or None.
    async fn user_document(
        &self,
        bot_id: &BotId,
        user: &UserRef,
    ) -> Result<Option<Object>, StoreError>;
    async fn delete_user(&self, bot_id: &BotId, user: &UserRef) -> Result<bool, StoreError>;
}
