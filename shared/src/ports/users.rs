//! Bot users' state: resolved, paged for `everyone`, and given their `last_request`.
//!
//! Herald reads users and writes only its own attributes; the bot engine owns the rest.

use crate::domain::{LastRequestWrite, Object, PlatformFilter, UserRef, UserState, WriteResult};
use crate::error::StoreError;
use crate::ids::{BotId, EventId, RequestId};
use async_trait::async_trait;
use std::time::Duration;

/// Which request a `last_request` write comes from; newer means a greater `request_id`.
#[derive(Debug, Clone)]
pub struct RequestStamp {
    pub request_id: RequestId,
    pub event_id: EventId,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// One page of a shard of a bot's users.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<UserState>,
    /// Where the next page starts; None when the shard is exhausted.
    pub next: Option<String>,
}

/// Bot users' state. Herald reads users and writes only its `last_request*` attributes.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Look users up in one bot: one answer per reference, in order; None for unknown.
    async fn resolve(
        &self,
        bot_id: &BotId,
        users: &[UserRef],
    ) -> Result<Vec<Option<UserState>>, StoreError>;

    /// Store each write's data (or `data` when it has none) as `last_request` (with
    /// `last_request_at`, `last_request_id`, `last_event_id`) on its user, unless the user
    /// holds a newer request. Never creates users and never touches other attributes.
    /// One result per write, in order.
    async fn write_last_request(
        &self,
        bot_id: &BotId,
        stamp: &RequestStamp,
        data: &Object,
        writes: &[LastRequestWrite],
    ) -> Result<Vec<WriteResult>, StoreError>;

    /// Mark these users as having blocked the bot (a platform answered so).
    async fn mark_blocked(&self, bot_id: &BotId, bm_ids: &[String]) -> Result<(), StoreError>;

    /// Remember where these users' chats moved, as (bm_id, new chat id): a Telegram group
    /// that became a supergroup. Users that no longer exist are left out.
    async fn remember_migrated_chats(
        &self,
        bot_id: &BotId,
        moved: &[(String, String)],
    ) -> Result<(), StoreError>;

    /// How many users `everyone` means right now.
    async fn count(&self, bot_id: &BotId, platform: &PlatformFilter) -> Result<u64, StoreError>;

    /// Number of shards a bot's users are spread over (one `expand` job each).
    fn shards(&self) -> u32;

    /// Up to `limit` users of one shard after `cursor`.
    async fn page(
        &self,
        bot_id: &BotId,
        platform: &PlatformFilter,
        shard: u32,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<UserPage, StoreError>;
}

/// A user store that keeps when each user's chat was last sent to, on the user itself, in
/// the update that writes their `last_request`: no write of its own. Where several
/// processes message one bot's users (AWS), this is what spaces two messages to one chat
/// sent by two of them; one process (the embedded runtime) spaces its chats in its pacer
/// and needs none.
#[async_trait]
pub trait ChatClaims: Send + Sync {
    /// Store `write` (or `data` when it has none) as the user's `last_request`, as
    /// [`UserStore::write_last_request`] does, right before a message is sent to them, and
    /// claim their chat: refused while another send to it began less than `gap` ago. A user
    /// who holds a newer request keeps it, and their chat is claimed all the same.
    async fn write_claiming_chat(
        &self,
        bot_id: &BotId,
        stamp: &RequestStamp,
        data: &Object,
        write: &LastRequestWrite,
        gap: Duration,
    ) -> Result<ChatClaim, StoreError>;
}

/// What a [`ChatClaims::write_claiming_chat`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatClaim {
    /// Written (or left to a newer request) and the chat is this send's.
    Claimed,
    /// The chat had a send less than the gap ago: nothing was written; free after this.
    Busy(Duration),
    /// The user no longer exists.
    NotFound,
}
