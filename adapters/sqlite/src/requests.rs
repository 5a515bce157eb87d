//! Requests in SQLite: the [`Intake`], [`RequestLog`] and [`OpenRequests`] ports.
//!
//! Accepting a request is one transaction: the request row, its expansion rows and its
//! first jobs commit together or not at all. Outcomes are one row per (request, user key);
//! inserting one that exists changes nothing, which is what makes a redelivered job count
//! each user once. Counters and the error and delivery samples live on the request row
//! and move in the same transaction as the outcomes they count.

use crate::queue::insert_jobs;
use crate::{from_json, now_ms, to_json, typed, Sqlite};
use async_trait::async_trait;
use herald_core::domain::{Audience, Job, Outcome, RequestRecord, RequestState};
use herald_core::ids::{BotId, EventId, RequestId};
use herald_core::lane::Lane;
use herald_core::ports::{
    ErrorSample, Expansion, Intake, OpenRequest, OpenRequests, Recorded, Remember, Remembered,
    RequestLog, RequestProgress, IDEMPOTENCY_WINDOW_MS,
};
use herald_core::samples;
use herald_core::StoreError;
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::{BTreeMap, HashSet};

#[async_trait]
impl Intake for Sqlite {
    async fn accept(
        &self,
        record: &RequestRecord,
        targeted: Option<u64>,
        jobs: Vec<Job>,
        remember: Option<&Remember>,
    ) -> Result<Recorded, StoreError> {
        // The data is stored once, in `request_data`; the record keeps `{}`.
        let bare = RequestRecord {
            data: Default::default(),
            ..record.clone()
        };
        let accept = Accept {
            text: to_json(&bare).map_err(StoreError::new)?,
            data: to_json(&record.data).map_err(StoreError::new)?,
            record: record.clone(),
            targeted,
            jobs,
            remember: remember.cloned(),
        };
        let recorded = self
            .durable_transaction(move |tx| record_accept(tx, &accept))
            .await?;
        if recorded == Recorded::New {
            self.notify_jobs();
        }
        Ok(recorded)
    }

    async fn remembered(
        &self,
        event_id: &EventId,
        key: &str,
    ) -> Result<Option<Remembered>, StoreError> {
        let event_id = event_id.as_str();
        let (event_id, key) = (event_id.to_string(), key.to_string());
        self.read(move |conn| remembered(conn, &event_id, &key))
            .await
    }

    async fn backlog(&self, bot_id: &BotId, up_to: u64) -> Result<u64, StoreError> {
        let bot_id = bot_id.as_str();
        self.inner.backlogs.count(self, bot_id, up_to).await
    }

    async fn abandon(
        &self,
        event_id: &EventId,
        key: &str,
        request_id: &RequestId,
    ) -> Result<(), StoreError> {
        let request_id = request_id.as_str();
        let event_id = event_id.as_str();
        // Accepts commit whole here, so this finds nothing to do unless a request was left
        // `accepting` by other means; it is still done right.
        let (event_id, key, request_id) = (
            event_id.to_string(),
            key.to_string(),
            request_id.to_string(),
        );
        self.durable_transaction(move |tx| {
            tx.execute(
                "UPDATE requests SET state = 'aborted' WHERE id = ?1 AND state = 'accepting'",
                [&request_id],
            )?;
            tx.execute(
                "DELETE FROM idempotency WHERE event_id = ?1 AND key = ?2 AND request_id = ?3",
                [&event_id, &key, &request_id],
            )?;
            Ok(())
        })
        .await
    }
}

/// One request to record, with its first jobs (see [`crate::group_commit`]).
pub(crate) struct Accept {
    pub record: RequestRecord,
    /// The record as JSON, without its data.
    pub text: String,
    /// The record's data as JSON.
    pub data: String,
    pub targeted: Option<u64>,
    pub jobs: Vec<Job>,
    pub remember: Option<Remember>,
}

