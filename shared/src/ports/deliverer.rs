//! Running an event's action for one user: the one port that talks to the outside.

use crate::domain::{DeliveryResult, Object, RequestRecord, UserState};
use async_trait::async_trait;

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
}

/// Runs an event's action for one user.
#[async_trait]
pub trait Deliverer: Send + Sync {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult;
}
