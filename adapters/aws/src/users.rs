//! Bot users in DynamoDB: the [`UserStore`] port.
//!
//! One item per user, `pk` = `{bot_id}#{bm_id}`, owned by the bot engine. Herald needs the
//! key attributes below on it and writes only `last_request`, `last_request_at`,
//! `last_request_id` and `last_event_id`, with one conditional `UpdateItem` per user that
//! refuses to create a user or to replace a newer request. A message's user on a paced
//! channel is written by that update at the send's turn, which also sets Herald's
//! `herald_chat_at` unless another instance sent to the chat less than the chat gap ago
//! ([`ChatClaims`]):
//!
//! | attribute | value | index |
//! |---|---|---|
//! | `platform_key` | `{bot_id}#{platform}#{platform_id}` | `by_platform_id`: O(1) lookup by platform id |
//! | `blocked_at` | set when a platform said the user blocked the bot | (projected into `by_platform_id`) |
//! | `shard_key` | `{bot_id}#{shard}` | `by_shard` (range `bm_id`): `everyone` on any platform |
//! | `platform_shard_key` | `{bot_id}#{platform}#{shard}` | `by_platform_shard` (range `bm_id`): `everyone` on one platform |
//!
//! `shard` = [`shard_of`]`(bm_id, user_shards)`: one bot's users spread over many
//! partitions, and each `expand` job pages one of them.

use crate::{get_n, get_s, n, s, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure, Select};
use futures::stream::{self, StreamExt, TryStreamExt};
use herald_core::domain::{
    shard_of, LastRequestWrite, Object, PlatformFilter, UserRef, UserState, WriteResult,
};
use herald_core::ids::BotId;
use herald_core::ports::{ChatClaim, ChatClaims, RequestStamp, UserPage, UserStore};
use herald_core::StoreError;
use std::collections::HashMap;
use std::time::Duration;

/// Herald's own attribute on a user item: when a message to the user's chat last began
/// (Unix milliseconds), claimed by the update that writes their `last_request` at the
/// send's turn ([`ChatClaims`]).
pub const CHAT_AT: &str = "herald_chat_at";

/// Requests in flight at once for per-user calls.
const CONCURRENCY: usize = 32;

impl Aws {
    fn user_pk(bot_id: &str, bm_id: &str) -> String {
        format!("{bot_id}#{bm_id}")
    }

    /// The item of a new user with every key attribute Herald needs.
    pub fn user_item(&self, bot_id: &str, platform: &str, platform_id: &str, bm_id: &str) -> Item {
        let shard = shard_of(bm_id, self.settings.user_shards);
        HashMap::from([
            ("pk".to_string(), s(Self::user_pk(bot_id, bm_id))),
            ("bot_id".to_string(), s(bot_id)),
            ("bm_id".to_string(), s(bm_id)),
            ("platform".to_string(), s(platform)),
            ("platform_id".to_string(), s(platform_id)),
            (
                "platform_key".to_string(),
                s(format!("{bot_id}#{platform}#{platform_id}")),
            ),
            ("shard_key".to_string(), s(format!("{bot_id}#{shard}"))),
            (
                "platform_shard_key".to_string(),
                s(format!("{bot_id}#{platform}#{shard}")),
            ),
        ])
    }

    /// A user's whole item, by bm_id (strongly consistent).
    pub async fn user(&self, bot_id: &str, bm_id: &str) -> Result<Option<Item>, StoreError> {
        self.dynamodb
            .get_item()
            .table_name(&self.settings.users_table)
            .key("pk", s(Self::user_pk(bot_id, bm_id)))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(store_error)
    }

    async fn by_platform_id(
        &self,
        bot_id: &str,
        platform: &str,
        id: &str,
    ) -> Result<Option<UserState>, StoreError> {
        let out = self
            .dynamodb
            .query()
            .table_name(&self.settings.users_table)
            .index_name("by_platform_id")
            .key_condition_expression("platform_key = :k")
            .expression_attribute_values(":k", s(format!("{bot_id}#{platform}#{id}")))
            .limit(1)
            .send()
            .await
            .map_err(store_error)?;
        Ok(out.items().first().map(state_of))
    }

