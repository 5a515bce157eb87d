//! Listing an event's requests and cancelling one.

use crate::admin::Cancellation;
use crate::domain::RequestProgress;
use crate::error::StoreError;
use crate::ids::{EventId, RequestId};
use async_trait::async_trait;

/// Requests as operators see them.
#[async_trait]
pub trait RequestAdmin: Send + Sync {
    /// Up to `limit` requests of an event, newest first, older than `before` when given.
    async fn recent_requests(
        &self,
        event_id: &EventId,
        before: Option<&RequestId>,
        limit: usize,
    ) -> Result<Vec<RequestProgress>, StoreError>;
    /// Mark a pending request cancelled: its remaining jobs become no-ops.
    async fn cancel_request(&self, request_id: &RequestId) -> Result<Cancellation, StoreError>;
}
