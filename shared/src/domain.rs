//! Herald's entities: bots' users, events, requests, jobs and per-user outcomes.
//!
//! These are plain data, serializable so that any adapter can store them (a SQLite row,
//! a DynamoDB item, an SQS message body). Requests and jobs are identified by ULIDs, whose
//! order is creation order: "newer request" means "greater request id".

use crate::channels::Connections;
use crate::ids::{BotId, EventId, RequestId};
use crate::lane::Lane;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A JSON object, key order kept.
pub type Object = Map<String, Value>;

/// What an event does for each targeted user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Hand the user to the bot engine at this screen.
    Screen { screen_id: String },
    /// Send a message rendered from its templates ([`crate::message`]).
    Message(crate::message::Message),
}

/// An event: the URL a CRM calls and what happens then.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub bot_id: BotId,
    pub name: String,
    /// SHA-256 of the event secret; the secret itself is never stored.
    pub secret_hash: [u8; 32],
    /// The secret before the last rotation, accepted until its deadline.
    pub previous_secret: Option<PreviousSecret>,
    pub action: Action,
    pub enabled: bool,
    /// Requests/s and burst the public endpoint accepts for this event; None: no limit.
    pub rate_limit: Option<RateLimit>,
    /// The lane of its requests that name none, where that lane can carry them (a
    /// broadcast stays bulk); None: the audience's default ([`crate::lane`]).
    pub lane: Option<Lane>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// A rotated-out event secret that keeps working for a grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviousSecret {
    pub hash: [u8; 32],
    /// Milliseconds since the Unix epoch after which the old secret stops working.
    pub valid_until: i64,
}

/// A per-event limit on accepted requests: a steady rate with a burst on top.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second (may be fractional: 0.5 is one every two seconds).
    pub per_second: f64,
    /// Requests that may arrive at once after a quiet spell (at least 1).
    #[serde(deserialize_with = "integral")]
    pub burst: u32,
}

/// An integer field that also takes a number with no fraction (`20.0`), as JSON Schema's
/// `integer` does.
pub fn integral<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| D::Error::custom(format!("expected a whole number in range, not {number}")))
}

impl RateLimit {
    /// Whether the limit can be enforced: a positive finite rate, a burst of at least 1.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second >= 0.001 && self.per_second <= 1e6) {
            return Err("per_second must be a number from 0.001 to 1000000".into());
        }
        if self.burst == 0 || self.burst > 1_000_000 {
            return Err("burst must be between 1 and 1000000".into());
        }
        Ok(())
    }
}

/// A bot and its connections: where its actions go. Tokens and secrets never appear in
/// logs (the `Debug` form of [`Connections`] hides them) nor in any answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bot {
    pub id: BotId,
    pub connections: Connections,
}

/// One bot user's state as Herald sees it (the bot engine may keep more on the same record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub platform: String,
    pub platform_id: String,
    /// Platform-independent id of the user's state; unique within a bot.
    pub bm_id: String,
    /// The user blocked the bot (a platform said so); messages to them are skipped until
    /// the bot engine clears the mark.
    #[serde(default)]
    pub blocked: bool,
    /// Where a Telegram group this user stands for moved when it became a supergroup
    /// (Herald's own attribute; `platform_id` is the engine's and never rewritten). Messages
    /// go there instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated_chat_id: Option<String>,
}

impl UserState {
    /// The chat a message to this user goes to: where their group moved, else their
    /// platform id.
    pub fn chat_id(&self) -> &str {
        self.migrated_chat_id
            .as_deref()
            .unwrap_or(&self.platform_id)
    }
}

/// The key, in a delivered outcome's `detail`, of the chat a message went to instead of the
/// user's own because their group moved ([`UserState::migrated_chat_id`]): the processor
/// remembers it on the user.
pub const MIGRATED_CHAT_ID: &str = "migrated_chat_id";

/// How a job names a user: by platform id or by state id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum UserRef {
    Platform { platform: String, id: String },
    Bm { id: String },
}

impl UserRef {
    /// Stable key of this reference within one request (used by per-user markers).
    pub fn key(&self) -> String {
        match self {
            UserRef::Platform { platform, id } => format!("{platform}:{id}"),
            UserRef::Bm { id } => format!("bm:{id}"),
        }
    }
}

