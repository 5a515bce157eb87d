//! Operators' changes in SQLite: the admin ports.
//!
//! Bots, events and users are plain rows. Cancelling flips a pending request's state; its
//! jobs then count their users `cancelled` as they come up. Dead letters are the `dead`
//! rows of the job queue: a redrive reopens the `failed` outcomes of the job's users (and
//! takes them off the counters) and makes the job ready again with fresh attempts, in one
//! transaction, so counts stay exact however often it is done.

use crate::events::{event_row, EVENT_COLUMNS};
use crate::requests::{progress_row, PROGRESS_COLUMNS};
use crate::{from_json, now_ms, to_json, Sqlite};
use async_trait::async_trait;
use herald_core::admin::{
    Cancellation, DeadLetter, EventChanges, ImportReport, NewUser, Removal, Selection,
};
use herald_core::channels::{BotChanges, BotRecord, Connections};
use herald_core::domain::{Event, Job, JobKind, Object, RequestState, UserRef};
use herald_core::ids::{BotId, EventId, RequestId};
use herald_core::lane::Lane;
use herald_core::ports::admin::{BotAdmin, DeadLetterAdmin, EventAdmin, RequestAdmin, UserAdmin};
use herald_core::ports::RequestProgress;
use herald_core::status::rfc3339;
use herald_core::StoreError;
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::BTreeMap;

fn bot_row(row: &rusqlite::Row) -> rusqlite::Result<BotRecord> {
    Ok(BotRecord {
        id: row.get(0)?,
        connections: connections_of(&row.get::<_, String>(1)?)?,
        created_at: row.get(2)?,
    })
}

