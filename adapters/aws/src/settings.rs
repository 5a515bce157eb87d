//! Where Herald's AWS resources are, and the settings both runtimes read: read once from
//! the environment by a function's entrypoint.

use herald_core::settings::{refuse_other_runtimes, Runtime, Settings};
use std::env;
use std::time::Duration;

/// Names of the tables and queue, and optional endpoint overrides for emulators.
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub users_table: String,
    pub events_table: String,
    pub requests_table: String,
    pub queue_url: String,
    /// The queue of transactional jobs, with an event source of its own so that they are
    /// never behind a broadcast's messages; None: every job goes to `queue_url`.
    pub transactional_queue_url: Option<String>,
    /// The dead-letter queue: the queue's redrive target, and where jobs whose users
    /// exhausted their attempts are kept.
    pub dlq_url: String,
    /// Shards of each bot's users (`UserShards` in template.yaml).
    pub user_shards: u32,
    pub region: Option<String>,
    /// DynamoDB endpoint override (DynamoDB Local); None for AWS itself.
    pub dynamodb_endpoint: Option<String>,
    /// SQS endpoint override (an emulator); None for AWS itself.
    pub sqs_endpoint: Option<String>,
    /// How long one SDK call may take.
    pub timeouts: CallTimeouts,
}

/// Bounds on every DynamoDB and SQS call, so that an unreachable or silent service fails
/// the call (an accept answers 503, a job is retried) instead of holding it until the
/// function's timeout. Left to itself the SDK bounds only the connect (3.1 s) and waits
/// for an answer forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    pub connect: Duration,
    /// One try, from sending the request to the last byte of the answer.
    pub attempt: Duration,
    /// The whole call, its retries included.
    pub operation: Duration,
}

impl Default for CallTimeouts {
    /// A DynamoDB or SQS call takes milliseconds; these leave room for a slow moment and
    /// still let the api function answer 503 well inside API Gateway's 29 s.
    fn default() -> Self {
        CallTimeouts {
            connect: Duration::from_secs(2),
            attempt: Duration::from_secs(5),
            operation: Duration::from_secs(12),
        }
    }
}

impl AwsSettings {
    /// The queue a job of `lane` goes to.
    pub fn queue_for(&self, lane: herald_core::lane::Lane) -> &str {
        match (lane, &self.transactional_queue_url) {
            (herald_core::lane::Lane::Transactional, Some(url)) => url,
            _ => &self.queue_url,
        }
    }

    /// From `HERALD_USERS_TABLE`, `HERALD_EVENTS_TABLE`, `HERALD_REQUESTS_TABLE`,
    /// `HERALD_QUEUE_URL`, `HERALD_TRANSACTIONAL_QUEUE_URL` (optional), `HERALD_DLQ_URL`,
    /// `HERALD_USER_SHARDS` (default 16) and, for local runs,
    /// `HERALD_DYNAMODB_ENDPOINT` and `HERALD_SQS_ENDPOINT`.
    pub fn from_env() -> Result<AwsSettings, String> {
        let required = |name: &str| env::var(name).map_err(|_| format!("{name} is not set"));
        Ok(AwsSettings {
            users_table: required("HERALD_USERS_TABLE")?,
            events_table: required("HERALD_EVENTS_TABLE")?,
            requests_table: required("HERALD_REQUESTS_TABLE")?,
            queue_url: required("HERALD_QUEUE_URL")?,
            transactional_queue_url: env::var("HERALD_TRANSACTIONAL_QUEUE_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            dlq_url: required("HERALD_DLQ_URL")?,
            user_shards: match env::var("HERALD_USER_SHARDS") {
                Ok(v) => v
                    .parse()
                    .map_err(|_| format!("HERALD_USER_SHARDS is not a number: {v}"))?,
                Err(_) => 16,
            },
            region: None,
            dynamodb_endpoint: env::var("HERALD_DYNAMODB_ENDPOINT").ok(),
            sqs_endpoint: env::var("HERALD_SQS_ENDPOINT").ok(),
            timeouts: CallTimeouts::default(),
        })
    }
}

/// The settings both runtimes read ([`herald_core::settings::SHARED`]), from the function's
/// environment; a variable only `herald serve` reads, or a value that does not parse, is an
/// error that stops the function's start.
pub fn shared_settings_from_env() -> Result<Settings, String> {
    refuse_other_runtimes(Runtime::Aws, env::vars().map(|(name, _)| name))
        .map_err(|e| e.to_string())?;
    Settings::read(Runtime::Aws, |var| env::var(var).ok()).map_err(|e| e.to_string())
}
