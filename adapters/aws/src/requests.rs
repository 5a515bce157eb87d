//! Requests in DynamoDB: the [`RequestLog`] port.
//!
//! One partition per request (`pk` = request id) in the requests table; the sort key says
//! what an item is: `request` (the record with `data` as a native map, the state, the
//! counters and samples), `x#{shard}` (an expansion cursor), `u#{user key}` (a user's
//! final outcome, the redelivery marker), `j#{job id}` (a claim-checked job) or
//! `run#{job id}` (a run's lease: [`crate::job_runs`]). Outcomes
//! and the counters they move are written in one transaction, so a redelivered job neither
//! repeats nor double-counts a user; counters only ever move by atomic `ADD`.

use crate::{get_n, get_s, n, s, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use herald_core::domain::{now_ms, Outcome, RequestRecord, RequestState};
use herald_core::ids::{EventId, RequestId};
use herald_core::ports::{ErrorSample, Expansion, RequestLog, RequestProgress};
use herald_core::samples;
use herald_core::StoreError;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// How long a transaction on a request's items (an outcome batch, an expansion's cursor)
/// that keeps losing conflicts on its request item is tried again. An outcome batch's
/// sends have happened: failing the job would send them again, so it is given far longer
/// than a conflict lasts (many jobs of one request finishing batches together on a loaded
/// database), and well inside the worker's timeout.
const CONFLICT_PATIENCE: Duration = Duration::from_secs(20);
/// The longest wait between two tries after a conflict.
const CONFLICT_WAIT_AT_MOST: Duration = Duration::from_millis(400);

/// Requests and their items expire this long after they start (TTL): their creation, or
/// a scheduled request's `send_at`; an outcome marker this long after it is written.
pub const RETENTION_SECS: i64 = 30 * 24 * 3600;

pub(crate) const REQUEST_SK: &str = "request";

/// How much a request's counters move in one write.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub delivered: i64,
    pub not_found: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub reasons: BTreeMap<String, i64>,
}

/// When a request was created, from its id (a ULID); now for an id that is not one.
pub(crate) fn created_at_of(request_id: &str) -> i64 {
    ulid::Ulid::from_string(request_id)
        .map(|id| id.timestamp_ms() as i64)
        .unwrap_or_else(|_| herald_core::domain::now_ms())
}

/// TTL of an item written for a request that starts at `start_ms` (milliseconds).
pub(crate) fn expires_at(start_ms: i64) -> AttributeValue {
    n(start_ms / 1000 + RETENTION_SECS)
}

impl Aws {
    pub(crate) fn request_key(&self, request_id: &str, sk: &str) -> Item {
        HashMap::from([("pk".to_string(), s(request_id)), ("sk".to_string(), s(sk))])
    }

    /// The `request` item (strongly consistent).
    async fn request_item(&self, request_id: &str) -> Result<Option<Item>, StoreError> {
        self.dynamodb
            .get_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .consistent_read(true)
            .send()
            .await
            .map(|out| out.item)
            .map_err(store_error)
    }

    /// Set a request's state.
    pub async fn set_request_state(
        &self,
        request_id: &str,
        state: RequestState,
    ) -> Result<(), StoreError> {
        self.dynamodb
            .update_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .update_expression("SET #state = :s")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":s", s(state.as_str()))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Move a request's counters by `counts` (negative to take outcomes back).
    pub(crate) fn counters_update(
        &self,
        request_id: &str,
        counts: &Counts,
    ) -> Result<Update, StoreError> {
        let reasons = &counts.reasons;
        let mut set = vec!["updated_at = :now".to_string()];
        let mut update = Update::builder()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .expression_attribute_values(":d", n(counts.delivered))
            .expression_attribute_values(":n", n(counts.not_found))
            .expression_attribute_values(":f", n(counts.failed))
            .expression_attribute_values(":c", n(counts.cancelled))
            .expression_attribute_values(":now", n(herald_core::domain::now_ms()));
        for (i, (reason, count)) in reasons.iter().enumerate() {
            set.push(format!(
                "reasons.#r{i} = if_not_exists(reasons.#r{i}, :zero) + :c{i}"
            ));
            update = update
                .expression_attribute_names(format!("#r{i}"), reason)
                .expression_attribute_values(format!(":c{i}"), n(count));
        }
        if !reasons.is_empty() {
            update = update.expression_attribute_values(":zero", n(0));
        }
        update
            .update_expression(format!(
                "ADD delivered :d, not_found :n, failed :f, cancelled :c SET {}",
                set.join(", ")
            ))
            .build()
            .map_err(StoreError::new)
    }