    async fn by_bm_ids(
        &self,
        bot_id: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, UserState>, StoreError> {
        let keys = ids
            .iter()
            .map(|id| HashMap::from([("pk".to_string(), s(Self::user_pk(bot_id, id)))]))
            .collect();
        let items = self
            .batch_get(
                &self.settings.users_table,
                keys,
                "bm_id, platform, platform_id, blocked_at, migrated_chat_id",
            )
            .await?;
        Ok(items
            .iter()
            .map(state_of)
            .map(|u| (u.bm_id.clone(), u))
            .collect())
    }

    async fn write_one(
        &self,
        bot_id: &str,
        stamp: &RequestStamp,
        bm_id: &str,
        data: AttributeValue,
    ) -> Result<WriteResult, StoreError> {
        match self
            .update_user(bot_id, bm_id, Some((stamp, data)), None)
            .await?
        {
            Ok(()) => Ok(WriteResult::Applied),
            // Either no such user or a newer request.
            Err(old) => match self.refused_item(bot_id, bm_id, old).await? {
                Some(_) => Ok(WriteResult::Stale),
                None => Ok(WriteResult::NotFound),
            },
        }
    }

    /// One conditional update of a user that exists: its `last_request` from `request`
    /// unless it holds a newer one, and its chat claimed at `claim` = (now, the latest
    /// earlier send that leaves the chat free) unless one came after. Refused: the item
    /// as it was, when DynamoDB answers it.
    async fn update_user(
        &self,
        bot_id: &str,
        bm_id: &str,
        request: Option<(&RequestStamp, AttributeValue)>,
        claim: Option<(i64, i64)>,
    ) -> Result<Result<(), Option<Item>>, StoreError> {
        let mut update = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.users_table)
            .key("pk", s(Self::user_pk(bot_id, bm_id)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let (mut sets, mut conditions) = (Vec::new(), vec!["attribute_exists(pk)"]);
        if let Some((stamp, data)) = request {
            sets.push("last_request = :data, last_request_at = :at, last_request_id = :rid, last_event_id = :eid");
            conditions.push("(attribute_not_exists(last_request_id) OR last_request_id <= :rid)");
            update = update
                .expression_attribute_values(":data", data)
                .expression_attribute_values(":at", n(stamp.at))
                .expression_attribute_values(":rid", s(&stamp.request_id))
                .expression_attribute_values(":eid", s(&stamp.event_id));
        }
        if let Some((now, free)) = claim {
            sets.push("#chat_at = :chat_at");
            conditions.push("(attribute_not_exists(#chat_at) OR #chat_at <= :chat_free)");
            update = update
                .expression_attribute_names("#chat_at", CHAT_AT)
                .expression_attribute_values(":chat_at", n(now))
                .expression_attribute_values(":chat_free", n(free));
        }
        let result = update
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(conditions.join(" AND "))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.into_service_error() {
                UpdateItemError::ConditionalCheckFailedException(refused) => Ok(Err(refused.item)),
                other => Err(store_error(other)),
            },
        }
    }

    /// Set `attribute` on each existing user of `bot_id` given as (bm_id, value); users
    /// that no longer exist are left out (never created).
    async fn set_on_existing(
        &self,
        bot_id: &BotId,
        attribute: &str,
        sets: Vec<(String, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let bot_id = bot_id.as_str();
        stream::iter(sets)
            .map(|(bm_id, value)| async move {
                let result = self
                    .dynamodb
                    .update_item()
                    .table_name(&self.settings.users_table)
                    .key("pk", s(Self::user_pk(bot_id, &bm_id)))
                    .update_expression("SET #attribute = :value")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_names("#attribute", attribute)
                    .expression_attribute_values(":value", value)
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e)
                        if matches!(
                            e.as_service_error(),
                            Some(UpdateItemError::ConditionalCheckFailedException(_))
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(store_error(e)),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// The item of a user whose update was refused: as DynamoDB answered it, else read.
    async fn refused_item(
        &self,
        bot_id: &str,
        bm_id: &str,
        answered: Option<Item>,
    ) -> Result<Option<Item>, StoreError> {
        match answered {
            Some(item) => Ok(Some(item)),
            None => self.user(bot_id, bm_id).await,
        }
    }

    fn index_for(
        &self,
        bot_id: &str,
        platform: &PlatformFilter,
        shard: u32,
    ) -> (&'static str, &'static str, String) {
        match platform {
            PlatformFilter::Any => ("by_shard", "shard_key", format!("{bot_id}#{shard}")),
            PlatformFilter::Only(p) => (
                "by_platform_shard",
                "platform_shard_key",
                format!("{bot_id}#{p}#{shard}"),
            ),
        }
    }
}

fn state_of(item: &Item) -> UserState {
    UserState {
        platform: get_s(item, "platform").to_string(),
        platform_id: get_s(item, "platform_id").to_string(),
        bm_id: get_s(item, "bm_id").to_string(),
        blocked: item.contains_key("blocked_at"),
        // Read with users named by state id; the platform-id and everyone indexes do not
        // project it, so there a message to a moved group is re-addressed by Telegram's
        // answer again (one more call).
        migrated_chat_id: item
            .get(herald_core::domain::MIGRATED_CHAT_ID)
            .and_then(|v| v.as_s().ok())
            .cloned(),
    }
}

#[async_trait]
impl UserStore for Aws {
    async fn resolve(
        &self,
        bot_id: &BotId,
        users: &[UserRef],
    ) -> Result<Vec<Option<UserState>>, StoreError> {
        let bot_id = bot_id.as_str();
        let bm_ids: Vec<&str> = users
            .iter()
            .filter_map(|u| match u {
                UserRef::Bm { id } => Some(id.as_str()),
                UserRef::Platform { .. } => None,
            })
            .collect();
        let mut by_bm = if bm_ids.is_empty() {
            HashMap::new()
        } else {
            self.by_bm_ids(bot_id, &bm_ids).await?
        };
        stream::iter(users.iter().cloned())
            .map(|user: UserRef| {
                let known = match &user {
                    UserRef::Bm { id } => Some(by_bm.remove(id)),
                    UserRef::Platform { .. } => None,
                };
                async move {
                    match (user, known) {
                        (_, Some(known)) => Ok(known),
                        (UserRef::Platform { platform, id }, None) => {
                            self.by_platform_id(bot_id, &platform, &id).await
                        }
                        (UserRef::Bm { .. }, None) => Ok(None),
                    }
                }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    async fn write_last_request(
        &self,
        bot_id: &BotId,
        stamp: &RequestStamp,
        data: &Object,
        writes: &[LastRequestWrite],
    ) -> Result<Vec<WriteResult>, StoreError> {
        let bot_id = bot_id.as_str();
        let base: AttributeValue =
            serde_dynamo::to_attribute_value(data).map_err(StoreError::new)?;
        stream::iter(writes.iter().cloned())
            .map(|write: LastRequestWrite| {
                let data = match &write.data {
                    Some(own) => serde_dynamo::to_attribute_value(own).map_err(StoreError::new),
                    None => Ok(base.clone()),
                };
                async move { self.write_one(bot_id, stamp, &write.bm_id, data?).await }
            })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }

    async fn mark_blocked(&self, bot_id: &BotId, bm_ids: &[String]) -> Result<(), StoreError> {
        let now = AttributeValue::N(herald_core::domain::now_ms().to_string());
        let sets = bm_ids
            .iter()
            .map(|bm_id| (bm_id.clone(), now.clone()))
            .collect();
        self.set_on_existing(bot_id, "blocked_at", sets).await
    }

    async fn remember_migrated_chats(
        &self,
        bot_id: &BotId,
        moved: &[(String, String)],
    ) -> Result<(), StoreError> {
        let sets = moved
            .iter()
            .map(|(bm_id, chat)| (bm_id.clone(), s(chat)))
            .collect();
        self.set_on_existing(bot_id, herald_core::domain::MIGRATED_CHAT_ID, sets)
            .await
    }

    async fn count(&self, bot_id: &BotId, platform: &PlatformFilter) -> Result<u64, StoreError> {
        let bot_id = bot_id.as_str();
        let shards: Vec<u32> = (0..self.settings.user_shards).collect();
        let counts: Vec<u64> = stream::iter(shards)
            .map(|shard| async move {
                let (index, key, value) = self.index_for(bot_id, platform, shard);
                let mut total = 0u64;
                let mut start: Option<Item> = None;
                loop {
                    let out = self
                        .dynamodb
                        .query()
                        .table_name(&self.settings.users_table)
                        .index_name(index)
                        .key_condition_expression(format!("{key} = :k"))
                        .expression_attribute_values(":k", s(&value))
                        .select(Select::Count)
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .map_err(store_error)?;
                    total += out.count() as u64;
                    match out.last_evaluated_key {
                        Some(next) => start = Some(next),
                        None => return Ok::<u64, StoreError>(total),
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(counts.iter().sum())
    }

    fn shards(&self) -> u32 {
        self.settings.user_shards
    }

    async fn page(
        &self,
        bot_id: &BotId,
        platform: &PlatformFilter,
        shard: u32,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<UserPage, StoreError> {
        let bot_id = bot_id.as_str();
        let (index, key, value) = self.index_for(bot_id, platform, shard);
        // The cursor is the last bm_id of the previous page; the start key of a GSI query
        // is the index key plus the table key of that item.
        let start = cursor.map(|bm_id| {
            HashMap::from([
                (key.to_string(), s(&value)),
                ("bm_id".to_string(), s(bm_id)),
                ("pk".to_string(), s(Self::user_pk(bot_id, bm_id))),
            ])
        });
        let out = self
            .dynamodb
            .query()
            .table_name(&self.settings.users_table)
            .index_name(index)
            .key_condition_expression(format!("{key} = :k"))
            .expression_attribute_values(":k", s(&value))
            .set_exclusive_start_key(start)
            .limit(limit.min(i32::MAX as usize) as i32)
            .send()
            .await
            .map_err(store_error)?;
        let users: Vec<UserState> = out.items().iter().map(state_of).collect();
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get("bm_id"))
            .and_then(|v| v.as_s().ok())
            .cloned();
        Ok(UserPage { users, next })
    }
}

#[async_trait]
impl ChatClaims for Aws {
    /// The `last_request` write of [`UserStore::write_last_request`] with `herald_chat_at`
    /// set in the same update, on condition that it is at least `gap` old: one write per
    /// user. Only a user who holds a newer request costs a second one (their chat alone).
    async fn write_claiming_chat(
        &self,
        bot_id: &BotId,
        stamp: &RequestStamp,
        data: &Object,
        write: &LastRequestWrite,
        gap: Duration,
    ) -> Result<ChatClaim, StoreError> {
        let bot_id = bot_id.as_str();
        let data = serde_dynamo::to_attribute_value(write.data.as_ref().unwrap_or(data))
            .map_err(StoreError::new)?;
        let gap_ms = i64::try_from(gap.as_millis()).unwrap_or(i64::MAX);
        let claim = (stamp.at, stamp.at.saturating_sub(gap_ms));
        let mut request = Some((stamp, data));
        // At most: with the request, the chat alone, once more if the item changed between.
        for _ in 0..3 {
            let with_request = request.is_some();
            let refused = match self
                .update_user(bot_id, &write.bm_id, request.take(), Some(claim))
                .await?
            {
                Ok(()) => return Ok(ChatClaim::Claimed),
                Err(old) => self.refused_item(bot_id, &write.bm_id, old).await?,
            };
            let Some(old) = refused else {
                return Ok(ChatClaim::NotFound);
            };
            let chat_at = get_n(&old, CHAT_AT);
            if chat_at > claim.1 {
                let wait = chat_at.saturating_add(gap_ms).saturating_sub(stamp.at);
                return Ok(ChatClaim::Busy(Duration::from_millis(
                    u64::try_from(wait).unwrap_or(0).max(1),
                )));
            }
            if !with_request {
                // The chat was free and the user there, yet refused: it changed between
                // the update and the read; go round once more for the chat alone.
                continue;
            }
            // A newer request holds the user: theirs stays, the chat is still claimed.
        }
        // An item changing under every try: no send now, a new turn later.
        Ok(ChatClaim::Busy(gap))
    }
}
