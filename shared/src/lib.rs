//! Herald's core, written once and wired by every runtime.
//!
//! The embedded `herald serve` and the AWS Lambdas differ only in the adapters they plug
//! into the [`ports`]: this crate holds the event request contract ([`request`]), the
//! domain types ([`domain`]), the HTTP [`router`] with its single error mapping
//! ([`problem`]), the accept path ([`intake`]) with idempotency and per-event rate limits
//! ([`throttle`]), the batch [`processor`] that workers run, and the admin API
//! ([`admin_api`] over the [`admin`] port, with streamed user [`import`]).

pub mod admin;
pub mod admin_api;
pub mod channels;
pub mod config;
pub mod cutoff;
pub mod domain;
pub mod error;
pub mod http_parts;
pub mod import;
pub mod intake;
pub mod log_budget;
pub mod log_deliverer;
pub mod merge;
pub mod metrics;
pub mod ports;
pub mod problem;
pub mod processor;
pub mod request;
pub mod router;
pub mod secret;
pub mod slots;
pub mod status;
pub mod template;
pub mod throttle;
pub mod worker_pool;

pub use config::{Config, Limits};
pub use error::StoreError;
pub use ports::{App, Ports};