/// Record one accept in `tx`: its idempotency key (unless taken: then nothing), the
/// request row, its expansion rows and its jobs.
pub(crate) fn record_accept(tx: &Transaction, accept: &Accept) -> rusqlite::Result<Recorded> {
    let record = &accept.record;
    if let Some(remember) = &accept.remember {
        // The writer is one connection: checking then inserting in this transaction is
        // atomic, so of two requests with one key only one records.
        if let Some(first) = remembered(tx, &remember.event_id, &remember.key)? {
            return Ok(Recorded::Duplicate(first));
        }
        let answer = &remember.answer;
        tx.prepare_cached(
            "INSERT OR REPLACE INTO idempotency (event_id, key, request_id, body_hash, status, answer, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            remember.event_id.as_str(),
            remember.key,
            answer.request_id.as_str(),
            answer.body_hash.to_vec(),
            answer.status,
            answer.answer,
            answer.at
        ])?;
        // Forget keys past the window now and then (cheap: an index range).
        tx.prepare_cached("DELETE FROM idempotency WHERE at < ?1")?
            .execute([now_ms() - IDEMPOTENCY_WINDOW_MS])?;
    }
    let shards = match record.audience {
        Audience::Everyone { shards, .. } => shards,
        _ => 0,
    };
    tx.prepare_cached(
        "INSERT INTO requests (id, event_id, record, state, targeted, expansions_pending, created_at)
         VALUES (?1, ?2, ?3, 'accepted', ?4, ?5, ?6)",
    )?
    .execute(params![
        record.id.as_str(),
        record.event_id.as_str(),
        accept.text,
        accept.targeted.unwrap_or(0) as i64,
        shards,
        record.created_at
    ])?;
    tx.prepare_cached("INSERT INTO request_data (request_id, data) VALUES (?1, ?2)")?
        .execute(params![record.id.as_str(), accept.data])?;
    for shard in 0..shards {
        tx.prepare_cached("INSERT INTO expansions (request_id, shard) VALUES (?1, ?2)")?
            .execute(params![record.id.as_str(), shard])?;
    }
    if record.lane == Lane::Bulk {
        tx.prepare_cached("INSERT INTO open_bulk (bot_id, request_id) VALUES (?1, ?2)")?
            .execute(params![record.bot_id.as_str(), record.id.as_str()])?;
    }
    // A scheduled request's jobs become visible at its `send_at`.
    insert_jobs(tx, &accept.jobs, record.due_in(now_ms()))?;
    Ok(Recorded::New)
}

/// The answer remembered under a key, if inside the window.
fn remembered(
    conn: &rusqlite::Connection,
    event_id: &str,
    key: &str,
) -> rusqlite::Result<Option<Remembered>> {
    conn.prepare_cached(
        "SELECT request_id, body_hash, status, answer, at FROM idempotency
         WHERE event_id = ?1 AND key = ?2 AND at >= ?3",
    )?
    .query_row(
        params![event_id, key, now_ms() - IDEMPOTENCY_WINDOW_MS],
        |r| {
            let hash: Vec<u8> = r.get(1)?;
            Ok(Remembered {
                request_id: typed(r, 0, RequestId::parse)?,
                body_hash: hash.try_into().unwrap_or([0u8; 32]),
                status: r.get(2)?,
                answer: r.get(3)?,
                at: r.get(4)?,
            })
        },
    )
    .optional()
}

/// The columns [`progress_row`] reads, in order.
pub(crate) const PROGRESS_COLUMNS: &str = "record, state, targeted, expansions_pending, \
     delivered, not_found, failed, error_samples, delivery_samples, updated_at, \
     failure_reasons, cancelled";

/// A request's progress from a row of [`PROGRESS_COLUMNS`].
pub(crate) fn progress_row(row: &rusqlite::Row) -> rusqlite::Result<RequestProgress> {
    let record: String = row.get(0)?;
    let state: String = row.get(1)?;
    let errors: String = row.get(7)?;
    let deliveries: String = row.get(8)?;
    let errors: Vec<(String, String, String)> = from_json(&errors)?;
    Ok(RequestProgress {
        record: from_json(&record)?,
        state: RequestState::from_name(&state),
        targeted: row.get::<_, i64>(2)? as u64,
        expansions_pending: row.get(3)?,
        delivered: row.get::<_, i64>(4)? as u64,
        not_found: row.get::<_, i64>(5)? as u64,
        failed: row.get::<_, i64>(6)? as u64,
        cancelled: row.get::<_, i64>(11)? as u64,
        error_samples: errors
            .into_iter()
            .map(|(user, reason, message)| ErrorSample {
                user,
                reason,
                message,
            })
            .collect(),
        delivery_samples: from_json(&deliveries)?,
        updated_at: row.get(9)?,
        failed_by_reason: from_json(&row.get::<_, String>(10)?)?,
    })
}

