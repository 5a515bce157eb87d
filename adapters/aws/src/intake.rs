//! Accepting a request on AWS: the [`Intake`] port, in two phases.
//!
//! DynamoDB and SQS cannot commit together, so the request item is written first in state
//! `accepting` (with one expansion item per shard for `everyone`), then every job is sent,
//! then the state becomes `accepted`. Workers leave the jobs of an `accepting` request for
//! later and drop those of an `aborted` one. If sending or the final update fails, the
//! request is marked `aborted` (best effort) and the caller answers 503: nothing is
//! visible as accepted, and jobs already sent do nothing.
//!
//! An `Idempotency-Key` is an item `idem#{event_id}#{key}` written in the same transaction
//! as the `accepting` request, on condition that the key is free (or older than 24 hours):
//! of two concurrent requests with one key, exactly one transaction succeeds; the other
//! reads the winner's answer. An aborted accept deletes its key again.

use crate::requests::{expires_at, REQUEST_SK};
use crate::{get_n, get_s, n, s, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, PutRequest, TransactWriteItem, WriteRequest};
use herald_core::domain::{now_ms, Audience, Job, RequestRecord, RequestState};
use herald_core::ids::{BotId, EventId, RequestId};
use herald_core::lane::Lane;
use herald_core::ports::{Intake, JobQueue, Recorded, Remember, Remembered, IDEMPOTENCY_WINDOW_MS};
use herald_core::StoreError;
use std::time::Duration;

impl Aws {
    /// Write the request `accepting` (with its idempotency key, if any, in the same
    /// transaction); Duplicate when the key was taken first.
    async fn record_accepting(
        &self,
        record: &RequestRecord,
        targeted: Option<u64>,
        remember: Option<&Remember>,
    ) -> Result<Recorded, StoreError> {
        let shards = match record.audience {
            Audience::Everyone { shards, .. } => shards,
            _ => 0,
        };
        let request = self.request_put(record, targeted, shards)?;
        match remember {
            None => {
                self.dynamodb
                    .put_item()
                    .table_name(&self.settings.requests_table)
                    .set_item(Some(request.item))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await
                    .map_err(store_error)?;
            }
            Some(remember) => {
                let written = self
                    .dynamodb
                    .transact_write_items()
                    .transact_items(TransactWriteItem::builder().put(request).build())
                    .transact_items(
                        TransactWriteItem::builder()
                            .put(self.idempotency_put(remember)?)
                            .build(),
                    )
                    .send()
                    .await;
                match written {
                    Ok(_) => {}
                    Err(e) if key_taken(&e) => {
                        return match self.remembered(&remember.event_id, &remember.key).await? {
                            Some(first) => Ok(Recorded::Duplicate(first)),
                            None => Err(StoreError::conflict("idempotency key contended; retry")),
                        }
                    }
                    Err(e) => return Err(store_error(e)),
                }
            }
        }
        self.write_companions(record, shards, expires_at(record.starts_at()))
            .await?;
        Ok(Recorded::New)
    }

    /// The request item, `accepting`, its counters at zero, written only if new.
    fn request_put(
        &self,
        record: &RequestRecord,
        targeted: Option<u64>,
        shards: u32,
    ) -> Result<Put, StoreError> {
        let mut item = self.request_key(&record.id, REQUEST_SK);
        item.insert(
            "record".into(),
            serde_dynamo::to_attribute_value(record).map_err(StoreError::new)?,
        );
        item.insert("state".into(), s(RequestState::Accepting.as_str()));
        item.insert("event_id".into(), s(&record.event_id));
        item.insert("targeted".into(), n(targeted.unwrap_or(0)));
        item.insert("expansions_pending".into(), n(shards));
        for counter in ["delivered", "not_found", "failed", "cancelled"] {
            item.insert(counter.into(), n(0));
        }
        item.insert("reasons".into(), AttributeValue::M(Default::default()));
        item.insert("errors".into(), AttributeValue::L(vec![]));
        item.insert("deliveries".into(), AttributeValue::L(vec![]));
        item.insert("created_at".into(), n(record.created_at));
        item.insert("expires_at".into(), expires_at(record.starts_at()));
        Put::builder()
            .table_name(&self.settings.requests_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::new)
    }

