//! Operators' changes on AWS: the admin ports on DynamoDB and the SQS dead-letter
//! queue.
//!
//! Bots and events live in the events table (see [`crate::events`]); listing them is a
//! `Scan` of that small table. Users are imported with one conditional `PutItem` each
//! (`attribute_not_exists`), after looking their platform ids up, so a re-run adds nothing
//! and never overwrites what the bot engine wrote. Recent requests of an event come from
//! the requests table's sparse `by_event` index. Cancelling is a conditional update of the
//! request's state.
//!
//! Dead letters are the DLQ's messages. Listing receives them with a short visibility
//! timeout and makes them visible again at once; redrive receives, reopens the `failed`
//! outcomes of the job's users (markers deleted and counters moved back in one
//! transaction), sends the job to the main queue with fresh attempts, then deletes the DLQ
//! message — so a crash midway leaves the job in the DLQ, never lost.

use crate::events::{
    connections_of, connections_value, event_item, event_of, BOT_PREFIX, RATE_PREFIX,
};
use crate::requests::{progress_of, Counts, REQUEST_SK};
use crate::{get_s, n, s, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, TransactWriteItem};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use futures::stream::{self, StreamExt, TryStreamExt};
use herald_core::admin::{
    Cancellation, DeadLetter, EventChanges, ImportReport, NewUser, Removal, Selection,
};
use herald_core::channels::{BotChanges, BotRecord, Connections};
use herald_core::domain::{Event, Job, JobKind, Object, RequestState, UserRef};
use herald_core::ids::{BotId, EventId, RequestId};
use herald_core::ports::admin::{BotAdmin, DeadLetterAdmin, EventAdmin, RequestAdmin, UserAdmin};
use herald_core::ports::{JobQueue, RequestProgress, UserStore};
use herald_core::status::rfc3339;
use herald_core::StoreError;
use std::collections::HashMap;
use std::time::Duration;

/// Conditional writes in flight at once during an import.
const IMPORT_CONCURRENCY: usize = 32;
/// Seconds a dead letter stays hidden while a redrive or purge works on it.
const WORK_VISIBILITY: i32 = 60;

/// How long one receive from the dead-letter queue waits for a message (long polling).
const DEAD_LETTER_POLL_SECONDS: i32 = 1;

/// Whether a conditional write was applied: false when its condition failed.
fn applied<T, E>(result: Result<T, SdkError<E>>) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if crate::condition_failed(&e) => Ok(false),
        Err(e) => Err(store_error(e)),
    }
}

/// `SET …`, with ` REMOVE …` when there is something to remove.
fn set_remove(set: &[String], remove: &[&str]) -> String {
    let mut expression = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    expression
}

fn bot_record(item: &Item) -> BotRecord {
    BotRecord {
        id: get_s(item, "pk")
            .strip_prefix(BOT_PREFIX)
            .unwrap_or_default()
            .to_string(),
        connections: connections_of(item),
        created_at: crate::get_n(item, "created_at"),
    }
}

/// How often a change to a bot's connections is tried when other changes keep winning.
const BOT_CHANGE_TRIES: u32 = 8;

