//! The status document of a request, as `GET /v1/requests/{id}` and `herald requests show`
//! print it.
//!
//! Adapters store raw progress ([`RequestProgress`]); this module derives the state and
//! `pending` from it in one place, so every runtime answers the same document.

use crate::domain::{Audience, RequestState};
use crate::ports::{ErrorSample, RequestProgress};
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, Serialize)]
pub struct RequestStatus {
    pub request_id: String,
    pub event_id: String,
    /// `accepted` (nothing finished yet), `running`, `done`, or `aborted`.
    pub state: &'static str,
    pub audience: Audience,
    /// Users targeted; null for `everyone` until the bot's users are fully enumerated.
    pub targeted: Option<u64>,
    pub delivered: u64,
    pub not_found: u64,
    pub failed: u64,
    /// Users known and not yet final.
    pub pending: u64,
    pub created_at: String,
    pub updated_at: Option<String>,
    /// A few per-user failures, first ones first.
    pub errors: Vec<ErrorSample>,
    /// What was delivered to the first few users (the log deliverer records what it would send).
    pub deliveries: Vec<serde_json::Value>,
}

impl From<RequestProgress> for RequestStatus {
    fn from(p: RequestProgress) -> Self {
        let finished = p.delivered + p.not_found + p.failed;
        let pending = p.targeted.saturating_sub(finished);
        let enumerated = p.expansions_pending == 0;
        let state = match p.state {
            RequestState::Aborted => "aborted",
            RequestState::Accepting => "accepted",
            RequestState::Accepted if enumerated && pending == 0 => "done",
            // Nothing final yet, and no expansion page read either.
            RequestState::Accepted if finished == 0 && (enumerated || p.targeted == 0) => {
                "accepted"
            }
            RequestState::Accepted => "running",
        };
        RequestStatus {
            request_id: p.record.id,
            event_id: p.record.event_id,
            state,
            audience: p.record.audience,
            targeted: enumerated.then_some(p.targeted),
            delivered: p.delivered,
            not_found: p.not_found,
            failed: p.failed,
            pending,
            created_at: rfc3339(p.record.created_at),
            updated_at: p.updated_at.map(rfc3339),
            errors: p.error_samples,
            deliveries: p.delivery_samples,
        }
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