    /// The idempotency key's claim: written if the key is free or its last use is older
    /// than the window.
    fn idempotency_put(&self, remember: &Remember) -> Result<Put, StoreError> {
        let mut idem = self.idempotency_key(&remember.event_id, &remember.key);
        let answer = &remember.answer;
        idem.insert("request_id".into(), s(&answer.request_id));
        idem.insert(
            "body_hash".into(),
            AttributeValue::B(Blob::new(answer.body_hash.to_vec())),
        );
        idem.insert("status".into(), n(answer.status));
        idem.insert("answer".into(), s(&answer.answer));
        idem.insert("at".into(), n(answer.at));
        idem.insert(
            "expires_at".into(),
            n((answer.at + IDEMPOTENCY_WINDOW_MS) / 1000 + 3600),
        );
        Put::builder()
            .table_name(&self.settings.requests_table)
            .set_item(Some(idem))
            .condition_expression("attribute_not_exists(pk) OR #at < :cutoff")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":cutoff", n(now_ms() - IDEMPOTENCY_WINDOW_MS))
            .build()
            .map_err(StoreError::new)
    }

    /// The items a new request has besides its own, in batches of 25, retrying
    /// unprocessed items: one expansion cursor per shard of an `everyone`, and a bulk
    /// request's place on its bot's list of open bulk requests ([`crate::open_requests`]).
    async fn write_companions(
        &self,
        record: &RequestRecord,
        shards: u32,
        expires: AttributeValue,
    ) -> Result<(), StoreError> {
        let mut items: Vec<Item> = (0..shards)
            .map(|shard| {
                let mut item = self.request_key(&record.id, &format!("x#{shard}"));
                item.insert("done".into(), AttributeValue::Bool(false));
                item.insert("expires_at".into(), expires.clone());
                item
            })
            .collect();
        if record.lane == Lane::Bulk {
            let mut open = self.open_key(&record.bot_id, &record.id);
            open.insert("expires_at".into(), expires.clone());
            items.push(open);
        }
        let cursors: Vec<WriteRequest> = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(StoreError::new)
            })
            .collect::<Result<_, _>>()?;
        for chunk in cursors.chunks(25) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                let out = self
                    .dynamodb
                    .batch_write_item()
                    .request_items(&self.settings.requests_table, pending)
                    .send()
                    .await
                    .map_err(store_error)?;
                match out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.settings.requests_table))
                {
                    Some(rest) if !rest.is_empty() && attempt < 5 => {
                        pending = rest.clone();
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    }
                    Some(rest) if !rest.is_empty() => {
                        return Err(StoreError::new("a request's cursors not written"))
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// `accepting` → `accepted`, unless the request was given up meanwhile (a retry found
    /// it `accepting` past [`herald_core::domain::ACCEPTING_TIMEOUT_MS`] and aborted it).
    async fn accepted(&self, request_id: &str) -> Result<(), StoreError> {
        let updated = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .update_expression("SET #state = :accepted")
            .condition_expression("#state = :accepting")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":accepted", s(RequestState::Accepted.as_str()))
            .expression_attribute_values(":accepting", s(RequestState::Accepting.as_str()))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(()),
            Err(e) if crate::condition_failed(&e) => Err(StoreError::new(
                "the request was given up while it was being accepted",
            )),
            Err(e) => Err(store_error(e)),
        }
    }

    fn idempotency_key(&self, event_id: &str, key: &str) -> crate::Item {
        self.request_key(&format!("idem#{event_id}#{key}"), IDEMPOTENCY_SK)
    }
}

/// The item holding an idempotency key's first answer (`pk` = `idem#{event}#{key}`).
const IDEMPOTENCY_SK: &str = "idempotency";

