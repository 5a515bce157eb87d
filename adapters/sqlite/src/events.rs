//! Bots and events in SQLite: the [`EventDirectory`] port (events read through the
//! [`crate::event_cache`]), the row mapping the admin operations share ([`event_row`]), and
//! the settings the server keeps.

use crate::{from_json, now_ms, typed, Sqlite};
use async_trait::async_trait;
use herald_core::domain::{Action, Bot, Event, PreviousSecret};
use herald_core::ids::{BotId, EventId};
use herald_core::lane::Lane;
use herald_core::ports::admin::EventAdmin;
use herald_core::ports::EventDirectory;
use herald_core::{secret, StoreError};
use rusqlite::OptionalExtension;

/// A new event, with the only copy of its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedEvent {
    pub event_id: EventId,
    pub bot_id: BotId,
    pub name: String,
    pub secret: String,
    pub action: Action,
}

impl Sqlite {
    /// Create an event (and its bot if new) with a fresh secret: the shortcut the demo and
    /// tests use; operators go through the admin API.
    pub async fn new_event(
        &self,
        bot_id: &str,
        name: &str,
        action: Action,
    ) -> Result<CreatedEvent, StoreError> {
        let created = CreatedEvent {
            event_id: EventId::generate(),
            bot_id: BotId::parse(bot_id).map_err(StoreError::new)?,
            name: name.to_string(),
            secret: secret::generate(),
            action,
        };
        let event = Event {
            id: created.event_id.clone(),
            bot_id: created.bot_id.clone(),
            name: created.name.clone(),
            secret_hash: secret::hash(&created.secret),
            previous_secret: None,
            action: created.action.clone(),
            enabled: true,
            rate_limit: None,
            lane: None,
            created_at: now_ms(),
        };
        EventAdmin::create_event(self, &event).await?;
        Ok(created)
    }

    /// Number of events stored (the demo is created only when there are none).
    pub async fn event_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)))
            .await
    }

    /// The stored hash of the admin token, if one was set.
    pub async fn admin_token_hash(&self) -> Result<Option<[u8; 32]>, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT value FROM settings WHERE name = 'admin_token_sha256'",
                [],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .map(|found| found.and_then(|v| v.try_into().ok()))
        })
        .await
    }

    /// Write events: a durable transaction, after which no event read before it is used
    /// (see [`crate::event_cache`]).
    pub(crate) async fn change_events<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&rusqlite::Transaction) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let changed = self.durable_transaction(f).await;
        self.inner.events.changed();
        changed
    }

    /// Store the hash of the admin token (replacing any before it).
    pub async fn set_admin_token_hash(&self, hash: [u8; 32]) -> Result<(), StoreError> {
        self.durable_transaction(move |tx| {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES ('admin_token_sha256', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [hash.to_vec()],
            )
            .map(|_| ())
        })
        .await
    }
}

impl Sqlite {
    /// Whether the store can be read and durably written now: one read and one fsynced
    /// write of a single row. What `herald serve`'s readiness answers from.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT count(*) FROM settings", [], |_| Ok(())))
            .await?;
        self.durable_transaction(|tx| {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES ('ready_probe', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                [herald_core::domain::now_ms()],
            )
            .map(|_| ())
        })
        .await
    }
}

/// The columns [`event_row`] reads, in order.
pub(crate) const EVENT_COLUMNS: &str = "id, bot_id, name, secret_hash, action, enabled, \
     rate_limit, previous_secret_hash, previous_secret_until, created_at, lane";

/// An event from a row of [`EVENT_COLUMNS`].
pub(crate) fn event_row(row: &rusqlite::Row) -> rusqlite::Result<Event> {
    let hash = |value: Option<Vec<u8>>| value.and_then(|h| <[u8; 32]>::try_from(h).ok());
    let action: String = row.get(4)?;
    let rate_limit: Option<String> = row.get(6)?;
    let previous = hash(row.get(7)?);
    let until: Option<i64> = row.get(8)?;
    Ok(Event {
        id: typed(row, 0, EventId::parse)?,
        bot_id: typed(row, 1, BotId::parse)?,
        name: row.get(2)?,
        secret_hash: hash(row.get(3)?).unwrap_or([0u8; 32]),
        action: from_json(&action)?,
        enabled: row.get(5)?,
        rate_limit: rate_limit.map(|r| from_json(&r)).transpose()?,
        previous_secret: previous
            .zip(until)
            .map(|(hash, valid_until)| PreviousSecret { hash, valid_until }),
        created_at: row.get(9)?,
        lane: lane_column(row, 10)?,
    })
}

/// An event's default lane from column `index`: NULL is none; a value that names no lane
/// is a corrupt row.
fn lane_column(row: &rusqlite::Row, index: usize) -> rusqlite::Result<Option<Lane>> {
    let Some(text) = row.get::<_, Option<String>>(index)? else {
        return Ok(None);
    };
    Lane::parse(&text).map(Some).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("{text:?} is not a lane").into(),
        )
    })
}

#[async_trait]
impl EventDirectory for Sqlite {
    async fn bot(&self, bot_id: &BotId) -> Result<Bot, StoreError> {
        let bot_id = bot_id.clone();
        self.read(move |conn| {
            conn.prepare_cached("SELECT connections FROM bots WHERE id = ?1")?
                .query_row([bot_id.as_str()], |row| {
                    Ok(Bot {
                        id: bot_id.clone(),
                        connections: crate::admin::connections_of(&row.get::<_, String>(0)?)?,
                    })
                })
                .optional()
                .map(|found| {
                    found.unwrap_or(Bot {
                        id: bot_id.clone(),
                        connections: Default::default(),
                    })
                })
        })
        .await
    }

    async fn event(&self, event_id: &EventId) -> Result<Option<Event>, StoreError> {
        let event_id = event_id.as_str();
        let cache = &self.inner.events;
        let generation = cache.generation();
        if let Some(event) = cache.get(event_id, generation) {
            return Ok(Some(event));
        }
        let id = event_id.to_string();
        let found = self
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?
                    .query_row([&id], event_row)
                    .optional()
            })
            .await?;
        if let Some(event) = &found {
            cache.keep(event, generation);
        }
        Ok(found)
    }
}
