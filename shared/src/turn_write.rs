//! A message's user written at their send's turn, with their chat's time, where several
//! processes message one bot's users (AWS).
//!
//! A deliver job writes its users' `last_request` in one batch before it acts. The send to
//! a user on a paced channel comes at the user's turn, up to the job's time budget later,
//! so a chat time written in that batch could not space two processes' sends to one chat.
//! Where the user store keeps chat times ([`ChatClaims`]), such a user is written at the
//! turn instead, right before the send, by the update that also claims their chat: a chat
//! another process sent to less than the gap ago is refused there, and the send takes a
//! later turn. The number of writes stays one per user; only a refusal adds one. A user
//! whose delivery ended before any turn (a template that did not render) is written after
//! it, as the batch would have.

use crate::domain::{now_ms, DeliveryResult, LastRequestWrite, RequestRecord, WriteResult};
use crate::error::StoreError;
use crate::ports::{AtTurn, ChatClaim, ChatClaims, Readiness, RequestStamp, UserStore};
use async_trait::async_trait;
use std::sync::Mutex;
use std::time::Duration;

/// A request's stamp on a `last_request` written now.
pub fn stamp_now(record: &RequestRecord) -> RequestStamp {
    RequestStamp {
        request_id: record.id.clone(),
        event_id: record.event_id.clone(),
        at: now_ms(),
    }
}

/// How one delivery whose user is written at its turn ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// As the deliverer answered.
    Answered(DeliveryResult),
    /// The user was deleted before their turn: nothing was sent.
    NotFound,
}

/// What the step at the turn saw.
#[derive(Debug)]
enum Seen {
    Claimed,
    NotFound,
    Failed(StoreError),
}

/// The [`AtTurn`] step of one user's delivery.
pub struct TurnWrite<'a> {
    claims: &'a dyn ChatClaims,
    record: &'a RequestRecord,
    write: LastRequestWrite,
    seen: Mutex<Option<Seen>>,
}

impl<'a> TurnWrite<'a> {
    pub fn new(
        claims: &'a dyn ChatClaims,
        record: &'a RequestRecord,
        write: LastRequestWrite,
    ) -> TurnWrite<'a> {
        TurnWrite {
            claims,
            record,
            write,
            seen: Mutex::new(None),
        }
    }

    /// How the delivery ended, given the deliverer's `answer`: what the turn saw comes
    /// first; a delivery that never reached its turn and was not left for a new job has its
    /// user written now through `users`.
    pub async fn end(self, users: &dyn UserStore, answer: DeliveryResult) -> Ended {
        let seen = self.seen.into_inner().unwrap_or_else(|e| e.into_inner());
        match seen {
            Some(Seen::Claimed) => Ended::Answered(answer),
            Some(Seen::NotFound) => Ended::NotFound,
            Some(Seen::Failed(e)) => Ended::Answered(store_retry(&e)),
            None if answer == DeliveryResult::NotStarted => Ended::Answered(answer),
            None => {
                let stamp = stamp_now(self.record);
                let written = users
                    .write_last_request(
                        &self.record.bot_id,
                        &stamp,
                        &self.record.data,
                        std::slice::from_ref(&self.write),
                    )
                    .await;
                match written.as_deref() {
                    Ok([WriteResult::NotFound]) => Ended::NotFound,
                    Ok(_) => Ended::Answered(answer),
                    Err(e) => Ended::Answered(store_retry(e)),
                }
            }
        }
    }
}

impl std::fmt::Debug for TurnWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnWrite")
            .field("request", &self.record.id)
            .field("bm_id", &self.write.bm_id)
            .finish_non_exhaustive()
    }
}

/// A store that failed at a user's turn: the user is tried again after the backoff.
fn store_retry(e: &StoreError) -> DeliveryResult {
    DeliveryResult::Retry {
        reason: "store_unavailable".into(),
        message: format!("writing last_request failed: {e}"),
        after: None,
    }
}

#[async_trait]
impl AtTurn for TurnWrite<'_> {
    async fn ready(&self, chat_gap: Duration) -> Readiness {
        let stamp = stamp_now(self.record);
        let claimed = self
            .claims
            .write_claiming_chat(
                &self.record.bot_id,
                &stamp,
                &self.record.data,
                &self.write,
                chat_gap,
            )
            .await;
        let (seen, readiness) = match claimed {
            Ok(ChatClaim::Claimed) => (Seen::Claimed, Readiness::Go),
            Ok(ChatClaim::Busy(wait)) => return Readiness::ChatBusy(wait),
            Ok(ChatClaim::NotFound) => (Seen::NotFound, Readiness::Withheld),
            Err(e) => (Seen::Failed(e), Readiness::Withheld),
        };
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(seen);
        readiness
    }
}
