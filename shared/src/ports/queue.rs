//! Where jobs go and, for a queue that workers pull from, how a job is leased and settled.
//!
//! Every runtime enqueues ([`JobQueue`]). A pull queue (SQLite) also implements
//! [`LeaseQueue`], which the core's [`crate::worker_pool`] drives; a push queue (SQS)
//! has the lifecycle done for it by its event source and implements only [`JobQueue`].

use crate::domain::Job;
use crate::error::StoreError;
use crate::ids::BotId;
use crate::lane::Lane;
use async_trait::async_trait;
use std::time::Duration;

/// Where follow-up jobs go: the pages of an expansion and retries of failed users.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, jobs: Vec<Job>, delay: Duration) -> Result<(), StoreError>;

    /// Keep `job` as dead (the dead-letter queue), with why, without running it.
    async fn bury(&self, job: Job, reason: &str) -> Result<(), StoreError>;
}

/// Which jobs a worker may lease now. Whatever it may lease, transactional jobs come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseFilter {
    /// Bots and lanes whose deliver jobs in flight here are at their share: their deliver
    /// jobs in that lane stay where they are, so that idle workers do not lease and put
    /// back jobs that must wait.
    pub full: Vec<(BotId, Lane)>,
    /// Only jobs of this lane (a worker kept for transactional jobs), or any.
    pub only: Option<Lane>,
}

/// A job taken from a pull queue, hidden from other workers until its lease ends.
#[derive(Debug, Clone)]
pub struct Leased {
    pub job: Job,
    /// Attempts at this job so far, this one included.
    pub attempts: u32,
}

/// The lifecycle of a job in a queue that workers pull from: lease, then ack, postpone or
/// release. What [`crate::worker_pool`] runs on; a push queue (SQS) needs none of it.
#[async_trait]
pub trait LeaseQueue: Send + Sync {
    /// Take a visible job that `filter` admits for `lease`, counting an attempt, if any:
    /// the oldest transactional job, else the oldest job.
    async fn lease(
        &self,
        lease: Duration,
        filter: &LeaseFilter,
    ) -> Result<Option<Leased>, StoreError>;

    /// The job is done: forget it.
    async fn ack(&self, job_id: &str) -> Result<(), StoreError>;

    /// Give the job back: visible again after `delay`, or kept as dead when `dead` is
    /// set, with `error` as its last error.
    async fn release(
        &self,
        job_id: &str,
        delay: Duration,
        error: Option<String>,
        dead: bool,
    ) -> Result<(), StoreError>;

    /// Put a leased job back for `delay` without counting the attempt: it did not run
    /// (its request is still being accepted, the page before it has not recorded its
    /// cursor, or its bot's share was taken between lease and start).
    async fn postpone(&self, job_id: &str, delay: Duration) -> Result<(), StoreError>;

    /// Make every job leased by a previous run visible at once; answers how many. Only
    /// for a queue that one process works on, at its start.
    async fn recover_leases(&self) -> Result<usize, StoreError>;

    /// Wait until jobs are enqueued or released, or `timeout` passes.
    async fn wait_for_jobs(&self, timeout: Duration);
}
