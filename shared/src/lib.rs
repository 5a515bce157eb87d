//! Herald's core, written once and wired by every runtime.
//!
//! The embedded `herald serve` and the AWS Lambdas differ only in the adapters they plug
//! into the [`ports`]. Everything else — the contract, the rules, the HTTP API, the
//! processor — is here, once.
//!
//! # Layout
//!
//! Layers, each using only those below it (`tests/layering.rs` fails on a cycle):
//!
//! - **domain**: [`domain`] (users, events, requests, jobs, outcomes), [`channels`] (what a
//!   delivery channel is, a bot's connections), [`message`] (what a `message` action
//!   sends, and how it fits a channel), [`ids`] (one rule per kind of id),
//!   [`error`], [`secret`], [`cutoff`].
//! - **rules over the domain**: [`request`] (the event request contract), [`template`],
//!   [`throttle`] (GCRA), [`admin`] (the admin API's documents), [`merge`], [`config`],
//!   [`lane`] (which lane a request runs in), [`pace`] (a bot's sends in lane order at its
//!   rate),
//!   [`settings`] (every `HERALD_*` setting, parsed once for both runtimes).
//! - **ports**: [`ports`], one file per trait the adapters implement, and the [`App`] that
//!   holds them.
//! - **services**: [`intake`] (the accept path), [`processor`] (deliver and expand jobs),
//!   [`turn_write`] (a message's user written at its turn), [`worker_pool`] (a pull queue's
//!   workers), [`status`] and [`audience_counts`], [`import`],
//!   [`metrics`].
//! - **HTTP**: [`http`] — the route table with each route's [`http::Auth`], the public
//!   routes, the admin routes per resource, the extractors — and [`problem`], the one
//!   mapping of errors to problem+json.

pub mod admin;
pub mod audience_counts;
pub mod budget;
pub mod channels;
pub mod config;
pub mod cutoff;
pub mod domain;
pub mod error;
pub mod http;
pub mod ids;
pub mod import;
pub mod intake;
pub mod lane;
pub mod log_budget;
pub mod log_deliverer;
pub mod merge;
pub mod message;
pub mod metrics;
pub mod pace;
pub mod ports;
pub mod problem;
pub mod processor;
pub mod request;
pub mod samples;
pub mod schedule;
pub mod secret;
pub mod settings;
pub mod slots;
pub mod status;
pub mod template;
pub mod throttle;
pub mod turn_write;
pub mod worker_pool;

pub use config::{Config, Limits};
pub use error::StoreError;
pub use ports::{App, Ports};
