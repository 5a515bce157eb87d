//! The durable job queue in the same SQLite file: the [`JobQueue`] and [`LeaseQueue`] ports.
//!
//! A job is `ready` with a `visible_at` time and a `priority` (its lane: transactional 0,
//! bulk 1). [`LeaseQueue::lease`] takes the oldest visible job of the first priority,
//! counts an attempt and hides it for the lease time, so a worker that dies leaves it
//! to reappear. [`LeaseQueue::ack`] deletes a finished job; [`LeaseQueue::release`] makes it visible
//! again after a delay, or marks it `dead` (kept, with its last error) once it has used
//! its attempts. Jobs are committed before anyone is told they exist, so they survive a
//! crash or a restart; [`LeaseQueue::recover_leases`] hands a crashed run's jobs back at once.

use crate::{from_json, now_ms, to_json, Sqlite};
use async_trait::async_trait;
use herald_core::domain::Job;
use herald_core::ids::BotId;
use herald_core::lane::Lane;
use herald_core::ports::{JobQueue, LeaseFilter, LeaseQueue, Leased};
use herald_core::StoreError;
use rusqlite::{params, OptionalExtension, Transaction};
use std::time::Duration;

/// Counts of the queue, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    pub ready: u64,
    pub dead: u64,
    /// Milliseconds since the oldest ready job became due, however often it was postponed
    /// since (0 when none is waiting).
    pub oldest_ready_ms: u64,
}

/// `delay` after `now` (Unix milliseconds), saturating rather than overflowing.
fn later(now: i64, delay: Duration) -> i64 {
    now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

/// Insert `jobs` in `tx`, visible after `delay`.
pub(crate) fn insert_jobs(tx: &Transaction, jobs: &[Job], delay: Duration) -> rusqlite::Result<()> {
    let now = now_ms();
    let visible_at = later(now, delay);
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO jobs (id, request_id, kind, payload, visible_at, due_at, created_at,
                                     bot_id, priority)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6,
                 (SELECT json_extract(record, '$.bot_id') FROM requests WHERE id = ?2), ?7)",
    )?;
    for job in jobs {
        insert.execute(params![
            job.id,
            job.request_id.as_str(),
            job.kind_name(),
            to_json(job)?,
            visible_at,
            now,
            priority(job.lane)
        ])?;
    }
    Ok(())
}

/// A job's `priority` column: transactional jobs (0) are leased before bulk ones (1).
fn priority(lane: Lane) -> i64 {
    match lane {
        Lane::Transactional => 0,
        Lane::Bulk => 1,
    }
}

/// How the lease query names a (bot, lane) at its share: `bot/priority`.
fn full_key(bot: &BotId, lane: Lane) -> String {
    format!("{}/{}", bot.as_str(), priority(lane))
}

#[async_trait]
impl JobQueue for Sqlite {
    async fn enqueue(&self, jobs: Vec<Job>, delay: Duration) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.transaction(move |tx| insert_jobs(tx, &jobs, delay))
            .await?;
        self.notify_jobs();
        Ok(())
    }

    async fn bury(&self, job: Job, reason: &str) -> Result<(), StoreError> {
        let reason = reason.to_string();
        self.transaction(move |tx| {
            insert_jobs(tx, std::slice::from_ref(&job), Duration::ZERO)?;
            tx.execute(
                "UPDATE jobs SET state = 'dead', last_error = ?2, died_at = ?3 WHERE id = ?1",
                params![job.id, reason, now_ms()],
            )
            .map(|_| ())
        })
        .await
    }
}