#[async_trait]
impl RequestLog for Sqlite {
    async fn progress(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<RequestProgress>, StoreError> {
        let request_id = request_id.as_str();
        let request_id = request_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {PROGRESS_COLUMNS} FROM requests WHERE id = ?1"
            ))?
            .query_row([&request_id], progress_row)
            .optional()
        })
        .await
    }

    async fn event_of(&self, request_id: &RequestId) -> Result<Option<EventId>, StoreError> {
        let request_id = request_id.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT event_id FROM requests WHERE id = ?1")?
                .query_row([request_id.as_str()], |row| typed(row, 0, EventId::parse))
                .optional()
        })
        .await
    }

    async fn record(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<(RequestRecord, RequestState)>, StoreError> {
        let request_id = request_id.as_str();
        let request_id = request_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT r.record, r.state, d.data FROM requests r
                 LEFT JOIN request_data d ON d.request_id = r.id WHERE r.id = ?1",
            )?
            .query_row([&request_id], |row| {
                let record: String = row.get(0)?;
                let state: String = row.get(1)?;
                let data: Option<String> = row.get(2)?;
                let mut record: RequestRecord = from_json(&record)?;
                if let Some(data) = data {
                    record.data = from_json(&data)?;
                }
                Ok((record, RequestState::from_name(&state)))
            })
            .optional()
        })
        .await
    }

    async fn finished(
        &self,
        request_id: &RequestId,
        user_keys: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let request_id = request_id.as_str();
        let request_id = request_id.to_string();
        let keys = user_keys.to_vec();
        self.read(move |conn| {
            let mut lookup = conn
                .prepare_cached("SELECT 1 FROM outcomes WHERE request_id = ?1 AND user_key = ?2")?;
            let mut done = HashSet::new();
            for key in keys {
                if lookup.exists(params![request_id, key])? {
                    done.insert(key);
                }
            }
            Ok(done)
        })
        .await
    }

    async fn record_outcomes(
        &self,
        request_id: &RequestId,
        outcomes: &[(String, Outcome)],
    ) -> Result<(), StoreError> {
        let request_id = request_id.as_str();
        if outcomes.is_empty() {
            return Ok(());
        }
        let request_id = request_id.to_string();
        let outcomes = outcomes.to_vec();
        self.transaction(move |tx| {
            let now = now_ms();
            let (errors, deliveries, reasons): (String, String, String) = tx
                .prepare_cached(
                    "SELECT error_samples, delivery_samples, failure_reasons FROM requests WHERE id = ?1",
                )?
                .query_row([&request_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let mut errors: Vec<(String, String, String)> = from_json(&errors)?;
            let mut reasons: BTreeMap<String, u64> = from_json(&reasons)?;
            let mut deliveries: Vec<serde_json::Value> = from_json(&deliveries)?;
            let (errors_before, deliveries_before) = (errors.len(), deliveries.len());
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO outcomes (request_id, user_key, outcome, reason, at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let (mut delivered, mut not_found, mut failed, mut cancelled) = (0i64, 0i64, 0i64, 0i64);
            for (key, outcome) in &outcomes {
                let (name, reason) = match &outcome {
                    Outcome::Delivered { .. } => ("delivered", None),
                    Outcome::NotFound => ("not_found", None),
                    Outcome::Cancelled => ("cancelled", None),
                    Outcome::Failed { reason, .. } => ("failed", Some(reason.as_str())),
                };
                if insert.execute(params![request_id, key, name, reason, now])? == 0 {
                    continue; // already final: counted before
                }
                match outcome {
                    Outcome::Delivered { detail } => {
                        delivered += 1;
                        if let (Some(detail), 1) = (detail, samples::admit_deliveries(deliveries.len(), 1))
                        {
                            deliveries.push(detail.clone());
                        }
                    }
                    Outcome::NotFound => not_found += 1,
                    Outcome::Cancelled => cancelled += 1,
                    Outcome::Failed { reason, message } => {
                        failed += 1;
                        *reasons.entry(reason.clone()).or_default() += 1;
                        let kept = errors.iter().map(|(_, r, _)| r.as_str());
                        if !samples::admit_errors(kept, [reason.as_str()]).is_empty() {
                            errors.push((key.clone(), reason.clone(), message.clone()));
                        }
                    }
                }
            }
            let samples_changed =
                errors.len() != errors_before || deliveries.len() != deliveries_before;
            tx.prepare_cached(
                "UPDATE requests SET delivered = delivered + ?2, not_found = not_found + ?3,
                        failed = failed + ?4, cancelled = cancelled + ?10, updated_at = ?5,
                        error_samples = CASE WHEN ?6 THEN ?7 ELSE error_samples END,
                        delivery_samples = CASE WHEN ?6 THEN ?8 ELSE delivery_samples END,
                        failure_reasons = CASE WHEN ?4 > 0 THEN ?9 ELSE failure_reasons END
                 WHERE id = ?1",
            )?
            .execute(params![
                request_id,
                delivered,
                not_found,
                failed,
                now,
                samples_changed,
                to_json(&errors)?,
                to_json(&deliveries)?,
                to_json(&reasons)?,
                cancelled
            ])?;
            Ok(())
        })
        .await
    }

    async fn expansion(&self, request_id: &RequestId, shard: u32) -> Result<Expansion, StoreError> {
        let request_id = request_id.as_str();
        let request_id = request_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT cursor, done FROM expansions WHERE request_id = ?1 AND shard = ?2",
            )?
            .query_row(params![request_id, shard], |r| {
                Ok(Expansion {
                    cursor: r.get(0)?,
                    done: r.get(1)?,
                })
            })
            .optional()
            // An unknown expansion is treated as finished: there is nothing to page.
            .map(|found| {
                found.unwrap_or(Expansion {
                    cursor: None,
                    done: true,
                })
            })
        })
        .await
    }

    async fn advance_expansion(
        &self,
        request_id: &RequestId,
        shard: u32,
        from: Option<&str>,
        to: Option<&str>,
        added: u64,
    ) -> Result<bool, StoreError> {
        let request_id = request_id.as_str();
        let (request_id, from, to) = (
            request_id.to_string(),
            from.map(String::from),
            to.map(String::from),
        );
        self.transaction(move |tx| {
            let done = to.is_none();
            let moved = tx
                .prepare_cached(
                    "UPDATE expansions SET cursor = ?3, done = ?4
                     WHERE request_id = ?1 AND shard = ?2 AND done = 0 AND cursor IS ?5",
                )?
                .execute(params![request_id, shard, to, done, from])?;
            if moved == 1 {
                tx.prepare_cached(
                    "UPDATE requests SET targeted = targeted + ?2,
                            expansions_pending = expansions_pending - ?3
                     WHERE id = ?1",
                )?
                .execute(params![request_id, added as i64, done as i64])?;
            }
            Ok(moved == 1)
        })
        .await
    }
}