/// A bot's stored connections.
pub(crate) fn connections_of(json: &str) -> rusqlite::Result<Connections> {
    Connections::from_json(json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

const BOT_COLUMNS: &str = "id, connections, created_at";

/// Take the `failed` outcomes of these users off request `request_id`'s counters, so a
/// redriven job counts them again. Other outcomes stay.
fn reopen_failed(tx: &Transaction, request_id: &str, keys: &[String]) -> rusqlite::Result<()> {
    let mut reasons_taken: BTreeMap<String, u64> = BTreeMap::new();
    let mut reopened = 0i64;
    {
        let mut find = tx.prepare_cached(
            "DELETE FROM outcomes WHERE request_id = ?1 AND user_key = ?2 AND outcome = 'failed'
             RETURNING reason",
        )?;
        for key in keys {
            if let Some(reason) = find
                .query_row(params![request_id, key], |r| r.get::<_, Option<String>>(0))
                .optional()?
            {
                reopened += 1;
                *reasons_taken.entry(reason.unwrap_or_default()).or_default() += 1;
            }
        }
    }
    if reopened == 0 {
        return Ok(());
    }
    let reasons: String = tx.query_row(
        "SELECT failure_reasons FROM requests WHERE id = ?1",
        [request_id],
        |r| r.get(0),
    )?;
    let mut reasons: BTreeMap<String, u64> = from_json(&reasons)?;
    for (reason, taken) in reasons_taken {
        if let Some(count) = reasons.get_mut(&reason) {
            *count = count.saturating_sub(taken);
            if *count == 0 {
                reasons.remove(&reason);
            }
        }
    }
    tx.execute(
        "UPDATE requests SET failed = max(failed - ?2, 0), failure_reasons = ?3 WHERE id = ?1",
        params![request_id, reopened, to_json(&reasons)?],
    )?;
    Ok(())
}

/// The dead jobs `which` selects, oldest first.
/// The dead jobs `which` selects, oldest first: the id of each, and the job when its
/// payload reads (a corrupt one does not: it can be listed and purged, never redriven).
fn dead_jobs(tx: &Transaction, which: &Selection) -> rusqlite::Result<Vec<(String, Option<Job>)>> {
    let mut select = tx
        .prepare_cached("SELECT id, payload FROM jobs WHERE state = 'dead' ORDER BY died_at, id")?;
    let rows = select.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut jobs = Vec::new();
    for row in rows {
        let (id, payload) = row?;
        if which.includes(&id) {
            jobs.push((id, from_json(&payload).ok()));
        }
    }
    Ok(jobs)
}

#[async_trait]
impl BotAdmin for Sqlite {
    async fn create_bot(
        &self,
        bot_id: &BotId,
        connections: &Connections,
    ) -> Result<bool, StoreError> {
        let bot_id = bot_id.as_str();
        let (bot_id, connections) = (bot_id.to_string(), connections.to_json());
        self.durable_transaction(move |tx| {
            let added = tx.execute(
                "INSERT OR IGNORE INTO bots (id, created_at, connections) VALUES (?1, ?2, ?3)",
                params![bot_id, now_ms(), connections],
            )?;
            Ok(added > 0)
        })
        .await
    }

    async fn update_bot(&self, bot_id: &BotId, changes: &BotChanges) -> Result<bool, StoreError> {
        let bot_id = bot_id.as_str();
        let (bot_id, changes) = (bot_id.to_string(), changes.clone());
        self.durable_transaction(move |tx| {
            let stored: Option<String> = tx
                .prepare_cached("SELECT connections FROM bots WHERE id = ?1")?
                .query_row([&bot_id], |r| r.get(0))
                .optional()?;
            let Some(stored) = stored else {
                return Ok(false);
            };
            let mut connections = connections_of(&stored)?;
            connections.apply(&changes);
            tx.execute(
                "UPDATE bots SET connections = ?2 WHERE id = ?1",
                params![bot_id, connections.to_json()],
            )?;
            Ok(true)
        })
        .await
    }

    async fn bots(&self) -> Result<Vec<BotRecord>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {BOT_COLUMNS} FROM bots ORDER BY id"))?
                .query_map([], bot_row)?
                .collect()
        })
        .await
    }

    async fn bot_record(&self, bot_id: &BotId) -> Result<Option<BotRecord>, StoreError> {
        let bot_id = bot_id.as_str();
        let bot_id = bot_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT {BOT_COLUMNS} FROM bots WHERE id = ?1"))?
                .query_row([&bot_id], bot_row)
                .optional()
        })
        .await
    }

    async fn delete_bot(&self, bot_id: &BotId) -> Result<Removal, StoreError> {
        let bot_id = bot_id.as_str();
        let bot_id = bot_id.to_string();
        self.durable_transaction(move |tx| {
            let events: i64 = tx.query_row(
                "SELECT count(*) FROM events WHERE bot_id = ?1",
                [&bot_id],
                |r| r.get(0),
            )?;
            if events > 0 {
                return Ok(Removal::InUse(format!(
                    "bot {bot_id} has {events} event(s); delete them first"
                )));
            }
            match tx.execute("DELETE FROM bots WHERE id = ?1", [&bot_id])? {
                0 => Ok(Removal::NotFound),
                _ => Ok(Removal::Removed),
            }
        })
        .await
    }
}

