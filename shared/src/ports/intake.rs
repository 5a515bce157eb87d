//! Recording a request with its first jobs, all or nothing, and idempotency keys.

use crate::domain::{Job, RequestRecord};
use crate::error::StoreError;
use crate::ids::{BotId, EventId, RequestId};
use async_trait::async_trait;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The answer given to the first request with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub request_id: RequestId,
    /// SHA-256 of the body it answered.
    pub body_hash: [u8; 32],
    pub status: u16,
    /// The JSON body of the answer.
    pub answer: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// An answer to remember under an event's `Idempotency-Key`.
#[derive(Debug, Clone)]
pub struct Remember {
    pub event_id: EventId,
    pub key: String,
    pub answer: Remembered,
}

/// What [`Intake::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Recorded and enqueued.
    New,
    /// Nothing: another request with the same idempotency key was recorded first.
    Duplicate(Remembered),
}

/// Records a new request together with its first jobs.
#[async_trait]
pub trait Intake: Send + Sync {
    /// Durably record `record` as accepted with `targeted` users (None for `everyone`, then
    /// `record.audience` says how many expansions are outstanding) and enqueue `jobs`: all
    /// of it, or nothing visible as accepted. With `remember`, the answer is stored under
    /// its key in the same step — unless the key holds an answer younger than
    /// [`IDEMPOTENCY_WINDOW_MS`], which is then returned and nothing is recorded.
    async fn accept(
        &self,
        record: &RequestRecord,
        targeted: Option<u64>,
        jobs: Vec<Job>,
        remember: Option<&Remember>,
    ) -> Result<Recorded, StoreError>;

    /// The answer remembered under an event's idempotency key, if younger than
    /// [`IDEMPOTENCY_WINDOW_MS`].
    async fn remembered(
        &self,
        event_id: &EventId,
        key: &str,
    ) -> Result<Option<Remembered>, StoreError>;

    /// How many jobs of `bot_id` wait in the queue, counting no further than `up_to`
    /// (it may be approximate, and a little stale); 0 where the queue cannot tell.
    async fn backlog(&self, bot_id: &BotId, up_to: u64) -> Result<u64, StoreError>;

    /// Give up on a request whose accept died midway: mark it `aborted` if it is still
    /// `accepting`, and free the idempotency key if it still names it, so that a retry is
    /// accepted anew. (A store that accepts in one transaction never leaves one behind.)
    async fn abandon(
        &self,
        event_id: &EventId,
        key: &str,
        request_id: &RequestId,
    ) -> Result<(), StoreError>;
}
