//! Requests once accepted: their records, per-user outcomes, counters and expansions.

use crate::domain::{Outcome, RequestProgress, RequestRecord, RequestState};
use crate::error::StoreError;
use crate::ids::{EventId, RequestId};
use async_trait::async_trait;
use std::collections::HashSet;

/// Where one shard's expansion stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expansion {
    pub cursor: Option<String>,
    pub done: bool,
}

/// Requests: their records, per-user outcomes (which double as redelivery markers),
/// counters and expansion progress.
#[async_trait]
pub trait RequestLog: Send + Sync {
    async fn progress(&self, request_id: &RequestId)
        -> Result<Option<RequestProgress>, StoreError>;

    /// The event a request belongs to, read without its record (whose `data` may be
    /// 256 KiB): what the status route needs to check a secret before reading more.
    async fn event_of(&self, request_id: &RequestId) -> Result<Option<EventId>, StoreError>;

    /// The record and state of a request, without its counters.
    async fn record(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<(RequestRecord, RequestState)>, StoreError>;

    /// Which of these user keys already have a final outcome in this request.
    async fn finished(
        &self,
        request_id: &RequestId,
        user_keys: &[String],
    ) -> Result<HashSet<String>, StoreError>;

    /// Record final outcomes by user key and count them. A key that already has an outcome
    /// is left as it is and not counted again.
    async fn record_outcomes(
        &self,
        request_id: &RequestId,
        outcomes: &[(String, Outcome)],
    ) -> Result<(), StoreError>;

    async fn expansion(&self, request_id: &RequestId, shard: u32) -> Result<Expansion, StoreError>;

    /// Move a shard's expansion from `from` to `to` (None: exhausted), adding `added` users
    /// to `targeted`. False, changing nothing, when the shard is no longer at `from`.
    async fn advance_expansion(
        &self,
        request_id: &RequestId,
        shard: u32,
        from: Option<&str>,
        to: Option<&str>,
        added: u64,
    ) -> Result<bool, StoreError>;
}