/// A user of a `deliver` job, with the per-user `data` patch from the request if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobUser {
    #[serde(flatten)]
    pub user: UserRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Object>,
}

/// Which users `everyone` means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlatformFilter {
    Any,
    Only(String),
}

impl PlatformFilter {
    pub fn parse(platform: &str) -> Self {
        if platform == "any" {
            PlatformFilter::Any
        } else {
            PlatformFilter::Only(platform.to_string())
        }
    }
}

/// A unit of queued work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub request_id: RequestId,
    /// Its request's lane: a queue serves transactional jobs first (jobs queued before
    /// lanes existed read as bulk).
    #[serde(default)]
    pub lane: Lane,
    /// 0 for the first attempt at these users; retries of failed users count up.
    #[serde(default)]
    pub attempt: u32,
    #[serde(flatten)]
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// Update and act for these users.
    Deliver { users: Vec<JobUser> },
    /// Page one shard of the bot's users from `cursor` (None: the start).
    Expand {
        shard: u32,
        #[serde(default)]
        cursor: Option<String>,
    },
}

impl Job {
    pub fn deliver(request_id: &RequestId, lane: Lane, attempt: u32, users: Vec<JobUser>) -> Job {
        Job {
            id: new_id(),
            request_id: request_id.clone(),
            lane,
            attempt,
            kind: JobKind::Deliver { users },
        }
    }

    /// An expand job: only `everyone` audiences expand, and they are bulk.
    pub fn expand(request_id: &RequestId, shard: u32, cursor: Option<String>) -> Job {
        Job {
            id: new_id(),
            request_id: request_id.clone(),
            lane: Lane::Bulk,
            attempt: 0,
            kind: JobKind::Expand { shard, cursor },
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            JobKind::Deliver { .. } => "deliver",
            JobKind::Expand { .. } => "expand",
        }
    }
}

/// Who a request targets, as recorded with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Audience {
    /// Explicit platform ids on one platform.
    Platform { platform: String, count: u64 },
    /// Explicit state ids.
    Bm { count: u64 },
    /// All users of the bot on one platform or all.
    Everyone {
        platform: PlatformFilter,
        shards: u32,
    },
}

/// An accepted request, as the request log keeps it. `data` lives here once (claim check):
/// jobs carry only user references.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub id: RequestId,
    pub event_id: EventId,
    pub event_name: String,
    pub bot_id: BotId,
    /// The event's action when the request was accepted.
    pub action: Action,
    pub data: Object,
    pub audience: Audience,
    /// The lane its deliveries run in (`bulk` for a request recorded before lanes).
    #[serde(default)]
    pub lane: Lane,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// When a scheduled request is to be sent (milliseconds since the Unix epoch); None
    /// for a request sent as soon as it is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<i64>,
}

impl RequestRecord {
    /// How long until the request is due at `now` (zero once due, or when not scheduled).
    pub fn due_in(&self, now: i64) -> std::time::Duration {
        let wait = self.send_at.map_or(0, |at| at.saturating_sub(now).max(0));
        std::time::Duration::from_millis(wait as u64)
    }

    /// The moment its deliveries may start: `send_at`, or its creation.
    pub fn starts_at(&self) -> i64 {
        self.send_at.unwrap_or(self.created_at).max(self.created_at)
    }
}

/// A request's lifecycle as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Recorded, jobs being enqueued; workers wait.
    Accepting,
    /// Accepted; jobs may run.
    Accepted,
    /// Accepting failed; its jobs are no-ops.
    Aborted,
    /// An operator cancelled it; its remaining users are counted `cancelled`.
    Cancelled,
}

impl RequestState {
    /// The stored name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Accepting => "accepting",
            RequestState::Accepted => "accepted",
            RequestState::Aborted => "aborted",
            RequestState::Cancelled => "cancelled",
        }
    }

    /// The state a stored name stands for (anything unknown reads as accepted).
    pub fn from_name(name: &str) -> RequestState {
        match name {
            "accepting" => RequestState::Accepting,
            "aborted" => RequestState::Aborted,
            "cancelled" => RequestState::Cancelled,
            _ => RequestState::Accepted,
        }
    }
}

