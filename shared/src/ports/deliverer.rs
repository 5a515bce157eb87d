//! Running an event's action for one user: the one port that talks to the outside.

use crate::domain::{DeliveryResult, Object, RequestRecord, UserState};
use async_trait::async_trait;
use std::time::Duration;

/// One action for one user.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub request: &'a RequestRecord,
    pub user: &'a UserState,
    /// The user's `last_request` for this request (request data merged with per-user data).
    pub data: &'a Object,
    /// When the job stops starting deliveries (its time budget, shutdown, the runtime's
    /// deadline): a deliverer that must wait before it sends stops waiting then and
    /// answers [`DeliveryResult::NotStarted`]. Once a send has begun it runs to its end.
    ///
    /// [`DeliveryResult::NotStarted`]: crate::domain::DeliveryResult::NotStarted
    pub cutoff: &'a crate::cutoff::Cutoff,
    /// What a paced channel calls at its turn, right before it sends, when the runtime
    /// gives one (see [`Deliverer::paces`]).
    pub at_turn: Option<&'a dyn AtTurn>,
}

/// Runs an event's action for one user.
#[async_trait]
pub trait Deliverer: Send + Sync {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult;

    /// Whether the delivery of `request` to `user` waits for a turn on a paced channel,
    /// and so calls its [`Delivery::at_turn`] right before it sends. Default: no.
    async fn paces(&self, _request: &RequestRecord, _user: &UserState) -> bool {
        false
    }
}

/// The runtime's step at a paced send's turn: the user's `last_request` is written then,
/// with their chat's time where the user store keeps it ([`ChatClaims`]), so that several
/// processes sending for one bot space their messages to one chat.
///
/// [`ChatClaims`]: crate::ports::ChatClaims
#[async_trait]
pub trait AtTurn: Send + Sync + std::fmt::Debug {
    /// Ready to send to a chat that must have had no other send for `chat_gap`?
    async fn ready(&self, chat_gap: Duration) -> Readiness;
}

/// The answer of [`AtTurn::ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Send now.
    Go,
    /// Another send to this chat began less than the gap ago (in another process): take a
    /// turn again once this has passed.
    ChatBusy(Duration),
    /// Do not send, and answer [`DeliveryResult::Withheld`]: the runtime has this user's
    /// outcome.
    Withheld,
}