#[async_trait]
impl EventAdmin for Sqlite {
    async fn create_event(&self, event: &Event) -> Result<(), StoreError> {
        let event = event.clone();
        self.change_events(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO bots (id, created_at) VALUES (?1, ?2)",
                params![event.bot_id.as_str(), now_ms()],
            )?;
            tx.execute(
                "INSERT INTO events (id, bot_id, name, secret_hash, action, enabled, rate_limit,
                                     created_at, lane)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    event.id.as_str(),
                    event.bot_id.as_str(),
                    event.name,
                    event.secret_hash.to_vec(),
                    to_json(&event.action)?,
                    event.enabled,
                    event.rate_limit.as_ref().map(to_json).transpose()?,
                    event.created_at,
                    event.lane.map(Lane::as_str)
                ],
            )
            .map(|_| ())
        })
        .await
    }

    async fn events(&self, bot_id: Option<&BotId>) -> Result<Vec<Event>, StoreError> {
        let bot_id = bot_id.map(BotId::as_str);
        let bot_id = bot_id.map(String::from);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE ?1 IS NULL OR bot_id = ?1 ORDER BY id"
            ))?
            .query_map([&bot_id], event_row)?
            .collect()
        })
        .await
    }

    async fn update_event(
        &self,
        event_id: &EventId,
        changes: &EventChanges,
    ) -> Result<bool, StoreError> {
        let event_id = event_id.as_str();
        let (event_id, changes) = (event_id.to_string(), changes.clone());
        self.change_events(move |tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM events WHERE id = ?1")?
                .exists([&event_id])?;
            if !exists {
                return Ok(false);
            }
            if let Some(name) = &changes.name {
                tx.execute(
                    "UPDATE events SET name = ?2 WHERE id = ?1",
                    params![event_id, name],
                )?;
            }
            if let Some(enabled) = changes.enabled {
                tx.execute(
                    "UPDATE events SET enabled = ?2 WHERE id = ?1",
                    params![event_id, enabled],
                )?;
            }
            if let Some(limit) = &changes.rate_limit {
                tx.execute(
                    "UPDATE events SET rate_limit = ?2 WHERE id = ?1",
                    params![event_id, limit.as_ref().map(to_json).transpose()?],
                )?;
            }
            if let Some(lane) = changes.lane {
                tx.execute(
                    "UPDATE events SET lane = ?2 WHERE id = ?1",
                    params![event_id, lane.map(Lane::as_str)],
                )?;
            }
            Ok(true)
        })
        .await
    }

    async fn rotate_secret(
        &self,
        event_id: &EventId,
        new_hash: [u8; 32],
        previous_valid_until: i64,
    ) -> Result<bool, StoreError> {
        let event_id = event_id.as_str();
        let event_id = event_id.to_string();
        self.change_events(move |tx| {
            tx.execute(
                "UPDATE events SET previous_secret_hash = secret_hash,
                        previous_secret_until = ?3, secret_hash = ?2
                 WHERE id = ?1",
                params![event_id, new_hash.to_vec(), previous_valid_until],
            )
            .map(|n| n == 1)
        })
        .await
    }

    async fn delete_event(&self, event_id: &EventId) -> Result<bool, StoreError> {
        let event_id = event_id.as_str();
        let event_id = event_id.to_string();
        self.change_events(move |tx| {
            tx.execute("DELETE FROM idempotency WHERE event_id = ?1", [&event_id])?;
            tx.execute("DELETE FROM events WHERE id = ?1", [&event_id])
                .map(|n| n == 1)
        })
        .await
    }
}

#[async_trait]
impl UserAdmin for Sqlite {
    async fn import_users(
        &self,
        bot_id: &BotId,
        users: &[NewUser],
    ) -> Result<ImportReport, StoreError> {
        let bot_id = bot_id.as_str();
        self.insert_users(bot_id, users).await
    }

    async fn user_document(
        &self,
        bot_id: &BotId,
        user: &UserRef,
    ) -> Result<Option<Object>, StoreError> {
        let bot_id = bot_id.as_str();
        self.user_row(bot_id, user).await
    }

    async fn delete_user(&self, bot_id: &BotId, user: &UserRef) -> Result<bool, StoreError> {
        let bot_id = bot_id.as_str();
        self.remove_user(bot_id, user).await
    }
}

