//! The batch processor: what a worker does with one job, in any runtime.
//!
//! `deliver`: skip users that already have a final outcome in this request (redelivery),
//! look the rest up (unknown users are `not_found`, never created), write `last_request`
//! monotonically, run the event's action through the [`Deliverer`], re-enqueue the users
//! whose failure is retryable — alone, with backoff — and record every final outcome as
//! its delivery ends (in batches of at most 20 users or 200 ms), so a crash repeats only
//! the sends in flight and one unrecorded batch. Users still failing at the attempt limit
//! are counted `failed` and kept as a dead job. A job starts deliveries until its
//! [`Cutoff`]: `Config::job_time_budget`, shutdown, or the runtime's deadline; the users
//! it did not reach by then go on in a new job, so no job outlives its lease however slow
//! its bot's pace, and a stopping process lets its sends end instead of cutting them off.
//! A cancelled request's deliver jobs count their remaining users `cancelled`; its expand
//! jobs close their shard without reading it. A job of a scheduled request that comes up
//! before its `send_at` runs again later ([`crate::schedule`]), having done nothing.
//! `expand`: read one page of a shard of the bot's users, enqueue their `deliver` jobs and
//! the next page, then advance the shard's cursor (a repeated page is recognised and
//! skipped; a page that runs before the page that enqueued it has advanced the cursor
//! waits for it). Store failures surface as [`StoreError`] so the queue retries the whole job.
//!
//! [`Deliverer`]: crate::ports::Deliverer

use crate::cutoff::{Cutoff, Stop};
use crate::domain::{
    now_ms, Action, DeliveryResult, Job, JobKind, JobUser, LastRequestWrite, Object, Outcome,
    RequestRecord, RequestState, UserRef, UserState, WriteResult, ACCEPTING_TIMEOUT_MS, BLOCKED,
    MIGRATED_CHAT_ID,
};
use crate::error::StoreError;
use crate::ids::{BotId, RequestId};
use crate::merge::merge_patch;
use crate::ports::{App, AtTurn, Delivery};
use crate::turn_write::{stamp_now, Ended, TurnWrite};
use futures::stream::{self, StreamExt};
use std::cmp::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What processing a job did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct JobReport {
    pub delivered: u64,
    pub not_found: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Users re-enqueued for another attempt.
    pub retried: u64,
    /// Users not reached within the job's time budget, handed to a new job.
    pub continued: u64,
    /// Users skipped because they were already final (a redelivered job).
    pub skipped: u64,
    /// Deliver jobs enqueued by an expansion page.
    pub enqueued: u64,
    /// The job itself must run again after this long: its request is still being accepted
    /// or not yet due, its bot's slots are taken, or the page before it has not recorded
    /// its cursor.
    pub run_again_after: Option<Duration>,
}

impl JobReport {
    /// Count recorded outcomes.
    fn add_outcomes(&mut self, outcomes: &[(String, Outcome)]) {
        for (_, outcome) in outcomes {
            match outcome {
                Outcome::Delivered { .. } => self.delivered += 1,
                Outcome::NotFound => self.not_found += 1,
                Outcome::Failed { .. } => self.failed += 1,
                Outcome::Cancelled => self.cancelled += 1,
            }
        }
    }

    /// The one log line of a finished job (counts only: never data or user ids). It names
    /// the job itself too, besides its span ([`job_span`]): it is the line a log query
    /// looks for.
    pub fn log(&self, job: &Job, elapsed: Duration) {
        tracing::info!(
            job_id = %job.id,
            request_id = %job.request_id,
            kind = job.kind_name(),
            attempt = job.attempt,
            delivered = self.delivered,
            not_found = self.not_found,
            failed = self.failed,
            cancelled = self.cancelled,
            retried = self.retried,
            continued = self.continued,
            skipped = self.skipped,
            enqueued = self.enqueued,
            ms = elapsed.as_millis() as u64,
            "job done"
        );
    }
}

/// How long a job waits when its bot already has `jobs_per_bot` jobs in flight here.
const BOT_BUSY_WAIT: Duration = Duration::from_millis(200);

/// How long a job waits for a request that is still being accepted, once it has looked
/// again [`ACCEPTING_POLLS`] times in process.
const ACCEPTING_WAIT: Duration = Duration::from_secs(1);

