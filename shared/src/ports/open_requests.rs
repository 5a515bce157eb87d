//! A bot's bulk requests not yet known to be final, in the order they were accepted: the
//! work ahead of a bulk request in its lane, which its ETA counts.

use crate::domain::RequestState;
use crate::error::StoreError;
use crate::ids::{BotId, RequestId};
use async_trait::async_trait;

/// Where one open bulk request stands, as far as its ETA needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub request_id: RequestId,
    /// None: the request is gone (past its retention).
    pub state: Option<RequestState>,
    /// Users targeted so far, and how many of them are final.
    pub targeted: u64,
    pub finished: u64,
    /// Expansion shards not yet exhausted.
    pub expansions_pending: u32,
    /// When a scheduled request is to be sent (milliseconds since the Unix epoch).
    pub send_at: Option<i64>,
}

impl OpenRequest {
    /// Its users known and not yet final.
    pub fn pending(&self) -> u64 {
        self.targeted.saturating_sub(self.finished)
    }

    /// Whether it will send nothing more: gone, cancelled, aborted, or done.
    pub fn is_final(&self) -> bool {
        match self.state {
            None | Some(RequestState::Cancelled | RequestState::Aborted) => true,
            Some(_) => self.expansions_pending == 0 && self.pending() == 0,
        }
    }
}

/// The bots' open bulk requests. A store adds a bulk request to its bot's list when it
/// records it (the intake); the list is read, and its final requests taken off it, when
/// a status document counts the work ahead ([`crate::status::document`]).
#[async_trait]
pub trait OpenRequests: Send + Sync {
    /// The first `limit` of `bot`'s listed bulk requests accepted before `before`, oldest
    /// first.
    async fn open_before(
        &self,
        bot: &BotId,
        before: &RequestId,
        limit: usize,
    ) -> Result<Vec<OpenRequest>, StoreError>;

    /// Take these requests off `bot`'s list (they were found final).
    async fn close(&self, bot: &BotId, requests: &[RequestId]) -> Result<(), StoreError>;
}