/// The final outcome for one user of one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The action ran; `detail` is what the deliverer reports (the log deliverer: what it
    /// would have sent).
    Delivered {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<Value>,
    },
    /// No such user in the bot.
    NotFound,
    /// The action failed for good: `reason` is a short class, `message` the details.
    Failed { reason: String, message: String },
    /// The request was cancelled before this user's turn.
    Cancelled,
}

/// The failure reason of a user who blocked the bot: deliverers report it, the processor
/// then marks the user and skips them in later messages.
pub const BLOCKED: &str = "blocked";

/// What a deliverer says about one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    Delivered {
        detail: Option<Value>,
    },
    /// Failed for good: do not retry.
    Permanent {
        reason: String,
        message: String,
    },
    /// Failed for now: retry after `after` (or the backoff when None).
    Retry {
        reason: String,
        message: String,
        after: Option<std::time::Duration>,
    },
    /// Not tried: the job's cutoff came first (its time budget, shutdown), possibly while
    /// it waited for the bot's pace or a free connection to its engine. The user goes on
    /// in a new job, this attempt unspent.
    NotStarted,
    /// Not sent: the runtime's step at the send's turn ([`AtTurn`]) said not to, and it
    /// keeps the user's outcome itself (the user was deleted meanwhile, or the store
    /// failed).
    ///
    /// [`AtTurn`]: crate::ports::AtTurn
    Withheld,
}

/// The `last_request` write for one user.
#[derive(Debug, Clone, PartialEq)]
pub struct LastRequestWrite {
    pub bm_id: String,
    /// This user's own data (the request's `data` with their entry's merged over it);
    /// None: the request's `data` as it is.
    pub data: Option<Object>,
}

/// What happened to one `last_request` write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Applied,
    /// The user already holds a newer request's data; left as is.
    Stale,
    /// The user no longer exists.
    NotFound,
}

pub use crate::ids::new_id;

/// A request still `accepting` this long after it was created lost its accept call (the
/// accepting process died, or its client was answered 503): workers drop its jobs, and a
/// retry with its idempotency key marks it `aborted` and is accepted anew.
pub const ACCEPTING_TIMEOUT_MS: i64 = 120_000;

/// Milliseconds since the Unix epoch.
/// Whether `text` is blank: empty or ASCII white space only. The one rule for event names
/// and templates, as openapi.yaml's patterns (`[^ \t\n\r\f\v]`) state it the same way in
/// every regex dialect that checks them (Unicode spaces such as U+0085 are text here).
pub fn is_blank(text: &str) -> bool {
    text.chars()
        .all(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The shard of a user among `shards` (FNV-1a of its bm_id): how every runtime spreads a
/// bot's users so that `everyone` can be paged in parallel.
pub fn shard_of(bm_id: &str, shards: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bm_id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % shards.max(1)
}

/// A sample of one user's failure, kept with the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorSample {
    pub user: String,
    pub reason: String,
    pub message: String,
}

/// Everything stored about a request's progress; [`crate::status`] turns it into the
/// status document.
#[derive(Debug, Clone)]
pub struct RequestProgress {
    pub record: RequestRecord,
    pub state: RequestState,
    /// Users targeted so far (explicit: all of them from the start; `everyone`: grows as
    /// expansions page through the bot's users).
    pub targeted: u64,
    /// Expansion shards not yet exhausted.
    pub expansions_pending: u32,
    pub delivered: u64,
    pub not_found: u64,
    pub failed: u64,
    /// Users left out because the request was cancelled.
    pub cancelled: u64,
    /// `failed` by reason class (`blocked`, `chat_not_found`, `template`, …).
    pub failed_by_reason: std::collections::BTreeMap<String, u64>,
    pub error_samples: Vec<ErrorSample>,
    /// What the deliverer reported for the first few users (e.g. the log deliverer's record).
    pub delivery_samples: Vec<serde_json::Value>,
    /// Milliseconds since the Unix epoch of the last final outcome, if any.
    pub updated_at: Option<i64>,
}