/// A job that meets a request still being accepted looks again this often, this many
/// times, before it is put back: the accept that queued it marks the request accepted
/// milliseconds later (AWS's two-phase accept), and a queue's shortest delay is far longer
/// (SQS: a whole second, which an order confirmation would otherwise wait).
const ACCEPTING_POLL: Duration = Duration::from_millis(20);
const ACCEPTING_POLLS: u32 = 10;

/// How long an expansion page waits for the page before it to record its cursor: a tenth
/// of how long the page's job has existed, between these bounds. The page before is
/// usually milliseconds from recording it, so the first waits are short; a page whose
/// predecessor's job died waits until an operator redrives that job, and then it looks
/// again every 30 s rather than every 20 ms.
const PAGE_BEFORE_WAIT: (Duration, Duration) = (Duration::from_millis(20), Duration::from_secs(30));

/// [`PAGE_BEFORE_WAIT`] for the page of job `job_id` (a ULID: it tells when the job was
/// made).
fn page_before_wait(job_id: &str) -> Duration {
    let made = ulid::Ulid::from_string(job_id)
        .map(|id| id.timestamp_ms() as i64)
        .unwrap_or_else(|_| now_ms());
    let waited = Duration::from_millis((now_ms() - made).max(0) as u64);
    (waited / 10).clamp(PAGE_BEFORE_WAIT.0, PAGE_BEFORE_WAIT.1)
}

/// Process one job against `app`'s ports, stopping deliveries at its time budget only.
/// The span every runtime runs a job in: its log lines carry `job_id`, `request_id` and
/// `kind` from it instead of repeating them.
pub fn job_span(job: &Job) -> tracing::Span {
    tracing::info_span!(
        "job",
        job_id = %job.id,
        request_id = %job.request_id,
        kind = job.kind_name()
    )
}

pub async fn process(app: &App, job: &Job) -> Result<JobReport, StoreError> {
    process_until(app, job, &Stop::never()).await
}

/// Process one job; its deliveries also stop starting at `stop` (shutdown, the runtime's
/// deadline), and those started run to their end with their outcomes recorded.
pub async fn process_until(app: &App, job: &Job, stop: &Stop) -> Result<JobReport, StoreError> {
    let report = run(app, job, stop).await?;
    if report.run_again_after.is_none() {
        report.count(job.kind_name());
    }
    Ok(report)
}

/// The record and state of `request_id`, looked at again in process while it is still
/// being accepted (at most [`ACCEPTING_POLLS`] times).
async fn record_once_accepted(
    app: &App,
    request_id: &RequestId,
) -> Result<Option<(RequestRecord, RequestState)>, StoreError> {
    let mut found = app.ports.requests.record(request_id).await?;
    for _ in 0..ACCEPTING_POLLS {
        match &found {
            Some((record, RequestState::Accepting))
                if now_ms() - record.created_at <= ACCEPTING_TIMEOUT_MS =>
            {
                tokio::time::sleep(ACCEPTING_POLL).await;
                found = app.ports.requests.record(request_id).await?;
            }
            _ => break,
        }
    }
    Ok(found)
}

async fn run(app: &App, job: &Job, stop: &Stop) -> Result<JobReport, StoreError> {
    let Some((record, state)) = record_once_accepted(app, &job.request_id).await? else {
        tracing::warn!("job for an unknown request dropped");
        return Ok(JobReport::default());
    };
    match state {
        RequestState::Accepting if now_ms() - record.created_at > ACCEPTING_TIMEOUT_MS => {
            tracing::warn!("job of a request never accepted dropped");
            return Ok(JobReport::default());
        }
        RequestState::Accepting => {
            return Ok(JobReport {
                run_again_after: Some(ACCEPTING_WAIT),
                ..JobReport::default()
            })
        }
        RequestState::Aborted => return Ok(JobReport::default()),
        RequestState::Cancelled => return cancelled(app, &record, job).await,
        RequestState::Accepted => {}
    }
    let due_in = record.due_in(now_ms());
    if !due_in.is_zero() {
        // Scheduled, and come up early (a queue that cannot hold it back that long): back
        // for the rest of the wait, or a part of it.
        return Ok(JobReport {
            run_again_after: Some(crate::schedule::recheck_after(due_in)),
            ..JobReport::default()
        });
    }
    match &job.kind {
        JobKind::Deliver { users } => {
            // A bot with all its slots in this lane in use waits its turn without holding
            // this worker.
            let Some(_slot) = app.slots.try_take(&record.bot_id, record.lane) else {
                return Ok(JobReport {
                    run_again_after: Some(BOT_BUSY_WAIT),
                    ..JobReport::default()
                });
            };
            deliver(app, &record, job.attempt, users, stop).await
        }
        JobKind::Expand { shard, cursor } => {
            expand(app, &job.id, &record, *shard, cursor.as_deref()).await
        }
    }
}