#[async_trait]
impl LeaseQueue for Sqlite {
    async fn lease(
        &self,
        lease: Duration,
        filter: &LeaseFilter,
    ) -> Result<Option<Leased>, StoreError> {
        let full: Vec<String> = filter
            .full
            .iter()
            .map(|(bot, lane)| full_key(bot, *lane))
            .collect();
        let full = serde_json::to_string(&full).map_err(StoreError::new)?;
        let only = filter.only.map(priority);
        self.transaction(move |tx| {
            // A row whose payload does not read as a job can never run: it goes to the dead
            // letters at once, with its reason, and the next job is leased in its place.
            loop {
                let now = now_ms();
                let row: Option<(String, String, u32)> = tx
                    .prepare_cached(
                        "UPDATE jobs SET visible_at = ?2, attempts = attempts + 1, leased = 1
                         WHERE id = (SELECT id FROM jobs INDEXED BY jobs_by_priority
                                      WHERE state = 'ready' AND visible_at <= ?1
                                        AND (?4 IS NULL OR priority = ?4)
                                        AND NOT (kind = 'deliver' AND bot_id IS NOT NULL
                                                 AND bot_id || '/' || priority
                                                     IN (SELECT value FROM json_each(?3)))
                                      ORDER BY priority, visible_at LIMIT 1)
                         RETURNING id, payload, attempts",
                    )?
                    .query_row(
                        params![now, now + lease.as_millis() as i64, full, only],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                let Some((id, payload, attempts)) = row else {
                    return Ok(None);
                };
                match from_json(&payload) {
                    Ok(job) => return Ok(Some(Leased { job, attempts })),
                    Err(_) => {
                        tracing::error!(job_id = %id, "a queued job cannot be read; kept as dead");
                        tx.execute(
                            "UPDATE jobs SET state = 'dead', leased = 0, died_at = ?2,
                                    last_error = 'corrupt record: the job cannot be read'
                             WHERE id = ?1",
                            params![id, now],
                        )?;
                    }
                }
            }
        })
        .await
    }

    /// The job is done: delete it.
    async fn ack(&self, job_id: &str) -> Result<(), StoreError> {
        let job_id = job_id.to_string();
        self.transaction(move |tx| {
            tx.execute("DELETE FROM jobs WHERE id = ?1", [&job_id])
                .map(|_| ())
        })
        .await
    }

    /// Give the job back: visible again after `delay`, or `dead` when `dead` is set.
    async fn release(
        &self,
        job_id: &str,
        delay: Duration,
        error: Option<String>,
        dead: bool,
    ) -> Result<(), StoreError> {
        let job_id = job_id.to_string();
        self.transaction(move |tx| {
            tx.execute(
                "UPDATE jobs SET visible_at = ?2, due_at = ?2, state = ?3, leased = 0,
                        last_error = coalesce(?4, last_error),
                        died_at = CASE WHEN ?3 = 'dead' THEN ?2 END
                 WHERE id = ?1",
                params![
                    job_id,
                    later(now_ms(), delay),
                    if dead { "dead" } else { "ready" },
                    error
                ],
            )
            .map(|_| ())
        })
        .await?;
        self.notify_jobs();
        Ok(())
    }

    /// Put a leased job back for `delay` without counting the attempt (it did not run: its
    /// request is still being accepted, the page before it has not recorded its cursor,
    /// or its bot's share was taken between lease and start). Its `due_at` stays, so the
    /// queue's oldest age counts the whole wait. (Jobs of a bot at its share are not
    /// leased at all: [`LeaseQueue::lease`].)
    async fn postpone(&self, job_id: &str, delay: Duration) -> Result<(), StoreError> {
        let job_id = job_id.to_string();
        self.transaction(move |tx| {
            tx.execute(
                "UPDATE jobs SET visible_at = ?2, leased = 0, attempts = max(attempts - 1, 0)
                 WHERE id = ?1",
                params![job_id, later(now_ms(), delay)],
            )
            .map(|_| ())
        })
        .await?;
        self.notify_jobs();
        Ok(())
    }

    /// Make jobs leased by a previous run of this server visible at once; returns how many.
    /// Only one `herald serve` works on a database file, so at start-up every lease is a
    /// dead worker's.
    async fn recover_leases(&self) -> Result<usize, StoreError> {
        let recovered = self
            .write(|conn| {
                conn.execute(
                    "UPDATE jobs SET leased = 0, visible_at = ?1 WHERE leased = 1",
                    [now_ms()],
                )
            })
            .await?;
        self.notify_jobs();
        Ok(recovered)
    }

    /// Wait until jobs are enqueued or released, or `timeout` passes.
    async fn wait_for_jobs(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.jobs_enqueued()).await;
    }
}

impl Sqlite {
    /// Jobs waiting (or leased) and dead.
    pub async fn queue_depth(&self) -> Result<QueueDepth, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT count(*) FILTER (WHERE state = 'ready'), count(*) FILTER (WHERE state = 'dead'),
                        min(due_at) FILTER (WHERE state = 'ready' AND leased = 0 AND due_at <= ?1)
                 FROM jobs",
                [now_ms()],
                |r| {
                    let oldest: Option<i64> = r.get(2)?;
                    Ok(QueueDepth {
                        ready: r.get::<_, i64>(0)? as u64,
                        dead: r.get::<_, i64>(1)? as u64,
                        oldest_ready_ms: oldest.map_or(0, |at| (now_ms() - at).max(0) as u64),
                    })
                },
            )
        })
        .await
    }
}
