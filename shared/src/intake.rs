//! The accept path: authenticate, validate, record, enqueue — then answer.
//!
//! [`authenticate`] finds the event and checks the secret in constant time. [`accept`]
//! validates the body, splits explicit users into `deliver` jobs of `deliver_batch` users,
//! or plans one `expand` job per shard for `everyone` (so a broadcast to a million users is
//! accepted as cheaply as a message to one), and hands record and jobs to the [`Intake`]
//! port, which makes them durable together. Only then is a request id returned. A
//! request with `send_at` is planned the same way; the store queues its jobs to become
//! visible at that time.
//!
//! [`Intake`]: crate::ports::Intake

use crate::domain::{
    now_ms, Audience, Event, Job, JobUser, RequestRecord, RequestState, ACCEPTING_TIMEOUT_MS,
};
use crate::ids::{EventId, RequestId};
use crate::lane::Lane;
use crate::ports::{App, Recorded, Remember, Remembered};
use crate::problem::ApiError;
use crate::request::{self, EventRequest, Targets};
use crate::secret;
use serde::Serialize;

/// The 202 answer.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub request_id: RequestId,
    pub status_url: String,
    /// Null for `everyone` until the expansion finishes (see the status document).
    pub targeted: Option<u64>,
}

/// The 200 answer to `dry_run`.
#[derive(Debug, Serialize)]
pub struct DryRun {
    pub dry_run: bool,
    /// The lane the request would run in.
    pub lane: Lane,
    /// Users the request names (explicit lists, after de-duplication) or `everyone` means.
    pub targeted: u64,
    /// Of those, users that exist in the bot.
    pub found: u64,
    /// When the request would be sent, if it is scheduled (RFC 3339); its audience is
    /// counted now, and `everyone` is read again at that time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at: Option<String>,
}

pub enum Answer {
    Accepted(Accepted),
    DryRun(DryRun),
    /// The first answer to this `Idempotency-Key`, given again; nothing was enqueued.
    Replay(Remembered),
}

/// How long a duplicate waits for the first request with its key to finish accepting.
const DUPLICATE_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
const DUPLICATE_POLLS: usize = 50;

/// The event `event_id` if `secret` is its secret; [`ApiError::NotFound`] for an unknown
/// event and a wrong secret alike.
pub async fn authenticate(app: &App, event_id: &str, secret: &str) -> Result<Event, ApiError> {
    // An id no event can have is an unknown event, answered alike.
    let event = match crate::ids::EventId::parse(event_id) {
        Ok(event_id) => app.ports.events.event(&event_id).await?,
        Err(_) => None,
    };
    // Hash even when the event is unknown, and check the previous secret even when there
    // is none, so that every case takes the same time.
    let stored = event.as_ref().map(|e| e.secret_hash).unwrap_or([0u8; 32]);
    let previous = event
        .as_ref()
        .and_then(|e| e.previous_secret)
        .filter(|p| p.valid_until > now_ms());
    let current = secret::verify(secret, &stored);
    let old = secret::verify(secret, &previous.map(|p| p.hash).unwrap_or([0u8; 32]));
    let matches = current | (old & previous.is_some());
    match event {
        Some(event) if matches => {
            if event.enabled {
                Ok(event)
            } else {
                Err(ApiError::EventDisabled)
            }
        }
        _ => Err(ApiError::NotFound),
    }
}

/// Bodies larger than this are parsed and validated on the blocking pool: up to 1 MiB of
/// JSON with 10,000 entries takes milliseconds of CPU that must not stall the async
/// runtime (health checks, other requests) meanwhile.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

async fn parse(app: &App, body: &[u8]) -> Result<request::EventRequest, ApiError> {
    if body.len() <= PARSE_INLINE_BYTES {
        return Ok(request::parse(body, &app.config.limits)?);
    }
    let (body, limits) = (body.to_vec(), app.config.limits.clone());
    let parsed = tokio::task::spawn_blocking(move || request::parse(&body, &limits))
        .await
        .map_err(|_| ApiError::Internal)?;
    Ok(parsed?)
}