    fn marker_put(
        &self,
        request_id: &str,
        key: &str,
        outcome: &Outcome,
        expires: &AttributeValue,
    ) -> Result<Put, StoreError> {
        let (name, reason) = match outcome {
            Outcome::Delivered { .. } => ("delivered", None),
            Outcome::NotFound => ("not_found", None),
            Outcome::Cancelled => ("cancelled", None),
            Outcome::Failed { reason, .. } => ("failed", Some(reason.clone())),
        };
        let mut item = self.request_key(request_id, &format!("u#{key}"));
        item.insert("outcome".into(), s(name));
        if let Some(reason) = reason {
            item.insert("reason".into(), s(reason));
        }
        item.insert("expires_at".into(), expires.clone());
        Put::builder()
            .table_name(&self.settings.requests_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(StoreError::new)
    }

    /// Write markers and their counts in one transaction; false when a marker already
    /// existed (nothing was written).
    async fn write_outcomes(
        &self,
        request_id: &str,
        outcomes: &[(String, Outcome)],
        expires: &AttributeValue,
    ) -> Result<bool, StoreError> {
        let mut counts = Counts::default();
        let mut items = Vec::with_capacity(outcomes.len() + 1);
        for (key, outcome) in outcomes {
            match outcome {
                Outcome::Delivered { .. } => counts.delivered += 1,
                Outcome::NotFound => counts.not_found += 1,
                Outcome::Cancelled => counts.cancelled += 1,
                Outcome::Failed { reason, .. } => {
                    counts.failed += 1;
                    *counts.reasons.entry(reason.clone()).or_default() += 1;
                }
            }
            items.push(
                TransactWriteItem::builder()
                    .put(self.marker_put(request_id, key, outcome, expires)?)
                    .build(),
            );
        }
        items.push(
            TransactWriteItem::builder()
                .update(self.counters_update(request_id, &counts)?)
                .build(),
        );
        // Jobs of one request record their batches on its one item at the same time: a
        // transaction that lost to another (TransactionConflict) is tried again, since
        // failing the job would send its users again.
        self.transact_patiently(request_id, items, "an outcome batch")
            .await
    }

    /// Run a transaction on a request's items until it commits (true) or a condition of it
    /// fails (false), trying again for [`CONFLICT_PATIENCE`] on any other failure: every
    /// job of a request writes its one counters item, so transactions on it lose to each
    /// other (TransactionConflict), and the callers' writes are idempotent (one that did
    /// commit, its answer lost to a timeout, comes back as a failed condition).
    async fn transact_patiently(
        &self,
        request_id: &str,
        items: Vec<TransactWriteItem>,
        what: &'static str,
    ) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        for attempt in 0u32.. {
            match self
                .dynamodb
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await
            {
                Ok(_) => return Ok(true),
                Err(e) => {
                    if cancellation_codes(&e)
                        .iter()
                        .any(|c| c == "ConditionalCheckFailed")
                    {
                        return Ok(false);
                    }
                    if started.elapsed() < CONFLICT_PATIENCE {
                        tokio::time::sleep(conflict_wait(attempt)).await;
                        continue;
                    }
                    tracing::warn!(
                        request_id,
                        attempts = attempt + 1,
                        "{what} could not be written; its job will run again"
                    );
                    return Err(store_error(e));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Add what the core's sample policy admits of these new samples to the request's
    /// `errors` and `deliveries` lists: read them, choose, and write both back on the
    /// condition that neither changed meanwhile (tried again a few times if another worker
    /// wrote first; samples are best effort, counts are not).
    async fn keep_samples(
        &self,
        request_id: &str,
        errors: Vec<(String, AttributeValue)>,
        deliveries: Vec<AttributeValue>,
    ) {
        if errors.is_empty() && deliveries.is_empty() {
            return;
        }
        for attempt in 0..SAMPLE_TRIES {
            match self
                .try_keep_samples(request_id, &errors, &deliveries)
                .await
            {
                Ok(true) => return,
                Ok(false) => {
                    // Workers finishing together collide: spread them out before the next
                    // read (once the lists are full nobody writes, so this ends).
                    let jitter = u64::from(herald_core::secret::random_bytes::<1>()[0]) % 16;
                    let wait = (4 << attempt.min(4)) + jitter;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                Err(e) => {
                    tracing::debug!(request_id, error = %e, "samples not kept");
                    return;
                }
            }
        }
        tracing::debug!(
            request_id,
            "samples not kept: other workers kept writing theirs"
        );
    }

    /// One read-choose-write of [`Aws::keep_samples`]; false when another write came first.
    async fn try_keep_samples(
        &self,
        request_id: &str,
        errors: &[(String, AttributeValue)],
        deliveries: &[AttributeValue],
    ) -> Result<bool, StoreError> {
        let item = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .projection_expression("errors, deliveries")
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?
            .item
            .unwrap_or_default();
        let list = |name: &str| -> Vec<AttributeValue> {
            item.get(name)
                .and_then(|v| v.as_l().ok())
                .cloned()
                .unwrap_or_default()
        };
        let (mut kept_errors, mut kept_deliveries) = (list("errors"), list("deliveries"));
        let (errors_before, deliveries_before) = (kept_errors.len(), kept_deliveries.len());
        let reasons: Vec<String> = kept_errors
            .iter()
            .filter_map(|v| v.as_m().ok())
            .map(|m| get_s(m, "reason").to_string())
            .collect();
        // A user already sampled (a redelivered outcome) is not sampled again.
        let user = |v: &AttributeValue| v.as_m().ok().map(|m| get_s(m, "user").to_string());
        let sampled: HashSet<String> = kept_errors.iter().filter_map(user).collect();
        let fresh: Vec<&(String, AttributeValue)> = errors
            .iter()
            .filter(|(_, e)| user(e).is_none_or(|u| !sampled.contains(&u)))
            .collect();
        let admitted = samples::admit_errors(
            reasons.iter().map(String::as_str),
            fresh.iter().map(|(reason, _)| reason.as_str()),
        );
        kept_errors.extend(admitted.into_iter().map(|i| fresh[i].1.clone()));
        let room = samples::admit_deliveries(kept_deliveries.len(), deliveries.len());
        kept_deliveries.extend(deliveries.iter().take(room).cloned());
        if kept_errors.len() == errors_before && kept_deliveries.len() == deliveries_before {
            return Ok(true);
        }
        let written = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .update_expression("SET errors = :errors, deliveries = :deliveries")
            .condition_expression(
                "attribute_exists(pk) AND size(errors) = :errors_before \
                 AND size(deliveries) = :deliveries_before",
            )
            .expression_attribute_values(":errors", AttributeValue::L(kept_errors))
            .expression_attribute_values(":deliveries", AttributeValue::L(kept_deliveries))
            .expression_attribute_values(":errors_before", n(errors_before))
            .expression_attribute_values(":deliveries_before", n(deliveries_before))
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if crate::condition_failed(&e) => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }
}

/// Read-choose-write rounds of [`Aws::keep_samples`] before it gives up (about half a
/// second of collisions with the waits between them).
const SAMPLE_TRIES: u32 = 10;

fn record_of(item: &Item) -> Result<RequestRecord, StoreError> {
    let record = item
        .get("record")
        .cloned()
        .ok_or_else(|| StoreError::corrupt("a request item", "it has no record"))?;
    serde_dynamo::from_attribute_value(record)
        .map_err(|e| StoreError::corrupt("a request record", e))
}

/// A request's progress from its `request` item.
pub(crate) fn progress_of(item: &Item) -> Result<RequestProgress, StoreError> {
    let list = |name: &str| -> Vec<AttributeValue> {
        item.get(name)
            .and_then(|v| v.as_l().ok())
            .cloned()
            .unwrap_or_default()
    };
    let errors: Vec<ErrorSample> = list("errors")
        .into_iter()
        .take(samples::ERROR_SAMPLES)
        .filter_map(|v| v.as_m().ok().cloned())
        .map(|m| ErrorSample {
            user: get_s(&m, "user").to_string(),
            reason: get_s(&m, "reason").to_string(),
            message: get_s(&m, "message").to_string(),
        })
        .collect();
    let deliveries = list("deliveries")
        .into_iter()
        .take(samples::DELIVERY_SAMPLES)
        .filter_map(|v| serde_dynamo::from_attribute_value(v).ok())
        .collect();
    Ok(RequestProgress {
        record: record_of(item)?,
        state: RequestState::from_name(get_s(item, "state")),
        targeted: get_n(item, "targeted").max(0) as u64,
        expansions_pending: get_n(item, "expansions_pending").max(0) as u32,
        delivered: get_n(item, "delivered").max(0) as u64,
        not_found: get_n(item, "not_found").max(0) as u64,
        failed: get_n(item, "failed").max(0) as u64,
        cancelled: get_n(item, "cancelled").max(0) as u64,
        failed_by_reason: item
            .get("reasons")
            .and_then(|v| v.as_m().ok())
            .map(|m| {
                // A redrive takes counts back down; a reason at zero is no reason.
                m.keys()
                    .map(|k| (k.clone(), get_n(m, k).max(0) as u64))
                    .filter(|(_, count)| *count > 0)
                    .collect()
            })
            .unwrap_or_default(),
        error_samples: errors,
        delivery_samples: deliveries,
        updated_at: item.get("updated_at").map(|_| get_n(item, "updated_at")),
    })
}

#[async_trait]
impl RequestLog for Aws {
    async fn progress(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<RequestProgress>, StoreError> {
        let request_id = request_id.as_str();
        match self.request_item(request_id).await? {
            Some(item) => progress_of(&item).map(Some),
            None => Ok(None),
        }
    }

    async fn event_of(&self, request_id: &RequestId) -> Result<Option<EventId>, StoreError> {
        let request_id = request_id.as_str();
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .projection_expression("event_id")
            .send()
            .await
            .map_err(store_error)?;
        out.item
            .as_ref()
            .map(|item| {
                EventId::parse(get_s(item, "event_id"))
                    .map_err(|e| StoreError::corrupt("a request's event id", e))
            })
            .transpose()
    }

    async fn record(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<(RequestRecord, RequestState)>, StoreError> {
        let request_id = request_id.as_str();
        match self.request_item(request_id).await? {
            Some(item) => Ok(Some((
                record_of(&item)?,
                RequestState::from_name(get_s(&item, "state")),
            ))),
            None => Ok(None),
        }
    }

    async fn finished(
        &self,
        request_id: &RequestId,
        user_keys: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let request_id = request_id.as_str();
        let keys = user_keys
            .iter()
            .map(|k| self.request_key(request_id, &format!("u#{k}")))
            .collect();
        let items = self
            .batch_get(&self.settings.requests_table, keys, "sk")
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| get_s(item, "sk").strip_prefix("u#").map(String::from))
            .collect())
    }

    async fn record_outcomes(
        &self,
        request_id: &RequestId,
        outcomes: &[(String, Outcome)],
    ) -> Result<(), StoreError> {
        let request_id = request_id.as_str();
        if outcomes.is_empty() {
            return Ok(());
        }
        // Written once the request has started (a scheduled one at its `send_at`, up to
        // 30 days after its creation): kept as long from now, which needs no read.
        let expires = expires_at(now_ms().max(created_at_of(request_id)));
        // A transaction holds at most 100 items: 99 markers and the counters.
        for chunk in outcomes.chunks(99) {
            if !self.write_outcomes(request_id, chunk, &expires).await? {
                // Some user of this chunk is already final (a concurrent redelivery): write
                // them one by one, skipping those.
                for one in chunk {
                    self.write_outcomes(request_id, std::slice::from_ref(one), &expires)
                        .await?;
                }
            }
        }
        let errors = outcomes
            .iter()
            .filter_map(|(key, o)| match o {
                Outcome::Failed { reason, message } => Some((
                    reason.clone(),
                    AttributeValue::M(HashMap::from([
                        ("user".to_string(), s(key)),
                        ("reason".to_string(), s(reason)),
                        ("message".to_string(), s(message)),
                    ])),
                )),
                _ => None,
            })
            .collect();
        let deliveries = outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Delivered {
                    detail: Some(detail),
                } => serde_dynamo::to_attribute_value(detail).ok(),
                _ => None,
            })
            .collect();
        self.keep_samples(request_id, errors, deliveries).await;
        Ok(())
    }

    async fn expansion(&self, request_id: &RequestId, shard: u32) -> Result<Expansion, StoreError> {
        let request_id = request_id.as_str();
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, &format!("x#{shard}"))))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(match out.item {
            Some(item) => Expansion {
                cursor: item.get("cursor").and_then(|v| v.as_s().ok()).cloned(),
                done: item
                    .get("done")
                    .and_then(|v| v.as_bool().ok())
                    .copied()
                    .unwrap_or(false),
            },
            None => Expansion {
                cursor: None,
                done: true,
            },
        })
    }