impl Sqlite {
    /// Mark a request's state (used by tests of the accepting protocol).
    pub async fn set_request_state(
        &self,
        request_id: &str,
        state: RequestState,
    ) -> Result<(), StoreError> {
        let request_id = request_id.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE requests SET state = ?2 WHERE id = ?1",
                params![request_id, state.as_str()],
            )
            .map(|_| ())
        })
        .await
    }
}

#[async_trait]
impl OpenRequests for Sqlite {
    async fn open_before(
        &self,
        bot: &BotId,
        before: &RequestId,
        limit: usize,
    ) -> Result<Vec<OpenRequest>, StoreError> {
        let (bot, before) = (bot.to_string(), before.to_string());
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT o.request_id, r.state, r.targeted,
                        r.delivered + r.not_found + r.failed + r.cancelled, r.expansions_pending,
                        json_extract(r.record, '$.send_at')
                   FROM open_bulk o LEFT JOIN requests r ON r.id = o.request_id
                  WHERE o.bot_id = ?1 AND o.request_id < ?2
                  ORDER BY o.request_id LIMIT ?3",
            )?;
            let rows = statement.query_map(params![bot, before, limit as i64], |r| {
                let state: Option<String> = r.get(1)?;
                Ok((
                    typed(r, 0, RequestId::parse)?,
                    state,
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(5)?,
                ))
            })?;
            let mut open = Vec::new();
            for row in rows {
                let (id, state, targeted, finished, expansions, send_at) = row?;
                open.push(OpenRequest {
                    request_id: id,
                    state: state.as_deref().map(RequestState::from_name),
                    targeted: targeted.max(0) as u64,
                    finished: finished.max(0) as u64,
                    expansions_pending: expansions.max(0) as u32,
                    send_at,
                });
            }
            Ok(open)
        })
        .await
    }

    async fn close(&self, bot: &BotId, requests: &[RequestId]) -> Result<(), StoreError> {
        if requests.is_empty() {
            return Ok(());
        }
        let bot = bot.to_string();
        let ids =
            serde_json::to_string(&requests.iter().map(RequestId::as_str).collect::<Vec<_>>())
                .map_err(StoreError::new)?;
        self.transaction(move |tx| {
            tx.prepare_cached(
                "DELETE FROM open_bulk WHERE bot_id = ?1
                    AND request_id IN (SELECT value FROM json_each(?2))",
            )?
            .execute(params![bot, ids])?;
            Ok(())
        })
        .await
    }
}