/// Validate `body` for `event`, then record and enqueue it (or count it, for a dry run).
/// With an idempotency key, a key already used in the last 24 hours answers what it
/// answered then (or 422 for a different body) and records nothing; over the event's rate
/// limit nothing is recorded either.
pub async fn accept(
    app: &App,
    event: &Event,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Answer, ApiError> {
    // Only an idempotency key needs the body's hash.
    let body_hash = idempotency_key.map_or([0u8; 32], |_| secret::hash_bytes(body));
    if let Some(key) = idempotency_key {
        if let Some(first) = app.ports.intake.remembered(&event.id, key).await? {
            if let Some(answer) = replay(app, &event.id, key, first, &body_hash).await? {
                return Ok(answer);
            }
            // The first request's accept died midway and was given up: accept this one.
        }
    }
    admit(app, event).await?;
    let request = parse(app, body).await?;
    if request.dry_run {
        return dry_run(app, event, &request).await.map(Answer::DryRun);
    }
    let lane = request.lane(event.lane);
    let EventRequest {
        targets,
        data,
        send_at,
        ..
    } = request;
    let id = RequestId::generate();
    let (audience, targeted, jobs) = plan(app, &id, lane, targets);
    let record = RequestRecord {
        id: id.clone(),
        event_id: event.id.clone(),
        event_name: event.name.clone(),
        bot_id: event.bot_id.clone(),
        action: event.action.clone(),
        data,
        audience,
        lane,
        created_at: now_ms(),
        send_at,
    };
    let accepted = Accepted {
        status_url: app.config.url(&format!("/v1/requests/{id}")),
        request_id: id,
        targeted,
    };
    let remember = idempotency_key.map(|key| Remember {
        event_id: event.id.clone(),
        key: key.to_string(),
        answer: Remembered {
            request_id: accepted.request_id.clone(),
            body_hash,
            status: 202,
            answer: serde_json::to_string(&accepted).unwrap_or_default(),
            at: now_ms(),
        },
    });
    record_and_answer(app, &record, targeted, jobs, remember, accepted, &body_hash).await
}

/// Refuse the request before it is read when the event's rate limit is used up or its
/// bot has too many jobs waiting.
async fn admit(app: &App, event: &Event) -> Result<(), ApiError> {
    if let Some(limit) = &event.rate_limit {
        if let Err(wait) = app.ports.throttle.admit(event.id.as_str(), limit).await? {
            return Err(ApiError::RateLimited { wait });
        }
    }
    let cap = app.config.max_backlog_jobs;
    if cap > 0 && app.ports.intake.backlog(&event.bot_id, cap).await? >= cap {
        return Err(ApiError::Backlogged);
    }
    Ok(())
}

/// The audience to record for `targets`, how many users it names (None for `everyone`)
/// and the jobs that start it.
fn plan(
    app: &App,
    id: &RequestId,
    lane: Lane,
    targets: Targets,
) -> (Audience, Option<u64>, Vec<Job>) {
    match targets {
        Targets::Platform { platform, users } => {
            let count = users.len() as u64;
            let jobs = deliver_jobs(app, id, lane, users);
            (Audience::Platform { platform, count }, Some(count), jobs)
        }
        Targets::Bm { users } => {
            let count = users.len() as u64;
            let jobs = deliver_jobs(app, id, lane, users);
            (Audience::Bm { count }, Some(count), jobs)
        }
        Targets::Everyone { platform } => {
            let shards = app.ports.users.shards();
            let jobs = (0..shards).map(|s| Job::expand(id, s, None)).collect();
            (Audience::Everyone { platform, shards }, None, jobs)
        }
    }
}

/// Record the request with its jobs; the answer is `accepted`, or the first request's when
/// the idempotency key was taken meanwhile.
async fn record_and_answer(
    app: &App,
    record: &RequestRecord,
    targeted: Option<u64>,
    jobs: Vec<Job>,
    remember: Option<Remember>,
    accepted: Accepted,
    body_hash: &[u8; 32],
) -> Result<Answer, ApiError> {
    match app
        .ports
        .intake
        .accept(record, targeted, jobs, remember.as_ref())
        .await?
    {
        Recorded::New => Ok(Answer::Accepted(accepted)),
        Recorded::Duplicate(first) => {
            let key = remember.as_ref().map_or("", |r| r.key.as_str());
            match replay(app, &record.event_id, key, first, body_hash).await? {
                Some(answer) => Ok(answer),
                // Given up just now: the key is free for the client's retry.
                None => Err(ApiError::Unavailable(crate::StoreError::new(
                    "the first request with this idempotency key was given up",
                ))),
            }
        }
    }
}

/// The answer to a request whose idempotency key names a `first` request: its answer
/// again, a conflict, a 503 while it may still be accepted — or None when its accept died
/// midway ([`ACCEPTING_TIMEOUT_MS`] ago): it is marked `aborted`, its key freed, and this
/// request is to be accepted as new.
async fn replay(
    app: &App,
    event_id: &EventId,
    key: &str,
    first: Remembered,
    body_hash: &[u8; 32],
) -> Result<Option<Answer>, ApiError> {
    if !secret::equal(&first.body_hash, body_hash) {
        return Err(ApiError::IdempotencyConflict);
    }
    // A concurrent first request may still be accepting; it may yet fail.
    for _ in 0..DUPLICATE_POLLS {
        match app.ports.requests.record(&first.request_id).await? {
            Some((record, RequestState::Accepting))
                if now_ms() - record.created_at > ACCEPTING_TIMEOUT_MS =>
            {
                tracing::warn!(request_id = %record.id, "a request left accepting by a dead accept was aborted; its idempotency key is accepted anew");
                app.ports
                    .intake
                    .abandon(event_id, key, &first.request_id)
                    .await?;
                return Ok(None);
            }
            Some((_, RequestState::Accepting)) => tokio::time::sleep(DUPLICATE_WAIT).await,
            Some((_, RequestState::Aborted)) | None => {
                return Err(ApiError::Unavailable(crate::StoreError::new(
                    "the first request with this idempotency key was not accepted",
                )))
            }
            Some(_) => return Ok(Some(Answer::Replay(first))),
        }
    }
    // Still being accepted: it may yet be, or fail. Never replay a 202 it may not earn.
    Err(ApiError::Unavailable(crate::StoreError::new(
        "the first request with this idempotency key is still being accepted",
    )))
}

fn deliver_jobs(app: &App, request_id: &RequestId, lane: Lane, users: Vec<JobUser>) -> Vec<Job> {
    users
        .chunks(app.config.deliver_batch.max(1))
        .map(|batch| Job::deliver(request_id, lane, 0, batch.to_vec()))
        .collect()
}

async fn dry_run(app: &App, event: &Event, request: &EventRequest) -> Result<DryRun, ApiError> {
    let (targeted, found) = match &request.targets {
        Targets::Platform { users, .. } | Targets::Bm { users } => {
            let refs: Vec<_> = users.iter().map(|u| u.user.clone()).collect();
            let found = app.ports.users.resolve(&event.bot_id, &refs).await?;
            (refs.len() as u64, found.iter().flatten().count() as u64)
        }
        Targets::Everyone { platform } => {
            let count = app.ports.users.count(&event.bot_id, platform).await?;
            (count, count)
        }
    };
    Ok(DryRun {
        dry_run: true,
        lane: request.lane(event.lane),
        targeted,
        found,
        send_at: request.send_at.map(crate::status::rfc3339),
    })
}
