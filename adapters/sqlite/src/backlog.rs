//! A bot's backlog: its jobs waiting in the queue, counted for the accept path.
//!
//! A count reads the `jobs_by_bot` index and stops at the cap it is asked about, so it
//! costs at most that many index entries; it is kept for [`FRESH_FOR`], so a bot accepting
//! thousands of requests a second is counted ten times a second, not each time. The cap
//! is therefore soft by what a bot can enqueue in that time.

use crate::Sqlite;
use herald_core::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a bot's count is used before it is read again.
pub const FRESH_FOR: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Backlogs {
    counted: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Backlogs {
    pub(crate) async fn count(
        &self,
        store: &Sqlite,
        bot_id: &str,
        up_to: u64,
    ) -> Result<u64, StoreError> {
        if let Some((at, n)) = self.lock().get(bot_id) {
            if at.elapsed() < FRESH_FOR {
                return Ok(*n);
            }
        }
        let (bot, limit) = (bot_id.to_string(), i64::try_from(up_to).unwrap_or(i64::MAX));
        let n: i64 = store
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT count(*) FROM (SELECT 1 FROM jobs
                      WHERE bot_id = ?1 AND state = 'ready' LIMIT ?2)",
                )?
                .query_row(rusqlite::params![bot, limit], |r| r.get(0))
            })
            .await?;
        let mut counted = self.lock();
        if counted.len() > 10_000 {
            counted.clear();
        }
        counted.insert(bot_id.to_string(), (Instant::now(), n as u64));
        Ok(n as u64)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u64)>> {
        self.counted.lock().unwrap_or_else(|e| e.into_inner())
    }
}
