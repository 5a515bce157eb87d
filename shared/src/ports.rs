//! The ports: small traits every runtime implements with its own adapters.
//!
//! The Router and the batch processor see Herald's backends only through these traits and
//! the [`App`] that bundles them. The embedded mode implements them on SQLite; the AWS mode
//! on DynamoDB and SQS. Every method that touches a backend may fail with [`StoreError`],
//! which callers treat as "try again later", never as a client error.

use crate::admin::AdminStore;
use crate::config::Config;
use crate::domain::{
    Bot, DeliveryResult, Event, Job, LastRequestWrite, Object, Outcome, PlatformFilter,
    RequestRecord, RequestState, UserRef, UserState, WriteResult,
};
use crate::error::StoreError;
use crate::throttle::Throttle;
use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

// Kept in `domain` (the admin port reads them too); named here where they were first.
pub use crate::domain::{ErrorSample, RequestProgress};

/// Looks events and bots up by id.
#[async_trait]
pub trait EventDirectory: Send + Sync {
    async fn event(&self, event_id: &str) -> Result<Option<Event>, StoreError>;

    /// A bot's connections; a bot never configured has none (`Bot::default` with its id).
    async fn bot(&self, bot_id: &str) -> Result<Bot, StoreError>;
}

/// Which request a `last_request` write comes from; newer means a greater `request_id`.
#[derive(Debug, Clone)]
pub struct RequestStamp {
    pub request_id: String,
    pub event_id: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// One page of a shard of a bot's users.
#[derive(Debug, Clone)]
pub struct UserPage {
    pub users: Vec<UserState>,
    /// Where the next page starts; None when the shard is exhausted.
    pub next: Option<String>,
}

/// Bot users' state. Herald reads users and writes only its `last_request*` attributes.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Look users up in one bot: one answer per reference, in order; None for unknown.
    async fn resolve(
        &self,
        bot_id: &str,
        users: &[UserRef],
    ) -> Result<Vec<Option<UserState>>, StoreError>;

    /// Store each write's data (or `data` when it has none) as `last_request` (with
    /// `last_request_at`, `last_request_id`, `last_event_id`) on its user, unless the user
    /// holds a newer request. Never creates users and never touches other attributes.
    /// One result per write, in order.
    async fn write_last_request(
        &self,
        bot_id: &str,
        stamp: &RequestStamp,
        data: &Object,
        writes: &[LastRequestWrite],
    ) -> Result<Vec<WriteResult>, StoreError>;

    /// Mark these users as having blocked the bot (a platform answered so).
    async fn mark_blocked(&self, bot_id: &str, bm_ids: &[String]) -> Result<(), StoreError>;

    /// How many users `everyone` means right now.
    async fn count(&self, bot_id: &str, platform: &PlatformFilter) -> Result<u64, StoreError>;

    /// Number of shards a bot's users are spread over (one `expand` job each).
    fn shards(&self) -> u32;

    /// Up to `limit` users of one shard after `cursor`.
    async fn page(
        &self,
        bot_id: &str,
        platform: &PlatformFilter,
        shard: u32,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<UserPage, StoreError>;
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The answer given to the first request with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub request_id: String,
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
    pub event_id: String,
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
    async fn remembered(&self, event_id: &str, key: &str)
        -> Result<Option<Remembered>, StoreError>;

    /// How many jobs of `bot_id` wait in the queue, counting no further than `up_to`
    /// (it may be approximate, and a little stale); 0 where the queue cannot tell.
    async fn backlog(&self, bot_id: &str, up_to: u64) -> Result<u64, StoreError>;

    /// Give up on a request whose accept died midway: mark it `aborted` if it is still
    /// `accepting`, and free the idempotency key if it still names it, so that a retry is
    /// accepted anew. (A store that accepts in one transaction never leaves one behind.)
    async fn abandon(&self, event_id: &str, key: &str, request_id: &str) -> Result<(), StoreError>;
}

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
    async fn progress(&self, request_id: &str) -> Result<Option<RequestProgress>, StoreError>;

