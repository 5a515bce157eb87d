//! Bots and events in SQLite: the [`EventDirectory`] port and the local admin operations
//! that create them.

use crate::{from_json, now_ms, to_json, Sqlite};
use async_trait::async_trait;
use herald_core::domain::{new_id, Action, Bot, Event};
use herald_core::ports::EventDirectory;
use herald_core::{secret, StoreError};
use rusqlite::{params, OptionalExtension};

/// A new event, with the only copy of its secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CreatedEvent {
    pub event_id: String,
    pub bot_id: String,
    pub name: String,
    pub secret: String,
    pub action: Action,
}

impl Sqlite {
    /// Register `bot_id` if it is new.
    pub async fn ensure_bot(&self, bot_id: &str) -> Result<(), StoreError> {
        let bot_id = bot_id.to_string();
        self.write(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO bots (id, created_at) VALUES (?1, ?2)",
                params![bot_id, now_ms()],
            )
            .map(|_| ())
        })
        .await
    }

    /// Create an event (and its bot if new) with a fresh secret.
    pub async fn create_event(
        &self,
        bot_id: &str,
        name: &str,
        action: Action,
    ) -> Result<CreatedEvent, StoreError> {
        let created = CreatedEvent {
            event_id: new_id(),
            bot_id: bot_id.to_string(),
            name: name.to_string(),
            secret: secret::generate(),
            action,
        };
        let row = created.clone();
        self.durable_transaction(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO bots (id, created_at) VALUES (?1, ?2)",
                params![row.bot_id, now_ms()],
            )?;
            tx.execute(
                "INSERT INTO events (id, bot_id, name, secret_hash, action, enabled, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
                params![
                    row.event_id,
                    row.bot_id,
                    row.name,
                    secret::hash(&row.secret).to_vec(),
                    to_json(&row.action)?,
                    now_ms()
                ],
            )?;
            Ok(())
        })
        .await?;
        Ok(created)
    }

    /// Switch an event on or off; false when there is no such event.
    pub async fn set_event_enabled(
        &self,
        event_id: &str,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        let event_id = event_id.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE events SET enabled = ?2 WHERE id = ?1",
                params![event_id, enabled],
            )
            .map(|n| n == 1)
        })
        .await
    }

    /// Set a bot's connections (registering the bot if new); `None` leaves a field as it
    /// is, `Some("")` clears it.
    pub async fn set_bot(
        &self,
        bot_id: &str,
        telegram_token: Option<String>,
        screen_url: Option<String>,
        signing_secret: Option<String>,
    ) -> Result<(), StoreError> {
        let bot_id = bot_id.to_string();
        self.durable_transaction(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO bots (id, created_at) VALUES (?1, ?2)",
                params![bot_id, now_ms()],
            )?;
            for (column, value) in [
                ("telegram_token", telegram_token),
                ("screen_url", screen_url),
                ("signing_secret", signing_secret),
            ] {
                if let Some(value) = value {
                    let value = (!value.is_empty()).then_some(value);
                    tx.execute(
                        &format!("UPDATE bots SET {column} = ?2 WHERE id = ?1"),
                        params![bot_id, value],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Number of events stored (the demo is created only when there are none).
    pub async fn event_count(&self) -> Result<u64, StoreError> {
        self.read(|conn| conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)))
            .await
    }
}

#[async_trait]
impl EventDirectory for Sqlite {
    async fn bot(&self, bot_id: &str) -> Result<Bot, StoreError> {
        let bot_id = bot_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT telegram_token, screen_url, signing_secret FROM bots WHERE id = ?1",
            )?
            .query_row([&bot_id], |row| {
                Ok(Bot {
                    id: bot_id.clone(),
                    telegram_token: row.get(0)?,
                    screen_url: row.get(1)?,
                    signing_secret: row.get(2)?,
                })
            })
            .optional()
            .map(|found| {
                found.unwrap_or(Bot {
                    id: bot_id.clone(),
                    ..Bot::default()
                })
            })
        })
        .await
    }

    async fn event(&self, event_id: &str) -> Result<Option<Event>, StoreError> {
        let event_id = event_id.to_string();
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT id, bot_id, name, secret_hash, action, enabled FROM events WHERE id = ?1",
            )?
            .query_row([&event_id], |row| {
                let hash: Vec<u8> = row.get(3)?;
                let action: String = row.get(4)?;
                Ok(Event {
                    id: row.get(0)?,
                    bot_id: row.get(1)?,
                    name: row.get(2)?,
                    secret_hash: hash.try_into().unwrap_or([0u8; 32]),
                    action: from_json(&action)?,
                    enabled: row.get(5)?,
                })
            })
            .optional()
        })
        .await
    }
}
