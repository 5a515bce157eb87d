//! The retention sweep: what the embedded store deletes once it is old, and how the space
//! is given back.
//!
//! A request finished (every user final, no job left) before the retention period is
//! deleted with its outcomes and expansions; dead jobs that died before it, and
//! idempotency keys past their 24 hours, too. A request's data goes only once no request
//! and no user's `last_request` refers to it any more: a user keeps seeing the data of the
//! last request that reached them, however old. Deletes run in small transactions (a few
//! thousand rows each, hundreds of requests at a time) so that accepts never wait long
//! behind them, and the search for unreferenced data is a read beside the writer; then the freed pages
//! are handed back to the file system (`incremental_vacuum`) a few at a time.

use crate::Sqlite;
use herald_core::domain::now_ms;
use herald_core::ports::IDEMPOTENCY_WINDOW_MS;
use herald_core::StoreError;
use rusqlite::params;
use serde::Serialize;
use std::time::Duration;

/// Rows deleted per transaction.
const CHUNK: i64 = 2_000;
/// Finished requests deleted together (their outcomes in chunks, then the records).
const REQUESTS_PER_STEP: i64 = 500;
/// Pages handed back per step.
const VACUUM_STEP: i64 = 2_000;

/// What one sweep deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub requests: u64,
    pub outcomes: u64,
    pub expansions: u64,
    pub dead_jobs: u64,
    pub data: u64,
    pub idempotency_keys: u64,
    /// Pages handed back to the file system.
    pub pages_freed: u64,
}

impl Sqlite {
    /// Delete what finished more than `keep` ago (see the module's doc).
    pub async fn sweep(&self, keep: Duration) -> Result<Swept, StoreError> {
        let cutoff = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        let mut swept = Swept::default();
        self.sweep_requests(cutoff, &mut swept).await?;
        swept.dead_jobs = self
            .delete_in_chunks(
                "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
                   WHERE state = 'dead' AND died_at < CAST(?1 AS INTEGER) LIMIT ?2)",
                cutoff.to_string(),
            )
            .await?;
        swept.idempotency_keys = self
            .delete_in_chunks(
                "DELETE FROM idempotency WHERE (event_id, key) IN (SELECT event_id, key
                   FROM idempotency WHERE at < CAST(?1 AS INTEGER) LIMIT ?2)",
                (now_ms() - IDEMPOTENCY_WINDOW_MS).to_string(),
            )
            .await?;
        swept.data = self.sweep_orphan_data().await?;
        swept.pages_freed = self.give_space_back().await?;
        Ok(swept)
    }

    /// Finished requests older than `cutoff`, [`REQUESTS_PER_STEP`] at a time, with their
    /// outcomes and expansion cursors.
    async fn sweep_requests(&self, cutoff: i64, swept: &mut Swept) -> Result<(), StoreError> {
        loop {
            let ids: Vec<String> = self
                .read(move |conn| {
                    conn.prepare_cached(
                        "SELECT id FROM requests r
                          WHERE created_at < ?1 AND coalesce(updated_at, created_at) < ?1
                            AND (state IN ('cancelled', 'aborted')
                                 OR (expansions_pending = 0
                                     AND delivered + not_found + failed + cancelled >= targeted))
                            AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.request_id = r.id)
                          LIMIT ?2",
                    )?
                    .query_map(params![cutoff, REQUESTS_PER_STEP], |r| r.get(0))?
                    .collect()
                })
                .await?;
            if ids.is_empty() {
                break;
            }
            let ids = serde_json::to_string(&ids).map_err(StoreError::new)?;
            swept.outcomes += self
                .delete_in_chunks(
                    "DELETE FROM outcomes WHERE (request_id, user_key) IN
                       (SELECT request_id, user_key FROM outcomes
                         WHERE request_id IN (SELECT value FROM json_each(?1)) LIMIT ?2)",
                    ids.clone(),
                )
                .await?;
            let (expansions, requests) = self
                .transaction(move |tx| {
                    let expansions = tx.execute(
                        "DELETE FROM expansions WHERE request_id IN (SELECT value FROM json_each(?1))",
                        [&ids],
                    )?;
                    tx.execute(
                        "DELETE FROM open_bulk WHERE request_id IN (SELECT value FROM json_each(?1))",
                        [&ids],
                    )?;
                    let requests = tx.execute(
                        "DELETE FROM requests WHERE id IN (SELECT value FROM json_each(?1))",
                        [&ids],
                    )?;
                    Ok((expansions as u64, requests as u64))
                })
                .await?;
            swept.expansions += expansions;
            swept.requests += requests;
        }
        Ok(())
    }

    /// Delete the data that no request and no user refers to any more; how many.
    async fn sweep_orphan_data(&self) -> Result<u64, StoreError> {
        let mut deleted = 0;
        // Data no request and no user refers to any more, found by a read (one pass over
        // the users, beside the writer, not in its way), then deleted in chunks. What the
        // read found stays unreferenced: only requests still present are delivered, so no
        // user comes to refer to a deleted request's data.
        let orphans: Vec<String> = self
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT request_id FROM request_data
                      WHERE request_id NOT IN (SELECT id FROM requests)
                        AND request_id NOT IN (SELECT last_request_id FROM users
                                                WHERE last_request IS NULL
                                                  AND last_request_id IS NOT NULL)",
                )?
                .query_map([], |r| r.get(0))?
                .collect()
            })
            .await?;
        for chunk in orphans.chunks(CHUNK as usize) {
            let ids = serde_json::to_string(chunk).map_err(StoreError::new)?;
            deleted += self
                .transaction(move |tx| {
                    tx.execute(
                        "DELETE FROM request_data WHERE request_id IN (SELECT value FROM json_each(?1))",
                        [&ids],
                    )
                    .map(|n| n as u64)
                })
                .await?;
        }
        Ok(deleted)
    }

    /// Run `statement` (deleting at most `?2` rows matching `?1`) until it deletes none.
    async fn delete_in_chunks(
        &self,
        statement: &'static str,
        key: String,
    ) -> Result<u64, StoreError> {
        let mut deleted = 0;
        loop {
            let key = key.clone();
            let n = self
                .transaction(move |tx| tx.execute(statement, params![key, CHUNK]))
                .await?;
            deleted += n as u64;
            if (n as i64) < CHUNK {
                return Ok(deleted);
            }
        }
    }

    /// Hand free pages back to the file system, a step at a time; how many.
    async fn give_space_back(&self) -> Result<u64, StoreError> {
        let mut freed = 0;
        loop {
            let (before, after) = self
                .write(|conn| {
                    let before: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                    if before > 0 {
                        conn.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_STEP})"))?;
                    }
                    let after: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
                    Ok((before, after))
                })
                .await?;
            freed += (before - after).max(0) as u64;
            if after == 0 || after >= before {
                return Ok(freed);
            }
        }
    }
}