    /// The event a request belongs to, read without its record (whose `data` may be
    /// 256 KiB): what the status route needs to check a secret before reading more.
    async fn event_of(&self, request_id: &str) -> Result<Option<String>, StoreError>;

    /// The record and state of a request, without its counters.
    async fn record(
        &self,
        request_id: &str,
    ) -> Result<Option<(RequestRecord, RequestState)>, StoreError>;

    /// Which of these user keys already have a final outcome in this request.
    async fn finished(
        &self,
        request_id: &str,
        user_keys: &[String],
    ) -> Result<HashSet<String>, StoreError>;

    /// Record final outcomes by user key and count them. A key that already has an outcome
    /// is left as it is and not counted again.
    async fn record_outcomes(
        &self,
        request_id: &str,
        outcomes: &[(String, Outcome)],
    ) -> Result<(), StoreError>;

    async fn expansion(&self, request_id: &str, shard: u32) -> Result<Expansion, StoreError>;

    /// Move a shard's expansion from `from` to `to` (None: exhausted), adding `added` users
    /// to `targeted`. False, changing nothing, when the shard is no longer at `from`.
    async fn advance_expansion(
        &self,
        request_id: &str,
        shard: u32,
        from: Option<&str>,
        to: Option<&str>,
        added: u64,
    ) -> Result<bool, StoreError>;
}

/// Where follow-up jobs go: the pages of an expansion and retries of failed users.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, jobs: Vec<Job>, delay: Duration) -> Result<(), StoreError>;

    /// Keep `job` as dead (the dead-letter queue), with why, without running it.
    async fn bury(&self, job: Job, reason: &str) -> Result<(), StoreError>;
}

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

/// The storage ports of one runtime.
#[derive(Clone)]
pub struct Ports {
    pub events: Arc<dyn EventDirectory>,
    pub users: Arc<dyn UserStore>,
    pub requests: Arc<dyn RequestLog>,
    pub intake: Arc<dyn Intake>,
    pub queue: Arc<dyn JobQueue>,
    pub admin: Arc<dyn AdminStore>,
    pub throttle: Arc<dyn Throttle>,
}

impl Ports {
    /// Every port on one adapter that implements them all, rate limits on `throttle`.
    pub fn all<T>(store: Arc<T>, throttle: Arc<dyn Throttle>) -> Ports
    where
        T: EventDirectory + UserStore + RequestLog + Intake + JobQueue + AdminStore + 'static,
    {
        Ports {
            events: store.clone(),
            users: store.clone(),
            requests: store.clone(),
            intake: store.clone(),
            queue: store.clone(),
            admin: store,
            throttle,
        }
    }
}

/// The ports and configuration a runtime wires together, shared by the Router and workers.
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub events: Arc<dyn EventDirectory>,
    pub users: Arc<dyn UserStore>,
    pub requests: Arc<dyn RequestLog>,
    pub intake: Arc<dyn Intake>,
    pub queue: Arc<dyn JobQueue>,
    pub admin: Arc<dyn AdminStore>,
    pub throttle: Arc<dyn Throttle>,
    pub deliverer: Arc<dyn Deliverer>,
    /// Deliver jobs in flight per bot in this process (`config.jobs_per_bot`).
    pub slots: Arc<crate::slots::BotSlots>,
}

impl App {
    /// An App over these ports, its per-bot slots sized from `config`.
    pub fn new(config: Config, ports: Ports, deliverer: Arc<dyn Deliverer>) -> App {
        App {
            slots: Arc::new(crate::slots::BotSlots::new(config.jobs_per_bot)),
            config,
            events: ports.events,
            users: ports.users,
            requests: ports.requests,
            intake: ports.intake,
            queue: ports.queue,
            admin: ports.admin,
            throttle: ports.throttle,
            deliverer,
        }
    }
}