    async fn advance_expansion(
        &self,
        request_id: &RequestId,
        shard: u32,
        from: Option<&str>,
        to: Option<&str>,
        added: u64,
    ) -> Result<bool, StoreError> {
        let request_id = request_id.as_str();
        let done = to.is_none();
        let mut cursor = Update::builder()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, &format!("x#{shard}"))))
            .expression_attribute_values(":done", AttributeValue::Bool(done))
            .expression_attribute_values(":false", AttributeValue::Bool(false));
        cursor = match to {
            Some(to) => cursor
                .update_expression("SET #c = :to, done = :done")
                .expression_attribute_values(":to", s(to)),
            None => cursor.update_expression("REMOVE #c SET done = :done"),
        };
        cursor = match from {
            Some(from) => cursor
                .condition_expression("done = :false AND #c = :from")
                .expression_attribute_values(":from", s(from)),
            None => cursor.condition_expression("done = :false AND attribute_not_exists(#c)"),
        };
        let cursor = cursor
            .expression_attribute_names("#c", "cursor")
            .build()
            .map_err(StoreError::new)?;
        let counters = Update::builder()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .update_expression("ADD targeted :added, expansions_pending :minus")
            .expression_attribute_values(":added", n(added))
            .expression_attribute_values(":minus", n(if done { -1 } else { 0 }))
            .build()
            .map_err(StoreError::new)?;
        // Refused (false) only when the cursor is no longer at `from`; a conflict with the
        // outcome batches writing the same counters is tried again, not taken for that (the
        // shard's next page would wait for a cursor that never moves).
        self.transact_patiently(
            request_id,
            vec![
                TransactWriteItem::builder().update(cursor).build(),
                TransactWriteItem::builder().update(counters).build(),
            ],
            "an expansion's cursor",
        )
        .await
    }
}