impl Aws {
    /// Every item of the events table matching `filter` (a Scan, paginated).
    async fn scan_events(
        &self,
        filter: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(&self.settings.events_table)
                .filter_expression(filter)
                .set_expression_attribute_values((!values.is_empty()).then(|| values.clone()))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .send()
                .await
                .map_err(store_error)?;
            items.extend(out.items().iter().cloned());
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(items),
            }
        }
    }

    /// Register a bot with no connections if it is new.
    async fn register_bot(&self, bot_id: &str) -> Result<(), StoreError> {
        let put = self
            .dynamodb
            .put_item()
            .table_name(&self.settings.events_table)
            .item("pk", s(format!("{BOT_PREFIX}{bot_id}")))
            .item("created_at", n(herald_core::domain::now_ms()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        // Registered already is fine too.
        applied(put).map(|_| ())
    }

    /// Apply connection changes to an existing bot; false when it does not exist. The map
    /// is read, changed and written back on the condition that its version is still the
    /// one read (tried again when another change came between). Writing it removes the
    /// flat attributes an item from before the map may still have.
    async fn change_bot(&self, bot_id: &str, changes: &BotChanges) -> Result<bool, StoreError> {
        for _ in 0..BOT_CHANGE_TRIES {
            let Some(item) = self.bot_item(bot_id).await? else {
                return Ok(false);
            };
            let mut connections = connections_of(&item);
            connections.apply(changes);
            let version = crate::get_n(&item, "connections_version");
            let condition = if item.contains_key("connections_version") {
                "connections_version = :seen"
            } else {
                "attribute_exists(pk) AND attribute_not_exists(connections_version)"
            };
            let mut update = self
                .dynamodb
                .update_item()
                .table_name(&self.settings.events_table)
                .key("pk", s(format!("{BOT_PREFIX}{bot_id}")))
                .update_expression(
                    "SET connections = :c, connections_version = :next, updated_at = :now \
                     REMOVE telegram_token, screen_url, signing_secret",
                )
                .condition_expression(condition)
                .expression_attribute_values(":c", connections_value(&connections))
                .expression_attribute_values(":next", n(version + 1))
                .expression_attribute_values(":now", n(herald_core::domain::now_ms()));
            if item.contains_key("connections_version") {
                update = update.expression_attribute_values(":seen", n(version));
            }
            if applied(update.send().await)? {
                return Ok(true);
            }
        }
        Err(StoreError::conflict(
            "the bot's connections kept changing under this change; try again",
        ))
    }

    async fn bot_item(&self, bot_id: &str) -> Result<Option<Item>, StoreError> {
        let found = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(format!("{BOT_PREFIX}{bot_id}")))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(found.item)
    }

    /// The state id of a user named either way, if the user exists.
    async fn state_id(&self, bot_id: &BotId, user: &UserRef) -> Result<Option<String>, StoreError> {
        Ok(self
            .resolve(bot_id, std::slice::from_ref(user))
            .await?
            .pop()
            .flatten()
            .map(|u| u.bm_id))
    }

    /// Take the `failed` outcomes of these users of a request back: markers deleted and
    /// counters moved down in one transaction per 99 users.
    async fn reopen_failed(&self, request_id: &str, keys: &[String]) -> Result<(), StoreError> {
        let wanted = keys
            .iter()
            .map(|k| self.request_key(request_id, &format!("u#{k}")))
            .collect();
        let markers = self
            .batch_get(&self.settings.requests_table, wanted, "sk, outcome, reason")
            .await?;
        let failed: Vec<&Item> = markers
            .iter()
            .filter(|m| get_s(m, "outcome") == "failed")
            .collect();
        for chunk in failed.chunks(99) {
            let mut counts = Counts::default();
            let mut items = Vec::with_capacity(chunk.len() + 1);
            for marker in chunk {
                counts.failed -= 1;
                *counts
                    .reasons
                    .entry(get_s(marker, "reason").to_string())
                    .or_default() -= 1;
                let delete = Delete::builder()
                    .table_name(&self.settings.requests_table)
                    .set_key(Some(self.request_key(request_id, get_s(marker, "sk"))))
                    .condition_expression("outcome = :failed")
                    .expression_attribute_values(":failed", s("failed"))
                    .build()
                    .map_err(StoreError::new)?;
                items.push(TransactWriteItem::builder().delete(delete).build());
            }
            items.push(
                TransactWriteItem::builder()
                    .update(self.counters_update(request_id, &counts)?)
                    .build(),
            );
            self.dynamodb
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
                .map_err(|e: SdkError<TransactWriteItemsError>| store_error(e))?;
        }
        Ok(())
    }

    /// Receive the DLQ's messages, each hidden for `visibility` seconds, until none is left
    /// or `limit` were seen. Each receive long-polls for up to a second: a short poll asks
    /// only some of SQS's servers and may answer empty while messages wait, which would
    /// leave a dead letter out of a listing, a redrive or a purge.
    async fn receive_dead(
        &self,
        visibility: i32,
        limit: usize,
    ) -> Result<Vec<Message>, StoreError> {
        let mut seen: Vec<Message> = Vec::new();
        while seen.len() < limit {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.settings.dlq_url)
                .max_number_of_messages(10)
                .visibility_timeout(visibility)
                .wait_time_seconds(DEAD_LETTER_POLL_SECONDS)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(store_error)?;
            let before = seen.len();
            for message in out.messages() {
                if !seen.iter().any(|m| m.message_id() == message.message_id()) {
                    seen.push(message.clone());
                }
            }
            // Nothing left, or only messages seen already (their visibility ran out).
            if seen.len() == before {
                break;
            }
        }
        Ok(seen)
    }

    /// Make received messages visible again at once.
    async fn release_dead(&self, messages: &[Message]) {
        for message in messages {
            if let Some(handle) = message.receipt_handle() {
                let _ = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.settings.dlq_url)
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .send()
                    .await;
            }
        }
    }

    async fn delete_dead(&self, message: &Message) -> Result<(), StoreError> {
        if let Some(handle) = message.receipt_handle() {
            self.sqs
                .delete_message()
                .queue_url(&self.settings.dlq_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }

    /// The job a dead message carries; None when it is corrupt (it is still listed and
    /// can be purged, by its message id, but never redriven).
    async fn decode_dead(&self, message: &Message) -> Result<Option<Job>, StoreError> {
        match self.decode(message.body().unwrap_or_default()).await {
            Ok(job) => Ok(Some(job)),
            Err(e) if e.is_corrupt() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn dead_letter(job: Option<&Job>, message: &Message) -> DeadLetter {
        let attribute = |name: MessageSystemAttributeName| {
            message
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<i64>().ok())
        };
        let receives =
            attribute(MessageSystemAttributeName::ApproximateReceiveCount).unwrap_or(0) as u32;
        DeadLetter {
            id: job.map_or_else(
                || message.message_id().unwrap_or_default().to_string(),
                |j| j.id.clone(),
            ),
            request_id: job.map(|j| j.request_id.to_string()).unwrap_or_default(),
            kind: job.map_or("unknown", Job::kind_name),
            users: match job.map(|j| &j.kind) {
                Some(JobKind::Deliver { users }) => users.len(),
                _ => 0,
            },
            attempts: job.map_or(0, |j| j.attempt).max(receives),
            reason: message
                .message_attributes()
                .and_then(|a| a.get("reason"))
                .and_then(|v| v.string_value())
                .unwrap_or("the job failed on every receive (the queue's maxReceiveCount)")
                .to_string(),
            died_at: attribute(MessageSystemAttributeName::SentTimestamp).map(rfc3339),
        }
    }
}

#[async_trait]
impl BotAdmin for Aws {
    async fn create_bot(
        &self,
        bot_id: &BotId,
        connections: &Connections,
    ) -> Result<bool, StoreError> {
        let bot_id = bot_id.as_str();
        let put = self
            .dynamodb
            .put_item()
            .table_name(&self.settings.events_table)
            .item("pk", s(format!("{BOT_PREFIX}{bot_id}")))
            .item("created_at", n(herald_core::domain::now_ms()))
            .item("connections", connections_value(connections))
            .item("connections_version", n(0))
            .condition_expression("attribute_not_exists(pk)");
        applied(put.send().await)
    }

    async fn update_bot(&self, bot_id: &BotId, changes: &BotChanges) -> Result<bool, StoreError> {
        let bot_id = bot_id.as_str();
        self.change_bot(bot_id, changes).await
    }

    async fn bots(&self) -> Result<Vec<BotRecord>, StoreError> {
        let values = HashMap::from([(":p".to_string(), s(BOT_PREFIX))]);
        let mut bots: Vec<BotRecord> = self
            .scan_events("begins_with(pk, :p)", values)
            .await?
            .iter()
            .map(bot_record)
            .collect();
        bots.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(bots)
    }

    async fn bot_record(&self, bot_id: &BotId) -> Result<Option<BotRecord>, StoreError> {
        let bot_id = bot_id.as_str();
        Ok(self.bot_item(bot_id).await?.as_ref().map(bot_record))
    }

    async fn delete_bot(&self, bot_id: &BotId) -> Result<Removal, StoreError> {
        let events = self.events(Some(bot_id)).await?.len();
        if events > 0 {
            return Ok(Removal::InUse(format!(
                "bot {bot_id} has {events} event(s); delete them first"
            )));
        }
        let deleted = self
            .dynamodb
            .delete_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(format!("{BOT_PREFIX}{bot_id}")))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        Ok(if applied(deleted)? {
            Removal::Removed
        } else {
            Removal::NotFound
        })
    }
}

#[async_trait]
impl EventAdmin for Aws {
    async fn create_event(&self, event: &Event) -> Result<(), StoreError> {
        self.register_bot(event.bot_id.as_str()).await?;
        self.dynamodb
            .put_item()
            .table_name(&self.settings.events_table)
            .set_item(Some(event_item(event)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn events(&self, bot_id: Option<&BotId>) -> Result<Vec<Event>, StoreError> {
        let bot_id = bot_id.map(BotId::as_str);
        let (filter, values) = match bot_id {
            Some(bot) => ("bot_id = :b", HashMap::from([(":b".to_string(), s(bot))])),
            None => ("attribute_exists(bot_id)", HashMap::new()),
        };
        let mut events = self
            .scan_events(filter, values)
            .await?
            .iter()
            .map(event_of)
            .collect::<Result<Vec<_>, _>>()?;
        events.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(events)
    }

    async fn update_event(
        &self,
        event_id: &EventId,
        changes: &EventChanges,
    ) -> Result<bool, StoreError> {
        let event_id = event_id.as_str();
        let mut set = vec!["updated_at = :now".to_string()];
        let mut remove = Vec::new();
        let mut update = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(event_id))
            .expression_attribute_values(":now", n(herald_core::domain::now_ms()));
        if let Some(name) = &changes.name {
            set.push("#name = :name".into());
            update = update
                .expression_attribute_names("#name", "name")
                .expression_attribute_values(":name", s(name));
        }
        if let Some(enabled) = changes.enabled {
            set.push("enabled = :enabled".into());
            update = update.expression_attribute_values(":enabled", AttributeValue::Bool(enabled));
        }
        match &changes.rate_limit {
            None => {}
            Some(None) => remove.push("rate_limit"),
            Some(Some(limit)) => {
                set.push("rate_limit = :limit".into());
                update = update.expression_attribute_values(
                    ":limit",
                    serde_dynamo::to_attribute_value(limit).map_err(StoreError::new)?,
                );
            }
        }
        match changes.lane {
            None => {}
            Some(None) => remove.push("lane"),
            Some(Some(lane)) => {
                set.push("lane = :lane".into());
                update = update.expression_attribute_values(":lane", s(lane.as_str()));
            }
        }
        applied(
            update
                .update_expression(set_remove(&set, &remove))
                .condition_expression("attribute_exists(bot_id)")
                .send()
                .await,
        )
    }

    async fn rotate_secret(
        &self,
        event_id: &EventId,
        new_hash: [u8; 32],
        previous_valid_until: i64,
    ) -> Result<bool, StoreError> {
        let event_id = event_id.as_str();
        let rotated = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(event_id))
            .update_expression(
                "SET previous_secret_hash = secret_hash, previous_secret_until = :until, secret_hash = :new",
            )
            .condition_expression("attribute_exists(bot_id)")
            .expression_attribute_values(":until", n(previous_valid_until))
            .expression_attribute_values(":new", AttributeValue::B(Blob::new(new_hash.to_vec())))
            .send()
            .await;
        applied(rotated)
    }

    async fn delete_event(&self, event_id: &EventId) -> Result<bool, StoreError> {
        let event_id = event_id.as_str();
        let deleted = self
            .dynamodb
            .delete_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(event_id))
            .condition_expression("attribute_exists(bot_id)")
            .send()
            .await;
        if !applied(deleted)? {
            return Ok(false);
        }
        let _ = self
            .dynamodb
            .delete_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(format!("{RATE_PREFIX}{event_id}")))
            .send()
            .await;
        Ok(true)
    }
}

