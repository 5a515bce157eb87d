//! Accepting a request on AWS: the [`Intake`] port, in two phases.
//!
//! DynamoDB and SQS cannot commit together, so the request item is written first in state
//! `accepting` (with one expansion item per shard for `everyone`), then every job is sent,
//! then the state becomes `accepted`. Workers leave the jobs of an `accepting` request for
//! later and drop those of an `aborted` one. If sending or the final update fails, the
//! request is marked `aborted` (best effort) and the caller answers 503: nothing is
//! visible as accepted, and jobs already sent do nothing.

use crate::requests::{expires_at, REQUEST_SK};
use crate::{n, s, store_error, Aws};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use herald_core::domain::{Audience, Job, RequestRecord, RequestState};
use herald_core::ports::{Intake, JobQueue};
use herald_core::StoreError;
use std::time::Duration;

impl Aws {
    async fn record_accepting(
        &self,
        record: &RequestRecord,
        targeted: Option<u64>,
    ) -> Result<(), StoreError> {
        let shards = match record.audience {
            Audience::Everyone { shards, .. } => shards,
            _ => 0,
        };
        let expires = expires_at(record.created_at);
        let mut item = self.request_key(&record.id, REQUEST_SK);
        item.insert(
            "record".into(),
            serde_dynamo::to_attribute_value(record).map_err(StoreError::new)?,
        );
        item.insert("state".into(), s(RequestState::Accepting.as_str()));
        item.insert("event_id".into(), s(&record.event_id));
        item.insert("targeted".into(), n(targeted.unwrap_or(0)));
        item.insert("expansions_pending".into(), n(shards));
        for counter in ["delivered", "not_found", "failed"] {
            item.insert(counter.into(), n(0));
        }
        item.insert("reasons".into(), AttributeValue::M(Default::default()));
        item.insert("errors".into(), AttributeValue::L(vec![]));
        item.insert("deliveries".into(), AttributeValue::L(vec![]));
        item.insert("created_at".into(), n(record.created_at));
        item.insert("expires_at".into(), expires.clone());
        self.dynamodb
            .put_item()
            .table_name(&self.settings.requests_table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(store_error)?;
        let cursors: Vec<WriteRequest> = (0..shards)
            .map(|shard| {
                let mut item = self.request_key(&record.id, &format!("x#{shard}"));
                item.insert("done".into(), AttributeValue::Bool(false));
                item.insert("expires_at".into(), expires.clone());
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
                        return Err(StoreError::new("expansion cursors not written"))
                    }
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Intake for Aws {
    async fn accept(
        &self,
        record: &RequestRecord,
        targeted: Option<u64>,
        jobs: Vec<Job>,
    ) -> Result<(), StoreError> {
        self.record_accepting(record, targeted).await?;
        let sent = match self.enqueue(jobs, Duration::ZERO).await {
            Ok(()) => {
                self.set_request_state(&record.id, RequestState::Accepted)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            if let Err(abort) = self
                .set_request_state(&record.id, RequestState::Aborted)
                .await
            {
                tracing::warn!(request_id = %record.id, error = %abort, "could not mark an unaccepted request aborted; its jobs expire with it");
            }
            return Err(e);
        }
        Ok(())
    }
}
