//! The ports: small traits every runtime implements with its own adapters, one file each.
//!
//! The Router, the services and the worker pool see Herald's backends only through these
//! traits and the [`App`] that holds them once. The embedded mode implements them on
//! SQLite; the AWS mode on DynamoDB and SQS. Every method that touches a backend may fail
//! with [`StoreError`], which callers treat as "try again later", never as a client error.
//!
//! [`StoreError`]: crate::error::StoreError

pub mod admin;
mod budget;
mod deliverer;
mod directory;
mod intake;
mod open_requests;
mod queue;
mod requests;
mod throttle;
mod users;

pub use admin::AdminPorts;
pub use budget::SendBudget;
pub use deliverer::{AtTurn, Deliverer, Delivery, Readiness};
pub use directory::EventDirectory;
pub use intake::{Intake, Recorded, Remember, Remembered, IDEMPOTENCY_WINDOW_MS};
pub use open_requests::{OpenRequest, OpenRequests};
pub use queue::{JobQueue, LeaseFilter, LeaseQueue, Leased};
pub use requests::{Expansion, RequestLog};
pub use throttle::Throttle;
pub use users::{ChatClaim, ChatClaims, RequestStamp, UserPage, UserStore};

// Kept in `domain` (the admin ports read them too); named here where they were first.
pub use crate::domain::{ErrorSample, RequestProgress};

use crate::channels::Channels;
use crate::config::Config;
use std::sync::Arc;

/// The storage ports of one runtime.
#[derive(Clone)]
pub struct Ports {
    pub events: Arc<dyn EventDirectory>,
    pub users: Arc<dyn UserStore>,
    pub requests: Arc<dyn RequestLog>,
    pub intake: Arc<dyn Intake>,
    pub queue: Arc<dyn JobQueue>,
    /// The bots' open bulk requests, for the work ahead an ETA counts.
    pub open: Arc<dyn OpenRequests>,
    pub admin: AdminPorts,
    pub throttle: Arc<dyn Throttle>,
    /// Chat times kept on the users, where several processes message one bot's users
    /// (AWS); None where one process spaces its chats itself.
    pub chat_claims: Option<Arc<dyn ChatClaims>>,
}

impl Ports {
    /// Every port on one adapter that implements them all, rate limits on `throttle`.
    pub fn all<T>(store: Arc<T>, throttle: Arc<dyn Throttle>) -> Ports
    where
        T: EventDirectory
            + UserStore
            + RequestLog
            + Intake
            + JobQueue
            + OpenRequests
            + admin::BotAdmin
            + admin::EventAdmin
            + admin::UserAdmin
            + admin::RequestAdmin
            + admin::DeadLetterAdmin
            + 'static,
    {
        Ports {
            events: store.clone(),
            users: store.clone(),
            requests: store.clone(),
            intake: store.clone(),
            queue: store.clone(),
            open: store.clone(),
            admin: AdminPorts::all(store),
            throttle,
            chat_claims: None,
        }
    }
}

/// The ports and configuration a runtime wires together, shared by the Router and workers.
#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub ports: Ports,
    pub deliverer: Arc<dyn Deliverer>,
    /// The delivery channels this runtime registered: what bots' connections may hold.
    pub channels: Channels,
    /// Deliver jobs in flight per bot in this process (`config.jobs_per_bot`).
    pub slots: Arc<crate::slots::BotSlots>,
    /// How many users `everyone` of a bot means, counted for the ETAs of requests not read
    /// yet, for a while.
    pub audiences: Arc<crate::audience_counts::AudienceCounts>,
}

impl App {
    /// An App over these ports, its per-bot slots sized from `config`.
    pub fn new(
        config: Config,
        ports: Ports,
        deliverer: Arc<dyn Deliverer>,
        channels: Channels,
    ) -> App {
        App {
            channels,
            slots: Arc::new(crate::slots::BotSlots::new(config.jobs_per_bot)),
            audiences: Arc::default(),
            config,
            ports,
            deliverer,
        }
    }
}
