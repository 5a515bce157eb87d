//! The behaviour both runtimes promise, written once: each rule is an async function
//! generic over a [`Runtime`], and [`behaviour_suite!`] instantiates every rule as a test
//! for one runtime. The embedded runtime runs the suite in `tests/behaviour.rs`, the AWS
//! runtime (DynamoDB Local and the SQS emulator) in `functions/worker/tests/behaviour.rs`.
//!
//! A rule talks to a runtime as its users do: event requests and admin calls over HTTP
//! (the Router, or the `api` Lambda handler), users written as the bot engine writes them,
//! jobs run as the runtime's workers run them. What only one store has (WAL, migrations,
//! claim checks, SQS batches) is tested beside its adapter, not here.
//!
//! # Layout
//! - [`Runtime`]: what a runtime offers the suite; [`Client`]: the HTTP calls rules make.
//! - `contract`, `intake`, `processor`, `admin`, `manage`: the rules, by what they are
//!   about.

mod admin;
mod client;
mod contract;
mod intake;
mod manage;
mod processor;

pub use admin::*;
pub use client::{Answer, Client, Event};
pub use contract::*;
pub use intake::*;
pub use manage::*;
pub use processor::*;

use async_trait::async_trait;
use herald_core::ports::Deliverer;
use herald_core::Config;
use std::sync::Arc;

/// The admin token every runtime under the suite accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A runtime as the suite drives it.
#[async_trait]
pub trait Runtime: Sized + Send + Sync + 'static {
    /// A job as the runtime's queue hands it to a worker (a leased job, an SQS message).
    type Job: Clone + Send + Sync;

    /// The runtime's own defaults.
    fn defaults() -> Config;

    /// The runtime's defaults with retries that do not wait (the suite skips backoff).
    fn config() -> Config {
        Config {
            base_backoff: std::time::Duration::ZERO,
            max_backoff: std::time::Duration::ZERO,
            ..Self::defaults()
        }
    }

    /// A fresh, empty runtime with `config` (the suite sets its admin token) whose actions
    /// go to `deliverer`.
    async fn start(config: Config, deliverer: Arc<dyn Deliverer>) -> Self;

    /// One HTTP call as a client makes it.
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer;

    /// Write users as the bot engine does — `(platform, platform id, state id)` — each with
    /// an attribute of the engine's own, `step: "cart"`.
    async fn engine_users(&self, bot: &str, users: &[(String, String, String)]);

    /// The engine's `step` attribute of a user, as stored.
    async fn engine_step(&self, bot: &str, bm_id: &str) -> Option<String>;

    /// Users of `bot` stored, whoever wrote them.
    async fn user_count(&self, bot: &str) -> usize;

    /// Take every job visible now, hidden from other workers while the test holds them.
    async fn take(&self) -> Vec<Self::Job>;

    /// Run `jobs` as the runtime's worker does; settled (acknowledged, released, dead
    /// lettered) when `settle`, or left as they were, as a redelivery finds them.
    async fn work(&self, jobs: Vec<Self::Job>, settle: bool);

    /// Run the workers until no job is left, delayed ones included.
    async fn drain(&self);

    /// Jobs waiting in the queue (visible, delayed or in flight).
    async fn queued(&self) -> usize;
}

/// A fresh runtime with its defaults changed by `change`, delivering to `deliverer`.
pub async fn runtime_with<R: Runtime>(
    change: impl FnOnce(&mut Config),
    deliverer: Arc<dyn Deliverer>,
) -> Client<R> {
    let mut config = R::config();
    change(&mut config);
    config.admin_token_hash = Some(herald_core::secret::hash(ADMIN_TOKEN));
    Client {
        runtime: R::start(config, deliverer).await,
    }
}

/// A fresh runtime with its defaults, delivering to a log.
pub async fn runtime<R: Runtime>() -> Client<R> {
    runtime_with::<R>(
        |_| {},
        Arc::new(herald_core::log_deliverer::LogDeliverer::default()),
    )
    .await
}

/// `(platform, id, bm-<platform>-<id>)` for each id: users as the engine would write them.
pub fn users_on(
    platform: &str,
    ids: impl IntoIterator<Item = u32>,
) -> Vec<(String, String, String)> {
    ids.into_iter()
        .map(|i| {
            (
                platform.to_string(),
                i.to_string(),
                format!("bm-{platform}-{i}"),
            )
        })
        .collect()
}

/// Every rule of the suite as a `#[tokio::test]` for one runtime type.
#[macro_export]
macro_rules! behaviour_suite {
    ($runtime:ty) => {
        $crate::behaviour_suite!(@rules $runtime;
            // the contract
            the_seed_documents_requests_reach_their_users,
            per_user_data_is_merged_over_the_request_data,
            unknown_users_are_not_found_and_engine_attributes_survive,
            // the event URL
            accepted_requests_answer_202_with_id_status_url_and_targeted,
            a_bearer_secret_works_like_the_secret_in_the_path,
            an_unknown_event_and_a_wrong_secret_are_the_same_404,
            a_disabled_event_answers_403_and_does_nothing,
            invalid_requests_are_422_with_field_paths,
            a_request_runs_in_the_lane_it_names_or_its_audiences_default,
            an_events_default_lane_applies_where_it_fits,
            a_dry_run_counts_the_audience_and_changes_nothing,
            a_scheduled_request_is_sent_at_its_time_and_can_be_cancelled_before,
            a_request_not_started_yet_has_an_eta_from_its_start_and_the_bots_rate,
            a_broadcasts_eta_counts_the_bulk_work_ahead_of_it,
            a_broadcasts_eta_reads_past_bulk_requests_already_final,
            the_status_document_needs_the_events_secret_by_bearer_or_path,
            // the processor
            an_older_request_never_overwrites_a_newer_one,
            a_redelivered_job_does_not_repeat_a_success_or_count_twice,
            retryable_failures_are_retried_alone_until_they_succeed,
            retries_stop_at_the_attempt_limit_and_the_job_is_dead_lettered,
            permanent_failures_are_final_at_once_and_last_request_is_stored,
            error_samples_keep_at_most_twenty_and_five_of_a_reason,
            everyone_reaches_over_ten_thousand_users_on_one_platform_and_on_any,
            // the admin API
            a_rotated_secret_works_during_its_grace_period_only,
            an_idempotency_key_answers_its_first_answer_and_enqueues_once,
            over_an_events_rate_limit_is_429_with_retry_after_and_nothing_enqueued,
            dead_letters_are_listed_redriven_to_completion_and_purged,
            a_cancelled_request_counts_its_users_cancelled_and_writes_nobody,
            // managing bots, events and users
            without_the_admin_token_nothing_is_answered_or_changed,
            bots_events_and_users_are_managed_through_the_admin_api
        );
    };
    (@rules $runtime:ty; $($rule:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rule() {
                $crate::$rule::<$runtime>().await;
            }
        )*
    };
}
