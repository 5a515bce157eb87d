//! Typed configuration, built once by an entrypoint and passed down.
//!
//! Nothing below this module reads the environment: the CLI and the Lambda binaries read
//! [`Settings`] from flags or environment variables, put them in a [`Config`]
//! ([`Config::with_settings`]) and hand it to [`crate::App`].

use crate::settings::{Runtime, Settings};
use std::time::Duration;

/// Limits of the public event endpoint (see docs/event-request.md, Limits).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Largest `data` object once serialized, in bytes (also applies per user after merging).
    pub max_data_bytes: usize,
    /// Most entries in an explicit `users` / `users_bm` list.
    pub max_users: usize,
    /// Deepest JSON nesting inside `data`.
    pub max_data_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_data_bytes: 256 * 1024,
            max_users: Settings::defaults(Runtime::Serve).max_users,
            max_data_depth: 64,
        }
    }
}

/// Everything the Router and the batch processor need besides their ports.
#[derive(Debug, Clone)]
pub struct Config {
    pub limits: Limits,
    /// Users per `deliver` job.
    pub deliver_batch: usize,
    /// Users read per `expand` page; each page becomes `expand_page / deliver_batch` jobs.
    pub expand_page: usize,
    /// Attempts a user gets before a retryable failure becomes final.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, with jitter, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Deliveries in flight at once within one job.
    pub delivery_concurrency: usize,
    /// Deliver jobs of one bot in flight at once in one process: a slow bot holds at most
    /// this many workers.
    pub jobs_per_bot: usize,
    /// How long a deliver job starts deliveries; past it, the users it has not reached go
    /// to a new job and this one finishes. A bot's pace (30 Telegram messages a second,
    /// shared by every job of the bot in the process) can make 100 users take minutes, and
    /// a job must end well inside its lease (`herald serve`: 60 s) and the worker
    /// function's timeout (AWS: 60 s), or it would run again beside itself and message its
    /// users twice. A delivery started before the budget runs out still finishes.
    pub job_time_budget: Duration,
    /// Jobs one bot may have waiting before its new requests are refused (503 with
    /// `Retry-After`): a bot flooding the queue is held back before anyone else is; 0
    /// means no limit. Counted where the queue can tell (the embedded store).
    pub max_backlog_jobs: u64,
    /// Public base URL (`https://herald.example.com`); URLs are paths when absent.
    pub public_base_url: Option<String>,
    /// SHA-256 of the admin token; the admin API answers 401 to everyone when absent.
    pub admin_token_hash: Option<[u8; 32]>,
    /// Sends per second of a paced channel for a bot that sets no rate of its own
    /// (`HERALD_TELEGRAM_RATE`): what the status document's ETA counts with before a
    /// request has a pace of its own.
    pub default_rate: u32,
}

impl Config {
    /// Worker tasks of `herald serve` unless told otherwise. Workers mostly wait (on the
    /// store, on delivery), so more of them than cores keeps both busy: with group commit,
    /// a 100,000-user fan-out ran at 36k users/s with 8, 57–65k with 32 and no faster with
    /// 64 (BENCHMARKS.md, 2).
    pub const DEFAULT_WORKERS: usize = 32;

    /// A bot's waiting jobs before its new requests are refused: 20,000 deliver jobs are
    /// 2,000,000 users (about 18 hours at Telegram's 30 messages a second).
    pub const DEFAULT_MAX_BACKLOG_JOBS: u64 = 20_000;

    /// Deliver jobs one bot may have in flight among `workers`: half of them, so a slow bot
    /// never holds them all (`herald serve` sets `jobs_per_bot` with it).
    pub fn bot_share(workers: usize) -> usize {
        (workers / 2).max(1)
    }
}

/// The embedded runtime's defaults: [`Settings::defaults`] for what is a setting.
impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            deliver_batch: 0,
            expand_page: 0,
            max_attempts: 0,
            base_backoff: Duration::ZERO,
            max_backoff: Duration::from_secs(300),
            delivery_concurrency: 16,
            jobs_per_bot: 4,
            job_time_budget: Duration::ZERO,
            max_backlog_jobs: Config::DEFAULT_MAX_BACKLOG_JOBS,
            public_base_url: None,
            admin_token_hash: None,
            default_rate: 30,
        }
        .with_settings(&Settings::defaults(Runtime::Serve))
    }
}

impl Config {
    /// This configuration with the settings both runtimes read in it.
    pub fn with_settings(mut self, settings: &Settings) -> Config {
        self.public_base_url.clone_from(&settings.public_url);
        self.deliver_batch = settings.deliver_batch;
        self.expand_page = settings.expand_page;
        self.limits.max_users = settings.max_users;
        self.max_attempts = settings.max_attempts;
        self.base_backoff = settings.retry_base;
        self.job_time_budget = settings.job_time_budget;
        self.default_rate = settings.telegram_rate;
        self
    }
}

impl Config {
    /// `path` prefixed with the public base URL when one is configured.
    pub fn url(&self, path: &str) -> String {
        match &self.public_base_url {
            Some(base) => format!("{}{}", base.trim_end_matches('/'), path),
            None => path.to_string(),
        }
    }
}