/// Whether a transaction failed because its idempotency key (its second item) was taken.
fn key_taken(e: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>) -> bool {
    matches!(
        e.as_service_error(),
        Some(TransactWriteItemsError::TransactionCanceledException(c))
            if c.cancellation_reasons().get(1).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
    )
}

#[async_trait]
impl Intake for Aws {
    async fn accept(
        &self,
        record: &RequestRecord,
        targeted: Option<u64>,
        jobs: Vec<Job>,
        remember: Option<&Remember>,
    ) -> Result<Recorded, StoreError> {
        if let Recorded::Duplicate(first) =
            self.record_accepting(record, targeted, remember).await?
        {
            return Ok(Recorded::Duplicate(first));
        }
        // A scheduled request's jobs wait for its `send_at` (SQS holds them 15 minutes at
        // most; the worker puts back one that comes up early).
        let sent = match self.enqueue(jobs, record.due_in(now_ms())).await {
            Ok(()) => self.accepted(&record.id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            if let Err(abort) = self
                .set_request_state(&record.id, RequestState::Aborted)
                .await
            {
                tracing::warn!(request_id = %record.id, error = %abort, "could not mark an unaccepted request aborted; its jobs expire with it");
            }
            if let Some(remember) = remember {
                // Free the key, so that the client's retry is not answered with this failure.
                let _ = self
                    .dynamodb
                    .delete_item()
                    .table_name(&self.settings.requests_table)
                    .set_key(Some(
                        self.idempotency_key(&remember.event_id, &remember.key),
                    ))
                    .send()
                    .await;
            }
            return Err(e);
        }
        Ok(Recorded::New)
    }

    async fn remembered(
        &self,
        event_id: &EventId,
        key: &str,
    ) -> Result<Option<Remembered>, StoreError> {
        let event_id = event_id.as_str();
        let found = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.idempotency_key(event_id, key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let Some(item) = found.item else {
            return Ok(None);
        };
        let at = get_n(&item, "at");
        if at < now_ms() - IDEMPOTENCY_WINDOW_MS {
            return Ok(None);
        }
        Ok(Some(Remembered {
            request_id: RequestId::parse(get_s(&item, "request_id"))
                .map_err(|e| StoreError::corrupt("an idempotency key's request id", e))?,
            body_hash: item
                .get("body_hash")
                .and_then(|v| v.as_b().ok())
                .and_then(|b| <[u8; 32]>::try_from(b.as_ref()).ok())
                .unwrap_or([0u8; 32]),
            status: get_n(&item, "status") as u16,
            answer: get_s(&item, "answer").to_string(),
            at,
        }))
    }

    /// SQS cannot count one bot's messages: every bot shares the queue and its alarm, and
    /// the worker's concurrency bounds what any bot takes of it.
    async fn backlog(&self, _bot_id: &BotId, _up_to: u64) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn abandon(
        &self,
        event_id: &EventId,
        key: &str,
        request_id: &RequestId,
    ) -> Result<(), StoreError> {
        let request_id = request_id.as_str();
        let event_id = event_id.as_str();
        let aborted = self
            .dynamodb
            .update_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.request_key(request_id, REQUEST_SK)))
            .update_expression("SET #state = :aborted")
            .condition_expression("#state = :accepting")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":aborted", s(RequestState::Aborted.as_str()))
            .expression_attribute_values(":accepting", s(RequestState::Accepting.as_str()))
            .send()
            .await;
        match aborted {
            Ok(_) => {}
            Err(e) if crate::condition_failed(&e) => {}
            Err(e) => return Err(store_error(e)),
        }
        let freed = self
            .dynamodb
            .delete_item()
            .table_name(&self.settings.requests_table)
            .set_key(Some(self.idempotency_key(event_id, key)))
            .condition_expression("request_id = :id")
            .expression_attribute_values(":id", s(request_id))
            .send()
            .await;
        match freed {
            Ok(_) => Ok(()),
            Err(e) if crate::condition_failed(&e) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }
}