impl JobReport {
    /// Count a processed job of `kind` and its users' outcomes in the metrics.
    fn count(&self, kind: &'static str) {
        use crate::metrics::{CONTINUED, JOB_ATTEMPTS, RETRIES, USERS};
        metrics::counter!(JOB_ATTEMPTS, "kind" => kind).increment(1);
        for (outcome, count) in [
            ("delivered", self.delivered),
            ("not_found", self.not_found),
            ("failed", self.failed),
            ("cancelled", self.cancelled),
        ] {
            if count > 0 {
                metrics::counter!(USERS, "outcome" => outcome).increment(count);
            }
        }
        if self.retried > 0 {
            metrics::counter!(RETRIES).increment(self.retried);
        }
        if self.continued > 0 {
            metrics::counter!(CONTINUED).increment(self.continued);
        }
    }
}

/// A user being worked on in a deliver job.
struct Live {
    key: String,
    entry: JobUser,
    state: UserState,
    data: Option<Object>,
    /// Written at the send's turn ([`crate::turn_write`]), not in the job's batch.
    at_turn: bool,
}

impl Live {
    fn write(&self) -> LastRequestWrite {
        LastRequestWrite {
            bm_id: self.state.bm_id.clone(),
            data: self.data.clone(),
        }
    }
}

/// A deliver job: the users not yet finished are looked up, their `last_request` written,
/// the action run for each, final outcomes recorded as they end, and the rest settled
/// (retried, continued in a new job, or buried).
async fn deliver(
    app: &App,
    record: &RequestRecord,
    attempt: u32,
    users: &[JobUser],
    stop: &Stop,
) -> Result<JobReport, StoreError> {
    let keys: Vec<String> = users.iter().map(|u| u.user.key()).collect();
    let finished = app.ports.requests.finished(&record.id, &keys).await?;
    let todo: Vec<(String, &JobUser)> = keys
        .into_iter()
        .zip(users)
        .filter(|(key, _)| !finished.contains(key))
        .collect();
    let skipped = (users.len() - todo.len()) as u64;
    if todo.is_empty() {
        return Ok(JobReport {
            skipped,
            ..JobReport::default()
        });
    }
    let (mut outcomes, live) = resolve(app, record, todo).await?;
    let (at_turn, batched) = split_at_turn(app, record, live).await;
    let mut acting = write_last_request(app, record, batched, &mut outcomes).await?;
    acting.extend(at_turn);

    // A delivery not started by the cutoff is not started at all: its user goes on in a
    // new job. One started runs to its end and its outcome is recorded, so nobody is
    // messaged twice. The budget counts from here: however slow the reads and writes
    // before it, a job always gets to try its deliveries.
    let cutoff = stop.cutoff(Instant::now() + app.config.job_time_budget);
    let (finals, finals_rx) = mpsc::unbounded_channel::<Final>();
    for (key, outcome) in outcomes {
        let _ = finals.send(Final::plain(key, outcome));
    }
    let (unsettled, recorded) = tokio::join!(
        run_deliveries(app, record, acting, finals, &cutoff),
        record_as_they_end(app, &record.id, &record.bot_id, finals_rx, &cutoff)
    );
    let mut report = JobReport {
        skipped,
        ..recorded?
    };
    settle(app, record, attempt, unsettled, &mut report).await?;
    Ok(report)
}

