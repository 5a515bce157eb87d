//! The `worker` Lambda's handler: an SQS batch through the shared batch processor.
//!
//! Messages of a batch run concurrently; each is a plain call of the core's processor on
//! the job its body carries. Only messages that failed — a store error, a body that is not
//! a job, a panic (caught per message) — come back in `batchItemFailures`, so SQS redelivers
//! those alone and, after `maxReceiveCount`, moves them to the dead-letter queue. Users a
//! job could not reach yet are not a message failure: the processor re-enqueues them alone
//! with a delay. Within one invocation each request's record is read once ([`records`]).
//! A job runs while holding its lease ([`herald_aws::job_runs`]): a message SQS delivers
//! twice at once runs once, its second copy put back for when the first run's lease ends.
//!
//! A message that can never succeed (a body that is not a job, or a job meeting a corrupt
//! record) is sent to the dead-letter queue at once, with its reason, and is not a failure.
//!
//! # Layout
//!
//! - this file: configuration from the environment, the batch handler, the deadline;
//! - [`records`]: the per-invocation cache of request records.

pub mod records;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::future::join_all;
use futures::FutureExt;
use herald_aws::job_runs::RunClaim;
use herald_aws::Aws;
use herald_core::cutoff::Stop;
use herald_core::processor;
use herald_core::settings::{Runtime, Settings};
use herald_core::{App, Config};
use herald_delivery::DeliveryConfig;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// The processor's configuration in the worker, with the settings both runtimes read at
/// their AWS defaults ([`config_with`] takes them from the environment). An invocation
/// holds at most one batch (10 messages): all of them run, whatever their bot, rather than
/// bounce jobs between invocations (`jobs_per_bot` = 10). Each job starts deliveries for at
/// most 30 s by default, half the function's 60 s timeout (`template.yaml`): ten jobs of
/// one bot paced at 15 messages a second would need 67 s for their 1,000 users, and an
/// invocation cut off by its timeout records nothing and comes back to message the same
/// users again.
pub fn config() -> Config {
    config_with(&Settings::defaults(Runtime::Aws))
}

/// [`config`] with these settings.
pub fn config_with(settings: &Settings) -> Config {
    Config {
        jobs_per_bot: 10,
        ..Config::default()
    }
    .with_settings(settings)
}

/// Delivery settings: the Telegram API and the per-bot rate `HERALD_TELEGRAM_RATE` (of the
/// shared settings). Every instance paces a bot at its whole rate and spends the bot's
/// send budget in DynamoDB ([`pacer`]), so together they keep to it however many are alive.
pub fn delivery_config(settings: &Settings) -> DeliveryConfig {
    let mut config = DeliveryConfig::default().with_api("telegram", settings.telegram_api.clone());
    config.telegram_rate = settings.telegram_rate;
    config
}

/// The send scheduler of an instance: a bot's turns in lane order, each spending a slot of
/// the bot's budget shared by every instance (`herald_aws::budget`).
pub fn pacer(aws: &Aws) -> Arc<herald_core::pace::Pacer> {
    Arc::new(herald_core::pace::Pacer::with_budget(Arc::new(aws.clone())))
}

/// How long a run holds its job's lease ([`herald_aws::job_runs`]): longer than any
/// invocation lasts (the function's 60 s timeout, `template.yaml`), so that a second copy
/// of the job never runs beside it, and short enough that a copy of a job whose run died
/// comes up within two minutes.
pub const RUN_LEASE: Duration = Duration::from_secs(90);

/// Time kept between the last delivery a worker may start and its invocation's deadline,
/// besides that delivery's own timeout: for the outcome writes and the answer to SQS.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(5);

/// When an invocation stops starting deliveries: its deadline (Unix milliseconds, as the
/// Lambda context gives it) less one delivery's `timeout` and [`DEADLINE_MARGIN`]. The
/// function gets no signal at its timeout, so a send must end, and its outcome be
/// recorded, before it; each job's own time budget may stop it sooner.
///
/// A deadline that has already passed when the invocation starts is no deadline: Lambda
/// never gives one, local emulators do (`cargo lambda watch` passes its timeout as a
/// duration, others 0). Then None: each job's time budget alone bounds the invocation.
pub fn start_deliveries_until(deadline_ms: u64, now_ms: i64, timeout: Duration) -> Option<Instant> {
    let now_ms = now_ms.max(0) as u64;
    if deadline_ms <= now_ms {
        return None;
    }
    let left = Duration::from_millis(deadline_ms - now_ms);
    Some(Instant::now() + left.saturating_sub(timeout + DEADLINE_MARGIN))
}

/// Handle one SQS batch with no deadline but each job's time budget (tests, tools).
pub async fn handle(app: &App, aws: &Aws, event: SqsEvent) -> SqsBatchResponse {
    handle_until(app, aws, event, &Stop::never()).await
}

