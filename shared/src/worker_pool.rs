//! The worker pool for a pull queue: tasks that drain a [`LeaseQueue`] with the batch
//! processor (`herald serve` runs it on SQLite; the AWS worker is pushed jobs by SQS).
//!
//! Each worker leases one job (transactional jobs first), runs
//! [`crate::processor::process`], then acks it,
//! puts it back for later (its request is still being accepted), or — when the processor
//! failed on the store — releases it with backoff until it has used its attempts and is
//! kept as dead (at once when the failure is a corrupt record: no attempt could succeed).
//! One worker in [`TRANSACTIONAL_WORKERS_ONE_IN`] (at least one) leases only transactional
//! jobs: however many broadcasts hold the others, an order confirmation finds a worker.
//! On shutdown the workers stop leasing and the jobs in hand stop starting
//! deliveries: the sends already started end (within the delivery timeout), their
//! outcomes are recorded, the users not reached go on in new jobs, and the job is acked.
//! A job still running when the grace period ends is released at once for the next start.

use crate::cutoff::Stop;
use crate::lane::Lane;
use crate::ports::{LeaseFilter, LeaseQueue, Leased};
use crate::processor::{self, JobReport};
use crate::App;
use futures::FutureExt;
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::Instrument;

#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub workers: usize,
    /// How long a leased job stays hidden from other workers.
    pub lease: Duration,
    /// Attempts at a job (store failures) before it is kept as dead.
    pub max_job_attempts: u32,
    /// How long workers wait for an empty queue before looking again (wake-ups on enqueue
    /// are immediate; this covers delayed jobs coming due).
    pub idle_poll: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            workers: 4,
            lease: Duration::from_secs(60),
            max_job_attempts: 10,
            idle_poll: Duration::from_millis(200),
        }
    }
}

/// One worker in this many (at least one) is kept for transactional jobs.
pub const TRANSACTIONAL_WORKERS_ONE_IN: usize = 8;

/// How many of `workers` lease only transactional jobs: one in
/// [`TRANSACTIONAL_WORKERS_ONE_IN`], at least one, and never all of them.
pub fn transactional_workers(workers: usize) -> usize {
    if workers < 2 {
        return 0;
    }
    (workers / TRANSACTIONAL_WORKERS_ONE_IN).max(1)
}

/// A running pool; [`WorkerPool::shutdown`] stops it.
pub struct WorkerPool {
    stop: Stop,
    tasks: JoinSet<()>,
    queue: Arc<dyn LeaseQueue>,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl WorkerPool {
    pub fn start(app: Arc<App>, queue: Arc<dyn LeaseQueue>, options: PoolOptions) -> WorkerPool {
        let stop = Stop::never();
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        let mut tasks = JoinSet::new();
        let kept = transactional_workers(options.workers);
        for worker in 0..options.workers {
            let worker = Worker {
                number: worker,
                only: (worker < kept).then_some(Lane::Transactional),
                app: app.clone(),
                queue: queue.clone(),
                options: options.clone(),
                stop: stop.clone(),
                in_flight: in_flight.clone(),
            };
            tasks.spawn(worker.run());
        }
        WorkerPool {
            stop,
            tasks,
            queue,
            in_flight,
        }
    }

    /// Stop leasing and starting deliveries, let the jobs in hand end for up to `grace`,
    /// then release the rest.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.shutdown.cancel();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            let unfinished: Vec<String> = self
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain()
                .collect();
            for job_id in unfinished {
                if let Err(e) = self
                    .queue
                    .release(&job_id, Duration::ZERO, None, false)
                    .await
                {
                    tracing::warn!(job_id, error = %e, "could not release a job at shutdown; its lease will expire");
                }
            }
        }
    }
}