/// The users of `todo` as the store knows them: those not found get their outcome now.
async fn resolve(
    app: &App,
    record: &RequestRecord,
    todo: Vec<(String, &JobUser)>,
) -> Result<(Vec<(String, Outcome)>, Vec<Live>), StoreError> {
    let refs: Vec<UserRef> = todo.iter().map(|(_, u)| u.user.clone()).collect();
    let found = app.ports.users.resolve(&record.bot_id, &refs).await?;
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    let mut live: Vec<Live> = Vec::with_capacity(todo.len());
    for ((key, entry), state) in todo.into_iter().zip(found) {
        match state {
            None => outcomes.push((key, Outcome::NotFound)),
            Some(state) => live.push(Live {
                key,
                data: entry.patch.as_ref().map(|p| merge_patch(&record.data, p)),
                entry: entry.clone(),
                state,
                at_turn: false,
            }),
        }
    }
    Ok((outcomes, live))
}

/// The users of `live` written at their send's turn (with their chat's time), and those
/// written now in one batch: the first are a message's users on a paced channel, where the
/// user store keeps chat times; a user who blocked the bot is written now and skipped.
async fn split_at_turn(
    app: &App,
    record: &RequestRecord,
    live: Vec<Live>,
) -> (Vec<Live>, Vec<Live>) {
    if app.ports.chat_claims.is_none() || !matches!(record.action, Action::Message(_)) {
        return (Vec::new(), live);
    }
    let (mut at_turn, mut batched) = (Vec::new(), Vec::new());
    for mut l in live {
        if !l.state.blocked && app.deliverer.paces(record, &l.state).await {
            l.at_turn = true;
            at_turn.push(l);
        } else {
            batched.push(l);
        }
    }
    (at_turn, batched)
}

/// Write each live user's `last_request`; the users to act on. Those deleted meanwhile, or
/// who blocked the bot before a message, get their outcome in `outcomes` instead.
async fn write_last_request(
    app: &App,
    record: &RequestRecord,
    live: Vec<Live>,
    outcomes: &mut Vec<(String, Outcome)>,
) -> Result<Vec<Live>, StoreError> {
    if live.is_empty() {
        return Ok(live);
    }
    let stamp = stamp_now(record);
    let writes: Vec<LastRequestWrite> = live.iter().map(Live::write).collect();
    let written = app
        .ports
        .users
        .write_last_request(&record.bot_id, &stamp, &record.data, &writes)
        .await?;
    let messages = matches!(record.action, Action::Message(_));
    let mut acting = Vec::with_capacity(live.len());
    for (l, result) in live.into_iter().zip(written) {
        match result {
            // A user deleted since the lookup.
            WriteResult::NotFound => outcomes.push((l.key, Outcome::NotFound)),
            // They blocked the bot before: a message cannot reach them.
            WriteResult::Applied | WriteResult::Stale if messages && l.state.blocked => outcomes
                .push((
                    l.key,
                    Outcome::Failed {
                        reason: BLOCKED.into(),
                        message: "skipped: this user blocked the bot earlier".into(),
                    },
                )),
            // Stale: a newer request's data stays; this event still happened, so act on it.
            WriteResult::Applied | WriteResult::Stale => acting.push(l),
        }
    }
    Ok(acting)
}

/// A delivery that ended without a final outcome: to retry, or not started.
type Unsettled = (JobUser, String, DeliveryResult);