#[async_trait]
impl RequestAdmin for Sqlite {
    async fn recent_requests(
        &self,
        event_id: &EventId,
        before: Option<&RequestId>,
        limit: usize,
    ) -> Result<Vec<RequestProgress>, StoreError> {
        let before = before.map(|id| id.as_str());
        let event_id = event_id.as_str();
        let (event_id, before) = (event_id.to_string(), before.map(String::from));
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {PROGRESS_COLUMNS} FROM requests
                 WHERE event_id = ?1 AND (?2 IS NULL OR id < ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))?
            .query_map(params![event_id, before, limit as i64], progress_row)?
            .collect()
        })
        .await
    }

    async fn cancel_request(&self, request_id: &RequestId) -> Result<Cancellation, StoreError> {
        let request_id = request_id.as_str();
        let request_id = request_id.to_string();
        let cancellation = self
            .durable_transaction(move |tx| {
                let changed = tx.execute(
                    "UPDATE requests SET state = 'cancelled' WHERE id = ?1 AND state = 'accepted'",
                    [&request_id],
                )?;
                if changed == 1 {
                    // Jobs waiting for a scheduled `send_at` come up now, to be counted
                    // cancelled, rather than at that time.
                    tx.execute(
                        "UPDATE jobs SET visible_at = ?2, due_at = ?2
                      WHERE request_id = ?1 AND state = 'ready' AND leased = 0 AND visible_at > ?2",
                        params![&request_id, now_ms()],
                    )?;
                    return Ok(Cancellation::Cancelled);
                }
                let state: Option<String> = tx
                    .query_row(
                        "SELECT state FROM requests WHERE id = ?1",
                        [&request_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(match state {
                    None => Cancellation::NotFound,
                    Some(state) => Cancellation::Final(RequestState::from_name(&state)),
                })
            })
            .await;
        self.notify_jobs();
        cancellation
    }
}

#[async_trait]
impl DeadLetterAdmin for Sqlite {
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, request_id, kind, payload, attempts, coalesce(last_error, ''), died_at
                 FROM jobs WHERE state = 'dead' ORDER BY died_at, id LIMIT ?1",
            )?
            .query_map([limit as i64], |r| {
                // A corrupt payload is listed from the row's own columns.
                let job: Option<Job> = from_json(&r.get::<_, String>(3)?).ok();
                let died_at: Option<i64> = r.get(6)?;
                Ok(DeadLetter {
                    users: match job.as_ref().map(|j| &j.kind) {
                        Some(JobKind::Deliver { users }) => users.len(),
                        _ => 0,
                    },
                    kind: match r.get::<_, String>(2)?.as_str() {
                        "deliver" => "deliver",
                        "expand" => "expand",
                        _ => "unknown",
                    },
                    id: r.get(0)?,
                    request_id: r.get(1)?,
                    attempts: r.get::<_, u32>(4)?.max(job.map_or(0, |j| j.attempt)),
                    reason: r.get(5)?,
                    died_at: died_at.map(rfc3339),
                })
            })?
            .collect()
        })
        .await
    }

    async fn redrive(&self, which: &Selection) -> Result<Vec<Job>, StoreError> {
        let which = which.clone();
        let jobs = self
            .durable_transaction(move |tx| {
                let mut jobs: Vec<Job> = dead_jobs(tx, &which)?
                    .into_iter()
                    .filter_map(|(_, job)| job)
                    .collect();
                let now = now_ms();
                for job in &mut jobs {
                    if let JobKind::Deliver { users } = &job.kind {
                        let keys: Vec<String> = users.iter().map(|u| u.user.key()).collect();
                        reopen_failed(tx, &job.request_id, &keys)?;
                    }
                    job.attempt = 0;
                    tx.execute(
                        "UPDATE jobs SET state = 'ready', attempts = 0, leased = 0, visible_at = ?2, due_at = ?2,
                                last_error = NULL, died_at = NULL, payload = ?3
                         WHERE id = ?1",
                        params![job.id, now, to_json(&*job)?],
                    )?;
                }
                Ok(jobs)
            })
            .await?;
        if !jobs.is_empty() {
            self.notify_jobs();
        }
        Ok(jobs)
    }

    async fn purge(&self, which: &Selection) -> Result<u64, StoreError> {
        let which = which.clone();
        self.durable_transaction(move |tx| {
            let jobs = dead_jobs(tx, &which)?;
            let mut delete =
                tx.prepare_cached("DELETE FROM jobs WHERE id = ?1 AND state = 'dead'")?;
            let mut purged = 0;
            for (id, _) in jobs {
                purged += delete.execute([&id])? as u64;
            }
            Ok(purged)
        })
        .await
    }
}