/// The reasons DynamoDB gave for cancelling a transaction, item by item ("None" for an
/// item that was not the cause); empty for any other failure.
fn cancellation_codes(
    e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>,
) -> Vec<String> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The wait before try `attempt + 2` of a transaction that lost a conflict: doubling from 20 ms
/// up to [`CONFLICT_WAIT_AT_MOST`], half of it random, so that the jobs that collided do
/// not collide again.
fn conflict_wait(attempt: u32) -> Duration {
    let ceiling = (20u64 << attempt.min(5)).min(CONFLICT_WAIT_AT_MOST.as_millis() as u64);
    let random = u64::from(u16::from_le_bytes(herald_core::secret::random_bytes::<2>()));
    Duration::from_millis(ceiling / 2 + random % (ceiling / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_ids_creation_time_is_read_from_the_id() {
        let before = herald_core::domain::now_ms();
        let id = herald_core::domain::new_id();
        let at = created_at_of(&id);
        assert!(
            at >= before - 1 && at <= herald_core::domain::now_ms(),
            "{at} vs {before}"
        );
        assert!(created_at_of("not-a-ulid") >= before);
    }

    #[test]
    fn conflict_waits_grow_to_a_ceiling_and_stay_random_within_it() {
        for attempt in 0..40 {
            let ceiling = Duration::from_millis((20u64 << attempt.min(5)).min(400));
            let wait = conflict_wait(attempt);
            assert!(
                wait >= ceiling / 2 && wait <= ceiling,
                "{attempt}: {wait:?}"
            );
        }
        let waits: HashSet<Duration> = (0..50).map(|_| conflict_wait(9)).collect();
        assert!(waits.len() > 1, "the waits of colliding jobs differ");
    }
}