/// Run the action for each of `acting`, a few at once, none started past `cutoff`. Final
/// outcomes go to `finals` as each delivery ends; the others are returned.
async fn run_deliveries(
    app: &App,
    record: &RequestRecord,
    acting: Vec<Live>,
    finals: mpsc::UnboundedSender<Final>,
    cutoff: &Cutoff,
) -> Vec<Unsettled> {
    let mut results = stream::iter(acting)
        .map(|l| async move {
            if cutoff.is_reached() {
                return (l, Ended::Answered(DeliveryResult::NotStarted));
            }
            let data = l.data.as_ref().unwrap_or(&record.data);
            let turn_write = app
                .ports
                .chat_claims
                .as_deref()
                .filter(|_| l.at_turn)
                .map(|claims| TurnWrite::new(claims, record, l.write()));
            let delivery = Delivery {
                request: record,
                user: &l.state,
                data,
                cutoff,
                at_turn: turn_write.as_ref().map(|t| t as &dyn AtTurn),
            };
            let started = std::time::Instant::now();
            let result = app.deliverer.deliver(&delivery).await;
            if !matches!(result, DeliveryResult::NotStarted) {
                metrics::histogram!(crate::metrics::DELIVERY_SECONDS)
                    .record(started.elapsed().as_secs_f64());
            }
            let ended = match turn_write {
                Some(turn_write) => turn_write.end(app.ports.users.as_ref(), result).await,
                None => Ended::Answered(result),
            };
            (l, ended)
        })
        .buffer_unordered(app.config.delivery_concurrency.max(1));
    let mut unsettled = Vec::new();
    while let Some((l, ended)) = results.next().await {
        let result = match ended {
            Ended::Answered(result) => result,
            Ended::NotFound => {
                let _ = finals.send(Final::plain(l.key, Outcome::NotFound));
                continue;
            }
        };
        let done = match result {
            DeliveryResult::Delivered { detail } => Final::delivered(l.key, &l.state, detail),
            DeliveryResult::Permanent { reason, message } => Final {
                blocked: (reason == BLOCKED).then(|| l.state.bm_id.clone()),
                ..Final::plain(l.key, Outcome::Failed { reason, message })
            },
            other => {
                unsettled.push((l.entry, l.key, other));
                continue;
            }
        };
        // A closed recorder failed on the store and tripped the cutoff: nothing more
        // starts, and the job is retried whole.
        let _ = finals.send(done);
    }
    unsettled
}

/// Users whose delivery did not end finally: those not started go on at once in a new
/// job of the same attempt, those to retry in one of the next attempt after its backoff,
/// and those out of attempts fail and are kept as a dead job.
async fn settle(
    app: &App,
    record: &RequestRecord,
    attempt: u32,
    unsettled: Vec<Unsettled>,
    report: &mut JobReport,
) -> Result<(), StoreError> {
    let mut retry_users = Vec::new();
    let mut not_reached = Vec::new();
    let mut exhausted = Vec::new();
    let mut exhausted_outcomes = Vec::new();
    let mut last_reason = String::new();
    let mut retry_after: Option<Duration> = None;
    for (entry, key, result) in unsettled {
        match result {
            DeliveryResult::Retry {
                reason,
                message,
                after,
            } => {
                if attempt + 1 < app.config.max_attempts {
                    retry_after = retry_after.max(after);
                    retry_users.push(entry);
                } else {
                    let message = format!("gave up after {} attempts: {message}", attempt + 1);
                    last_reason = format!("{reason}: {message}");
                    exhausted.push(entry);
                    exhausted_outcomes.push((key, Outcome::Failed { reason, message }));
                }
            }
            // NotStarted (Delivered and Permanent went to the recorder).
            _ => not_reached.push(entry),
        }
    }
    if !not_reached.is_empty() {
        // The same attempt, at once: these users have not been tried yet.
        report.continued = not_reached.len() as u64;
        let rest = Job::deliver(&record.id, record.lane, attempt, not_reached);
        app.ports.queue.enqueue(vec![rest], Duration::ZERO).await?;
    }
    if !retry_users.is_empty() {
        report.retried = retry_users.len() as u64;
        // A platform's or engine's wait is honoured up to the longest backoff: an answer of
        // `Retry-After: 9999999999` must not park its users for centuries.
        let delay = backoff(app, attempt)
            .max(retry_after.unwrap_or_default())
            .min(app.config.max_backoff);
        let retry = Job::deliver(&record.id, record.lane, attempt + 1, retry_users);
        app.ports.queue.enqueue(vec![retry], delay).await?;
    }
    if !exhausted.is_empty() {
        // Kept as a dead job with its reason, for an operator to look at and redrive.
        let dead = Job::deliver(&record.id, record.lane, attempt + 1, exhausted);
        app.ports.queue.bury(dead, &last_reason).await?;
        report.failed += exhausted_outcomes.len() as u64;
        app.ports
            .requests
            .record_outcomes(&record.id, &exhausted_outcomes)
            .await?;
    }
    Ok(())
}

/// A user's final outcome on its way to the store.
struct Final {
    key: String,
    outcome: Outcome,
    /// The user's `bm_id` when the platform said they blocked the bot.
    blocked: Option<String>,
    /// The user's `bm_id` and the chat their message went to instead of theirs, when their
    /// group moved ([`MIGRATED_CHAT_ID`]) and they are not known there yet.
    migrated: Option<(String, String)>,
}

