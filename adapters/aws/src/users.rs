//! Bot users in DynamoDB: the [`UserStore`] port.
//!
//! One item per user, `pk` = `{bot_id}#{bm_id}`, owned by the bot engine. Herald needs the
//! key attributes below on it and writes only `last_request`, `last_request_at`,
//! `last_request_id` and `last_event_id`, with one conditional `UpdateItem` per user that
//! refuses to create a user or to replace a newer request:
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

use crate::{get_s, s, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use futures::stream::{self, StreamExt, TryStreamExt};
use herald_core::domain::{
    shard_of, LastRequestWrite, Object, PlatformFilter, UserRef, UserState, WriteResult,
};
use herald_core::ids::BotId;
use herald_core::ports::{RequestStamp, UserPage, UserStore};
use herald_core::StoreError;
use std::collections::HashMap;

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
                "bm_id, platform, platform_id, blocked_at",
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
        let pk = Self::user_pk(bot_id, bm_id);
        let result = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.users_table)
            .key("pk", s(&pk))
            .update_expression(
                "SET last_request = :data, last_request_at = :at, last_request_id = :rid, last_event_id = :eid",
            )
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(last_request_id) OR last_request_id <= :rid)",
            )
            .expression_attribute_values(":data", data)
            .expression_attribute_values(":at", AttributeValue::N(stamp.at.to_string()))
            .expression_attribute_values(":rid", s(&stamp.request_id))
            .expression_attribute_values(":eid", s(&stamp.event_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(WriteResult::Applied),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                // Either no such user or a newer request: tell them apart.
                match self.user(bot_id, bm_id).await? {
                    Some(_) => Ok(WriteResult::Stale),
                    None => Ok(WriteResult::NotFound),
                }
            }
            Err(e) => Err(store_error(e)),
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
        let bot_id = bot_id.as_str();
        let now = AttributeValue::N(herald_core::domain::now_ms().to_string());
        stream::iter(bm_ids.iter().cloned())
            .map(|bm_id: String| {
                let now = now.clone();
                async move {
                    let result = self
                        .dynamodb
                        .update_item()
                        .table_name(&self.settings.users_table)
                        .key("pk", s(Self::user_pk(bot_id, &bm_id)))
                        .update_expression("SET blocked_at = :now")
                        .condition_expression("attribute_exists(pk)")
                        .expression_attribute_values(":now", now)
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
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
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
