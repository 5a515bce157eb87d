//! The job queue on SQS: the [`JobQueue`] port and the message format.
//!
//! A message body is a job as JSON. A job too large for one message (a deliver job with
//! big per-user data) is stored in the requests table under `j#{job id}` and the message
//! carries `{"claim": {"request_id", "job_id"}}` instead (claim check); [`Aws::decode`]
//! turns either back into a job. Jobs are sent with `SendMessageBatch` in groups of ten;
//! entries that fail are retried alone, and what still fails is an error.

use crate::requests::expires_at;
use crate::{s, store_error, Aws};
use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::stream::{self, StreamExt, TryStreamExt};
use herald_core::domain::Job;
use herald_core::ports::JobQueue;
use herald_core::StoreError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The largest body sent inline; SQS takes 256 KiB per message and per batch.
const INLINE_LIMIT: usize = 200 * 1024;
/// SQS's longest message delay.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// Attempts at the entries of a batch that SQS refused.
const SEND_ATTEMPTS: u32 = 4;
/// Batches in flight at once.
const CONCURRENCY: usize = 8;

#[derive(Serialize, Deserialize)]
struct Claim {
    request_id: String,
    job_id: String,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Body {
    Claim { claim: Claim },
    Job(Job),
}

impl Aws {
    /// The message body for `job`, storing the job aside when it is too large.
    async fn body(&self, job: &Job) -> Result<String, StoreError> {
        let text = serde_json::to_string(job).map_err(StoreError::new)?;
        if text.len() <= INLINE_LIMIT {
            return Ok(text);
        }
        let mut item = self.request_key(&job.request_id, &format!("j#{}", job.id));
        item.insert("job".into(), s(text));
        item.insert(
            "expires_at".into(),
            expires_at(herald_core::domain::now_ms()),
        );
        self.dynamodb
            .put_item()
            .table_name(&self.settings.requests_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(store_error)?;
        serde_json::to_string(&Body::Claim {
            claim: Claim {
                request_id: job.request_id.to_string(),
                job_id: job.id.clone(),
            },
        })
        .map_err(StoreError::new)
    }

    /// The job a message body carries: corrupt when the body is not a job, or its claimed
    /// job is gone or unreadable (neither can ever succeed); unavailable when the claim
    /// could not be read (retry).
    pub async fn decode(&self, body: &str) -> Result<Job, StoreError> {
        match serde_json::from_str::<Body>(body) {
            Ok(Body::Job(job)) => Ok(job),
            Ok(Body::Claim { claim }) => {
                let out = self
                    .dynamodb
                    .get_item()
                    .table_name(&self.settings.requests_table)
                    .set_key(Some(
                        self.request_key(&claim.request_id, &format!("j#{}", claim.job_id)),
                    ))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(store_error)?;
                let what = format!("claimed job {}", claim.job_id);
                let text = out
                    .item
                    .as_ref()
                    .and_then(|item| item.get("job"))
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| StoreError::corrupt(&what, "it is missing"))?;
                serde_json::from_str(text).map_err(|e| StoreError::corrupt(&what, e))
            }
            Err(e) => Err(StoreError::corrupt("the message body", e)),
        }
    }

    /// Send a message body that cannot be run to the dead-letter queue as it is, with why.
    pub async fn bury_body(&self, body: &str, reason: &str) -> Result<(), StoreError> {
        let reason = aws_sdk_sqs::types::MessageAttributeValue::builder()
            .data_type("String")
            .string_value(reason)
            .build()
            .map_err(StoreError::new)?;
        self.sqs
            .send_message()
            .queue_url(&self.settings.dlq_url)
            .message_body(body)
            .message_attributes("reason", reason)
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn send_batch(
        &self,
        queue_url: &str,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<(), StoreError> {
        let mut pending = entries;
        for attempt in 0..SEND_ATTEMPTS {
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(pending.clone()))
                .send()
                .await;
            let failed: Vec<String> = match out {
                Ok(out) => out.failed().iter().map(|f| f.id().to_string()).collect(),
                Err(e) if attempt + 1 < SEND_ATTEMPTS => {
                    tracing::warn!(error = %store_error(e), "SendMessageBatch failed; retrying");
                    pending.iter().map(|e| e.id().to_string()).collect()
                }
                Err(e) => return Err(store_error(e)),
            };
            if failed.is_empty() {
                return Ok(());
            }
            pending.retain(|e| failed.iter().any(|f| f == e.id()));
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
        }
        Err(StoreError::new(format!(
            "{} jobs could not be enqueued",
            pending.len()
        )))
    }

    /// Send `jobs` to `queue_url`, visible after `delay` seconds.
    async fn enqueue_to(
        &self,
        queue_url: &str,
        jobs: Vec<Job>,
        delay: i32,
    ) -> Result<(), StoreError> {
        let bodies: Vec<String> = stream::iter(jobs)
            .map(|job: Job| async move { self.body(&job).await })
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        // Group by count (10) and by total size (SQS's 256 KiB per batch).
        let mut batches: Vec<Vec<SendMessageBatchRequestEntry>> = Vec::new();
        let mut size = 0;
        for (i, body) in bodies.into_iter().enumerate() {
            let full = batches
                .last()
                .is_none_or(|b| b.len() == 10 || size + body.len() > INLINE_LIMIT);
            if full {
                batches.push(Vec::with_capacity(10));
                size = 0;
            }
            size += body.len();
            let entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(body)
                .delay_seconds(delay)
                .build()
                .map_err(StoreError::new)?;
            if let Some(batch) = batches.last_mut() {
                batch.push(entry);
            }
        }
        stream::iter(batches)
            .map(|batch| self.send_batch(queue_url, batch))
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

#[async_trait]
impl JobQueue for Aws {
    /// Each job to its lane's queue: transactional jobs to their own queue when there is
    /// one (`AwsSettings::transactional_queue_url`), never behind a broadcast's messages.
    async fn enqueue(&self, jobs: Vec<Job>, delay: Duration) -> Result<(), StoreError> {
        // Whole seconds, rounded up: a wait asked for is never cut to nothing.
        let delay = delay.min(MAX_DELAY).as_millis().div_ceil(1000) as i32;
        let (transactional, bulk): (Vec<Job>, Vec<Job>) = jobs
            .into_iter()
            .partition(|job| job.lane == herald_core::lane::Lane::Transactional);
        for (lane, jobs) in [
            (herald_core::lane::Lane::Transactional, transactional),
            (herald_core::lane::Lane::Bulk, bulk),
        ] {
            if !jobs.is_empty() {
                self.enqueue_to(self.settings.queue_for(lane), jobs, delay)
                    .await?;
            }
        }
        Ok(())
    }

    async fn bury(&self, job: Job, reason: &str) -> Result<(), StoreError> {
        self.bury_body(&self.body(&job).await?, reason).await
    }
}