impl Final {
    fn plain(key: String, outcome: Outcome) -> Final {
        Final {
            key,
            outcome,
            blocked: None,
            migrated: None,
        }
    }

    /// A delivered outcome, with where the user's chat moved if it did.
    fn delivered(key: String, state: &UserState, detail: Option<serde_json::Value>) -> Final {
        let moved_to = detail
            .as_ref()
            .and_then(|d| d.get(MIGRATED_CHAT_ID))
            .and_then(|chat| chat.as_str())
            .filter(|chat| state.migrated_chat_id.as_deref() != Some(*chat))
            .map(|chat| (state.bm_id.clone(), chat.to_string()));
        Final {
            migrated: moved_to,
            ..Final::plain(key, Outcome::Delivered { detail })
        }
    }
}

/// Final outcomes are recorded in batches of at most this many users…
const OUTCOME_BATCH: usize = 20;
/// …and none waits longer than this to be recorded: after a crash, only the deliveries
/// in flight and at most one such batch per job are repeated.
const OUTCOME_WAIT: Duration = Duration::from_millis(200);

/// Record the final outcomes of a job's deliveries as they end, in small batches, and
/// count them. On a store failure the job's cutoff is tripped, so that no more deliveries
/// start whose outcomes could not be recorded, and the error is returned.
async fn record_as_they_end(
    app: &App,
    request_id: &RequestId,
    bot_id: &BotId,
    mut finals: mpsc::UnboundedReceiver<Final>,
    cutoff: &Cutoff,
) -> Result<JobReport, StoreError> {
    let mut report = JobReport::default();
    let mut batch: Vec<Final> = Vec::new();
    let mut due: Option<Instant> = None;
    // Batches being recorded: several at once, so that a job of fast deliveries does not
    // wait for one commit per batch in turn (they land in the same group commit).
    let mut recording = futures::stream::FuturesUnordered::new();
    let mut ended = false;
    while !ended || !batch.is_empty() || !recording.is_empty() {
        let received = tokio::select! {
            biased;
            Some(recorded) = recording.next(), if !recording.is_empty() => {
                let recorded: Result<Vec<(String, Outcome)>, StoreError> = recorded;
                match recorded {
                    Ok(counted) => report.add_outcomes(&counted),
                    Err(e) => {
                        cutoff.trip();
                        return Err(e);
                    }
                }
                continue;
            }
            // Some(final), or None once every delivery has ended.
            received = finals.recv(), if !ended => Some(received),
            // The oldest unrecorded outcome is due.
            _ = sleep_until_due(due), if due.is_some() && recording.len() < RECORDING_AT_ONCE => None,
        };
        match received {
            Some(Some(one)) => {
                batch.push(one);
                due.get_or_insert_with(|| Instant::now() + OUTCOME_WAIT);
                if batch.len() < OUTCOME_BATCH {
                    continue;
                }
            }
            Some(None) => ended = true,
            None => {}
        }
        if !batch.is_empty() && (recording.len() < RECORDING_AT_ONCE || ended) {
            recording.push(record_batch(
                app,
                request_id,
                bot_id,
                std::mem::take(&mut batch),
            ));
            due = None;
        }
    }
    Ok(report)
}

/// At most this many batches of one job are being recorded at once.
const RECORDING_AT_ONCE: usize = 1;