#[async_trait]
impl UserAdmin for Aws {
    async fn import_users(
        &self,
        bot_id: &BotId,
        users: &[NewUser],
    ) -> Result<ImportReport, StoreError> {
        self.register_bot(bot_id).await?;
        // A user known by platform id under another state id is present already.
        let refs: Vec<UserRef> = users
            .iter()
            .map(|u| UserRef::Platform {
                platform: u.platform.clone(),
                id: u.platform_id.clone(),
            })
            .collect();
        let known = self.resolve(bot_id, &refs).await?;
        let mut report = ImportReport::default();
        let mut new = Vec::new();
        for (user, found) in users.iter().zip(known) {
            match found {
                Some(_) => report.existing += 1,
                None => new.push(user.clone()),
            }
        }
        let written: Vec<bool> = stream::iter(new)
            .map(|user: NewUser| async move {
                let item =
                    self.user_item(bot_id, &user.platform, &user.platform_id, &user.state_id());
                applied(
                    self.dynamodb
                        .put_item()
                        .table_name(&self.settings.users_table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .send()
                        .await,
                )
            })
            .buffer_unordered(IMPORT_CONCURRENCY)
            .try_collect()
            .await?;
        for inserted in written {
            if inserted {
                report.inserted += 1;
            } else {
                report.existing += 1;
            }
        }
        Ok(report)
    }

    async fn user_document(
        &self,
        bot_id: &BotId,
        user: &UserRef,
    ) -> Result<Option<Object>, StoreError> {
        let Some(bm_id) = self.state_id(bot_id, user).await? else {
            return Ok(None);
        };
        let Some(mut item) = self.user(bot_id, &bm_id).await? else {
            return Ok(None);
        };
        let blocked = item.contains_key("blocked_at");
        for plumbing in ["pk", "platform_key", "shard_key", "platform_shard_key"] {
            item.remove(plumbing);
        }
        let mut document: Object = serde_dynamo::from_item(item).map_err(StoreError::new)?;
        document.insert("blocked".into(), serde_json::Value::Bool(blocked));
        Ok(Some(document))
    }

    async fn delete_user(&self, bot_id: &BotId, user: &UserRef) -> Result<bool, StoreError> {
        let Some(bm_id) = self.state_id(bot_id, user).await? else {
            return Ok(false);
        };
        let deleted = self
            .dynamodb
            .delete_item()
            .table_name(&self.settings.users_table)
            .key("pk", s(format!("{bot_id}#{bm_id}")))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        applied(deleted)
    }
}

#[async_trait]
impl RequestAdmin for Aws {
    async fn recent_requests(
        &self,
        event_id: &EventId,
        before: Option<&RequestId>,
        limit: usize,
    ) -> Result<Vec<RequestProgress>, StoreError> {
        let before = before.map(|id| id.as_str());
        let event_id = event_id.as_str();
        let mut query = self
            .dynamodb
            .query()
            .table_name(&self.settings.requests_table)
            .index_name("by_event")
            .scan_index_forward(false)
            .limit(limit as i32)
            .expression_attribute_values(":e", s(event_id));
        query = match before {
            Some(before) => query
                .key_condition_expression("event_id = :e AND pk < :before")
                .expression_attribute_values(":before", s(before)),
            None => query.key_condition_expression("event_id = :e"),
        };
        let out = query.send().await.map_err(store_error)?;
        out.items()
            .iter()
            .filter(|item| get_s(item, "sk") == REQUEST_SK)
            .map(progress_of)
            .collect()
    }