/// Handle one SQS batch, starting no delivery after `stop`; the answer lists the messages
/// to retry.
pub async fn handle_until(app: &App, aws: &Aws, event: SqsEvent, stop: &Stop) -> SqsBatchResponse {
    let mut batch_app = app.clone();
    batch_app.ports.requests = Arc::new(records::OncePerBatch::new(app.ports.requests.clone()));
    let app = &batch_app;
    let failures = join_all(event.records.into_iter().map(|message| async move {
        let id = message.message_id.clone().unwrap_or_default();
        match AssertUnwindSafe(handle_message(app, aws, &message, stop)).catch_unwind().await {
            Ok(Ok(())) => None,
            Ok(Err(reason)) => {
                tracing::warn!(message_id = %id, reason, "message failed; SQS will redeliver it");
                Some(id)
            }
            Err(_) => {
                tracing::error!(message_id = %id, "message handler panicked; SQS will redeliver it");
                Some(id)
            }
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .flatten()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// One message, in a span naming it (and, once its job is read, the job's span in it).
async fn handle_message(
    app: &App,
    aws: &Aws,
    message: &SqsMessage,
    stop: &Stop,
) -> Result<(), String> {
    let span = tracing::info_span!(
        "sqs_message",
        message_id = message.message_id.as_deref().unwrap_or_default()
    );
    async {
        let body = message.body.as_deref().unwrap_or_default();
        let job = match aws.decode(body).await {
            Ok(job) => job,
            Err(e) if e.is_corrupt() => return bury_corrupt(aws, body, None, &e).await,
            Err(e) => return Err(e.to_string()),
        };
        let job_span = processor::job_span(&job);
        run_job(app, aws, body, &job, stop)
            .instrument(job_span)
            .await
    }
    .instrument(span)
    .await
}

async fn run_job(
    app: &App,
    aws: &Aws,
    body: &str,
    job: &herald_core::domain::Job,
    stop: &Stop,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let run = match aws.start_run(job, RUN_LEASE).await {
        Ok(RunClaim::Held(run)) => run,
        Ok(RunClaim::Busy(left)) => {
            // The same message, delivered twice at once: the other run has it. Back for
            // when its lease ends, in case that run dies.
            tracing::info!(
                wait_ms = left.as_millis() as u64,
                "job already running elsewhere; put back"
            );
            return put_back(app, job, left).await;
        }
        Err(e) => return Err(e.to_string()),
    };
    let report = processor::process_until(app, job, stop).await;
    // Given back before the job is put back, so that its next run finds it free.
    if let Err(e) = aws.end_run(run).await {
        tracing::warn!(error = %e, "a job's lease was not given back; it ends by itself");
    }
    let report = match report {
        Ok(report) => report,
        Err(e) if e.is_corrupt() => return bury_corrupt(aws, body, Some(job), &e).await,
        Err(e) => return Err(e.to_string()),
    };
    if let Some(after) = report.run_again_after {
        // Not its turn yet (its request is still being accepted, its bot's slots are taken,
        // or the page before it has not recorded its cursor): put it back for later.
        put_back(app, job, after).await?;
    }
    report.log(job, started.elapsed());
    Ok(())
}

/// Enqueue `job` again, to run after `after`.
async fn put_back(
    app: &App,
    job: &herald_core::domain::Job,
    after: Duration,
) -> Result<(), String> {
    app.ports
        .queue
        .enqueue(vec![job.clone()], after)
        .await
        .map_err(|e| e.to_string())
}

/// A message that can never succeed (its body or a record it needs is corrupt) goes to the
/// dead-letter queue at once, with why, instead of being received until its
/// `maxReceiveCount`; it is then done with here.
async fn bury_corrupt(
    aws: &Aws,
    body: &str,
    job: Option<&herald_core::domain::Job>,
    error: &herald_core::StoreError,
) -> Result<(), String> {
    tracing::error!(readable = job.is_some(), error = %error, "message kept as dead at once");
    aws.bury_body(body, &error.to_string())
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn deliveries_stop_starting_a_timeout_and_a_margin_before_the_deadline() {
        let timeout = Duration::from_secs(10);
        let now_ms = 1_000_000;
        let before = Instant::now();
        let until = super::start_deliveries_until(now_ms as u64 + 60_000, now_ms, timeout).unwrap();
        let took = before.elapsed();
        let left = until.saturating_duration_since(before);
        assert!(left <= Duration::from_secs(45) + took, "{left:?}");
        assert!(left >= Duration::from_secs(44), "{left:?}");
        // A deadline too close starts nothing.
        let until = super::start_deliveries_until(now_ms as u64 + 3_000, now_ms, timeout);
        assert!(until.unwrap() <= Instant::now());
        // One already past at the start is a local emulator's placeholder, not a deadline.
        for placeholder in [0, 600_000, now_ms as u64] {
            assert_eq!(
                super::start_deliveries_until(placeholder, now_ms, timeout),
                None
            );
        }
    }

    #[test]
    fn the_shared_telegram_default_is_the_channels_api() {
        let settings = herald_core::settings::Settings::defaults(super::Runtime::Aws);
        assert_eq!(
            settings.telegram_api,
            herald_delivery::channels::telegram::API
        );
        let delivery = super::delivery_config(&settings);
        assert_eq!(
            delivery.telegram_rate, 30,
            "every instance paces at the whole rate: the shared budget keeps them to it"
        );
    }

    /// The worker function's `Timeout` in `template.yaml`.
    fn function_timeout() -> Duration {
        let template = include_str!("../../../template.yaml");
        let worker = &template[template
            .find("\n  WorkerFunction:")
            .expect("the worker function")..];
        let seconds = worker
            .lines()
            .find_map(|l| l.trim().strip_prefix("Timeout:"))
            .expect("its timeout")
            .trim()
            .parse()
            .expect("a number of seconds");
        Duration::from_secs(seconds)
    }

    #[test]
    fn a_job_time_budget_is_at_most_half_the_functions_timeout() {
        // The other half is for sends already started and the writes after them: an
        // invocation cut off by its timeout records nothing.
        assert!(super::config().job_time_budget * 2 <= function_timeout());
    }
}