/// Sleep until `due` (at once when there is none).
async fn sleep_until_due(due: Option<Instant>) {
    if let Some(at) = due {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Record one batch of final outcomes (marking the users who blocked the bot first, so
/// that later messages skip them, and remembering where moved chats went); the outcomes
/// counted.
async fn record_batch(
    app: &App,
    request_id: &RequestId,
    bot_id: &BotId,
    batch: Vec<Final>,
) -> Result<Vec<(String, Outcome)>, StoreError> {
    let blocked: Vec<String> = batch.iter().filter_map(|f| f.blocked.clone()).collect();
    if !blocked.is_empty() {
        app.ports.users.mark_blocked(bot_id, &blocked).await?;
    }
    let moved: Vec<(String, String)> = batch.iter().filter_map(|f| f.migrated.clone()).collect();
    if !moved.is_empty() {
        app.ports
            .users
            .remember_migrated_chats(bot_id, &moved)
            .await?;
    }
    let outcomes: Vec<(String, Outcome)> = batch.into_iter().map(|f| (f.key, f.outcome)).collect();
    app.ports
        .requests
        .record_outcomes(request_id, &outcomes)
        .await?;
    Ok(outcomes)
}

/// A job of a cancelled request: its users not yet final are counted `cancelled`; an
/// expansion closes its shard where it stands.
async fn cancelled(app: &App, record: &RequestRecord, job: &Job) -> Result<JobReport, StoreError> {
    let mut report = JobReport::default();
    match &job.kind {
        JobKind::Deliver { users } => {
            let keys: Vec<String> = users.iter().map(|u| u.user.key()).collect();
            let finished = app.ports.requests.finished(&record.id, &keys).await?;
            let outcomes: Vec<(String, Outcome)> = keys
                .into_iter()
                .filter(|key| !finished.contains(key))
                .map(|key| (key, Outcome::Cancelled))
                .collect();
            report.skipped = (users.len() - outcomes.len()) as u64;
            report.cancelled = outcomes.len() as u64;
            app.ports
                .requests
                .record_outcomes(&record.id, &outcomes)
                .await?;
        }
        JobKind::Expand { shard, cursor } => {
            app.ports
                .requests
                .advance_expansion(&record.id, *shard, cursor.as_deref(), None, 0)
                .await?;
        }
    }
    Ok(report)
}

/// Exponential backoff with equal jitter: half the delay fixed, half random.
fn backoff(app: &App, attempt: u32) -> Duration {
    let base = app.config.base_backoff.as_millis() as u64;
    let full = base
        .saturating_mul(1u64 << attempt.min(20))
        .min(app.config.max_backoff.as_millis() as u64);
    let jitter = u64::from_le_bytes(crate::secret::random_bytes::<8>()) % (full / 2 + 1);
    Duration::from_millis(full / 2 + jitter)
}

async fn expand(
    app: &App,
    job_id: &str,
    record: &RequestRecord,
    shard: u32,
    cursor: Option<&str>,
) -> Result<JobReport, StoreError> {
    let crate::domain::Audience::Everyone { platform, .. } = &record.audience else {
        tracing::warn!("expand job for a request without everyone dropped");
        return Ok(JobReport::default());
    };
    let progress = app.ports.requests.expansion(&record.id, shard).await?;
    if progress.done {
        return Ok(JobReport::default());
    }
    // Pages run in cursor order (a cursor is the last `bm_id` of the page before, and no
    // cursor is the first page), so the recorded cursor tells which pages are behind.
    match progress.cursor.as_deref().cmp(&cursor) {
        // This page was already expanded (a redelivered job).
        Ordering::Greater => return Ok(JobReport::default()),
        // The page before enqueued this one but has not recorded its cursor yet: wait for
        // it. Skipping would lose the rest of the shard.
        Ordering::Less => {
            return Ok(JobReport {
                run_again_after: Some(page_before_wait(job_id)),
                ..JobReport::default()
            })
        }
        Ordering::Equal => {}
    }
    let page = app
        .ports
        .users
        .page(
            &record.bot_id,
            platform,
            shard,
            cursor,
            app.config.expand_page,
        )
        .await?;
    let mut jobs: Vec<Job> = page
        .users
        .chunks(app.config.deliver_batch.max(1))
        .map(|batch| {
            let users = batch
                .iter()
                .map(|u| JobUser {
                    user: UserRef::Bm {
                        id: u.bm_id.clone(),
                    },
                    patch: None,
                })
                .collect();
            Job::deliver(&record.id, record.lane, 0, users)
        })
        .collect();
    let report = JobReport {
        enqueued: jobs.len() as u64,
        ..JobReport::default()
    };
    if let Some(next) = &page.next {
        jobs.push(Job::expand(&record.id, shard, Some(next.clone())));
    }
    if !jobs.is_empty() {
        app.ports.queue.enqueue(jobs, Duration::ZERO).await?;
    }
    app.ports
        .requests
        .advance_expansion(
            &record.id,
            shard,
            cursor,
            page.next.as_deref(),
            page.users.len() as u64,
        )
        .await?;
    Ok(report)
}