    async fn cancel_request(&self, request_id: &RequestId) -> Result<Cancellation, StoreError> {
        let updated = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .update_expression("SET #state = :cancelled")
            .condition_expression("#state = :accepted")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":cancelled", s(RequestState::Cancelled.as_str()))
            .expression_attribute_values(":accepted", s(RequestState::Accepted.as_str()))
            .send()
            .await;
        if applied(updated)? {
            return Ok(Cancellation::Cancelled);
        }
        Ok(
            match herald_core::ports::RequestLog::record(self, request_id).await? {
                Some((_, state)) => Cancellation::Final(state),
                None => Cancellation::NotFound,
            },
        )
    }
}

#[async_trait]
impl DeadLetterAdmin for Aws {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        let messages = self.receive_dead(5, limit).await?;
        let mut letters = Vec::with_capacity(messages.len());
        for message in &messages {
            let job = self.decode_dead(message).await?;
            letters.push(Self::dead_letter(job.as_ref(), message));
        }
        self.release_dead(&messages).await;
        letters.sort_by(|a, b| a.died_at.cmp(&b.died_at).then(a.id.cmp(&b.id)));
        Ok(letters)
    }

    async fn redrive(&self, which: &Selection) -> Result<Vec<Job>, StoreError> {
        let messages = self.receive_dead(WORK_VISIBILITY, usize::MAX).await?;
        let mut redriven = Vec::new();
        let mut untouched = Vec::new();
        for message in messages {
            let job = self.decode_dead(&message).await?;
            let Some(mut job) = job.filter(|j| which.includes(&j.id)) else {
                untouched.push(message);
                continue;
            };
            if let JobKind::Deliver { users } = &job.kind {
                let keys: Vec<String> = users.iter().map(|u| u.user.key()).collect();
                self.reopen_failed(&job.request_id, &keys).await?;
            }
            job.attempt = 0;
            self.enqueue(vec![job.clone()], Duration::ZERO).await?;
            self.delete_dead(&message).await?;
            redriven.push(job);
        }
        self.release_dead(&untouched).await;
        Ok(redriven)
    }

    async fn purge(&self, which: &Selection) -> Result<u64, StoreError> {
        let messages = self.receive_dead(WORK_VISIBILITY, usize::MAX).await?;
        let mut purged = 0;
        let mut untouched = Vec::new();
        for message in messages {
            let job = self.decode_dead(&message).await?;
            // A body that is not a job is named by its message id.
            let id = job
                .as_ref()
                .map_or(message.message_id().unwrap_or_default(), |j| &j.id);
            let selected = which.includes(id);
            if selected {
                self.delete_dead(&message).await?;
                purged += 1;
            } else {
                untouched.push(message);
            }
        }
        self.release_dead(&untouched).await;
        Ok(purged)
    }
}