struct Worker {
    number: usize,
    /// The only lane this worker leases, if it is kept for one.
    only: Option<Lane>,
    app: Arc<App>,
    queue: Arc<dyn LeaseQueue>,
    options: PoolOptions,
    stop: Stop,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

impl Worker {
    async fn run(self) {
        while !self.stop.shutdown.is_cancelled() {
            let filter = LeaseFilter {
                full: self.app.slots.full(),
                only: self.only,
            };
            match self.queue.lease(self.options.lease, &filter).await {
                Ok(Some(leased)) => self.handle(leased).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.queue.wait_for_jobs(self.options.idle_poll) => {}
                        _ = self.stop.shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = self.number, error = %e, "could not lease a job");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn handle(&self, leased: Leased) {
        let job_id = leased.job.id.clone();
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.clone());
        settle(
            &self.app,
            self.queue.as_ref(),
            &self.options,
            leased,
            &self.stop,
        )
        .await;
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job_id);
    }
}

/// Run every job that is visible now, one at a time, until none is left; returns how many
/// ran. Jobs enqueued meanwhile with no delay run too. (Tests and one-shot tools use this;
/// the pool does the same per job.)
pub async fn drain(
    app: &App,
    queue: &dyn LeaseQueue,
    options: &PoolOptions,
) -> Result<usize, crate::StoreError> {
    let mut ran = 0;
    while let Some(leased) = queue.lease(options.lease, &LeaseFilter::default()).await? {
        settle(app, queue, options, leased, &Stop::never()).await;
        ran += 1;
    }
    Ok(ran)
}

/// Run one job leased by the caller and settle it, as a worker of the pool does.
pub async fn run_leased(app: &App, queue: &dyn LeaseQueue, options: &PoolOptions, leased: Leased) {
    settle(app, queue, options, leased, &Stop::never()).await;
}

/// Process one leased job and ack, release or bury it according to the outcome, in the
/// job's span: every log line of it carries `job_id`, `request_id` and `kind`.
async fn settle(
    app: &App,
    queue: &dyn LeaseQueue,
    options: &PoolOptions,
    leased: Leased,
    stop: &Stop,
) {
    let span = processor::job_span(&leased.job);
    settle_job(app, queue, options, leased, stop)
        .instrument(span)
        .await;
}

async fn settle_job(
    app: &App,
    queue: &dyn LeaseQueue,
    options: &PoolOptions,
    leased: Leased,
    stop: &Stop,
) {
    let job = &leased.job;
    let started = std::time::Instant::now();
    // A panic in one job (a bug) fails that job alone, as a store error would: the worker
    // lives on and the job is retried, then kept as dead.
    let result = AssertUnwindSafe(processor::process_until(app, job, stop))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!("a job panicked");
            Err(crate::StoreError::new("the job panicked"))
        });
    let settled = match result {
        Ok(JobReport {
            run_again_after: Some(after),
            ..
        }) => queue.postpone(&job.id, after).await,
        Ok(report) => {
            report.log(job, started.elapsed());
            queue.ack(&job.id).await
        }
        Err(e) if e.is_corrupt() => {
            // A record this job needs cannot be read: no attempt can succeed.
            tracing::error!(error = %e, "job kept as dead at once");
            queue
                .release(&job.id, Duration::ZERO, Some(e.to_string()), true)
                .await
        }
        Err(e) => {
            let dead = leased.attempts >= options.max_job_attempts;
            let delay = Duration::from_millis(500u64 << leased.attempts.min(8));
            tracing::warn!(
                attempts = leased.attempts,
                dead,
                error = %e,
                "job failed"
            );
            queue
                .release(&job.id, delay, Some(e.to_string()), dead)
                .await
        }
    };
    if let Err(e) = settled {
        tracing::warn!(error = %e, "could not settle a job; its lease will expire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_in_eight_is_kept_for_transactional_jobs_but_never_all() {
        assert_eq!(
            transactional_workers(1),
            0,
            "a lone worker serves both lanes"
        );
        assert_eq!(transactional_workers(2), 1);
        assert_eq!(transactional_workers(8), 1);
        assert_eq!(transactional_workers(32), 4);
    }
}
