//! Bot users in SQLite: the [`UserStore`] port and batched import.
//!
//! A user row is unique by `(bot_id, platform, platform_id)` and by `(bot_id, bm_id)`, so
//! both lookups are one index probe. Each user belongs to one of [`SHARDS`] shards (a hash
//! of its `bm_id`); `everyone` is expanded shard by shard in `bm_id` order, one page per
//! `expand` job. Rows are clustered by `(bot_id, bm_id)`, so the users of one deliver job
//! are neighbours on disk. Herald writes only the `last_request*` columns; `attributes` belongs to
//! the bot engine.

use crate::{now_ms, to_json, Sqlite};
use async_trait::async_trait;
use herald_core::admin::{ImportReport, NewUser};
use herald_core::domain::{
    shard_of, LastRequestWrite, Object, PlatformFilter, UserRef, UserState, WriteResult,
};
use herald_core::ids::BotId;
use herald_core::ports::{RequestStamp, UserPage, UserStore};
use herald_core::StoreError;
use rusqlite::{params, OptionalExtension};

/// Shards of a bot's users: `expand` jobs of one broadcast run in parallel across them.
pub const SHARDS: u32 = 4;

impl Sqlite {
    /// Insert users that are new; existing ones (by platform id or bm_id) are left alone,
    /// so re-importing the same file adds nothing. One transaction per call.
    pub(crate) async fn insert_users(
        &self,
        bot_id: &str,
        users: &[NewUser],
    ) -> Result<ImportReport, StoreError> {
        let bot_id = bot_id.to_string();
        let users = users.to_vec();
        self.transaction(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO bots (id, created_at) VALUES (?1, ?2)",
                params![bot_id, now_ms()],
            )?;
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO users (bot_id, platform, platform_id, bm_id, shard, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut report = ImportReport::default();
            let now = now_ms();
            for user in &users {
                let bm_id = user.state_id();
                let shard = shard_of(&bm_id, SHARDS);
                match insert.execute(params![bot_id, user.platform, user.platform_id, bm_id, shard, now])? {
                    0 => report.existing += 1,
                    _ => report.inserted += 1,
                }
            }
            Ok(report)
        })
        .await
    }

    /// A user's whole row as JSON (with `last_request`), by platform id or state id.
    pub(crate) async fn user_row(
        &self,
        bot_id: &str,
        user: &UserRef,
    ) -> Result<Option<Object>, StoreError> {
        let (bot_id, user) = (bot_id.to_string(), user.clone());
        self.read(move |conn| {
            let (filter, a, b) = match &user {
                UserRef::Bm { id } => ("bm_id = ?2 AND ?3 IS NULL", id.clone(), None),
                UserRef::Platform { platform, id } => (
                    "platform = ?2 AND platform_id = ?3",
                    platform.clone(),
                    Some(id.clone()),
                ),
            };
            conn.prepare_cached(&format!(
                "SELECT platform, platform_id, bm_id, attributes,
                        coalesce(last_request, (SELECT data FROM request_data
                                                WHERE request_id = users.last_request_id)),
                        last_request_at, last_request_id, last_event_id, blocked_at,
                        migrated_chat_id
                 FROM users WHERE bot_id = ?1 AND {filter}"
            ))?
            .query_row(params![bot_id, a, b], |row| {
                let parse = |text: Option<String>| {
                    text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .unwrap_or(serde_json::Value::Null)
                };
                let document = serde_json::json!({
                    "platform": row.get::<_, String>(0)?,
                    "platform_id": row.get::<_, String>(1)?,
                    "bm_id": row.get::<_, String>(2)?,
                    "attributes": parse(row.get(3)?),
                    "last_request": parse(row.get(4)?),
                    "last_request_at": row.get::<_, Option<i64>>(5)?,
                    "last_request_id": row.get::<_, Option<String>>(6)?,
                    "last_event_id": row.get::<_, Option<String>>(7)?,
                    "blocked": row.get::<_, Option<i64>>(8)?.is_some(),
                    "migrated_chat_id": row.get::<_, Option<String>>(9)?,
                });
                Ok(match document {
                    serde_json::Value::Object(object) => object,
                    _ => Object::new(),
                })
            })
            .optional()
        })
        .await
    }

    /// A user's whole row as JSON, by bm_id (tests and tools).
    pub async fn user_json(
        &self,
        bot_id: &str,
        bm_id: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let user = UserRef::Bm {
            id: bm_id.to_string(),
        };
        Ok(self
            .user_row(bot_id, &user)
            .await?
            .map(serde_json::Value::Object))
    }

    /// Delete one user; false when there is none.
    pub(crate) async fn remove_user(
        &self,
        bot_id: &str,
        user: &UserRef,
    ) -> Result<bool, StoreError> {
        let (bot_id, user) = (bot_id.to_string(), user.clone());
        self.write(move |conn| {
            match &user {
                UserRef::Bm { id } => conn.execute(
                    "DELETE FROM users WHERE bot_id = ?1 AND bm_id = ?2",
                    params![bot_id, id],
                ),
                UserRef::Platform { platform, id } => conn.execute(
                    "DELETE FROM users WHERE bot_id = ?1 AND platform = ?2 AND platform_id = ?3",
                    params![bot_id, platform, id],
                ),
            }
            .map(|n| n > 0)
        })
        .await
    }
}

#[async_trait]
impl UserStore for Sqlite {
    async fn resolve(
        &self,
        bot_id: &BotId,
        users: &[UserRef],
    ) -> Result<Vec<Option<UserState>>, StoreError> {
        let bot_id = bot_id.as_str();
        let bot_id = bot_id.to_string();
        let users = users.to_vec();
        self.read(move |conn| {
            let mut by_platform = conn.prepare_cached(
                "SELECT bm_id, blocked_at IS NOT NULL, migrated_chat_id FROM users
                 WHERE bot_id = ?1 AND platform = ?2 AND platform_id = ?3",
            )?;
            let mut by_bm = conn.prepare_cached(
                "SELECT platform, platform_id, blocked_at IS NOT NULL, migrated_chat_id FROM users
                 WHERE bot_id = ?1 AND bm_id = ?2",
            )?;
            users
                .into_iter()
                .map(|user| match user {
                    UserRef::Platform { platform, id } => by_platform
                        .query_row(params![bot_id, platform, id], |r| {
                            Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?, r.get(2)?))
                        })
                        .optional()
                        .map(|found| {
                            found.map(|(bm_id, blocked, migrated_chat_id)| UserState {
                                platform,
                                platform_id: id,
                                bm_id,
                                blocked,
                                migrated_chat_id,
                            })
                        }),
                    UserRef::Bm { id } => by_bm
                        .query_row(params![bot_id, id], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })
                        .optional()
                        .map(|found| {
                            found.map(|(platform, platform_id, blocked, migrated_chat_id)| {
                                UserState {
                                    platform,
                                    platform_id,
                                    bm_id: id,
                                    blocked,
                                    migrated_chat_id,
                                }
                            })
                        }),
                })
                .collect()
        })
        .await
    }

    async fn write_last_request(
        &self,
        bot_id: &BotId,
        stamp: &RequestStamp,
        _data: &Object,
        writes: &[LastRequestWrite],
    ) -> Result<Vec<WriteResult>, StoreError> {
        let bot_id = bot_id.as_str();
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        // The request's data as it is (`_data`) is not copied: the user refers to it by
        // `last_request_id` (its `last_request` is NULL), and reads find it in
        // `request_data`. Only data of a user's own is stored on the user.
        let own: Vec<(String, Option<String>)> = writes
            .iter()
            .map(|w| Ok((w.bm_id.clone(), w.data.as_ref().map(to_json).transpose()?)))
            .collect::<rusqlite::Result<_>>()
            .map_err(StoreError::new)?;
        let (bot_id, stamp) = (bot_id.to_string(), stamp.clone());
        self.transaction(move |tx| {
            // Monotonic: only a request at least as new as the stored one replaces it (an
            // equal id is this request's own earlier write, redelivered).
            let mut update = tx.prepare_cached(
                "UPDATE users SET last_request = ?3, last_request_at = ?4, last_request_id = ?5,
                        last_event_id = ?6
                 WHERE bot_id = ?1 AND bm_id = ?2
                   AND (last_request_id IS NULL OR last_request_id <= ?5)",
            )?;
            let mut exists =
                tx.prepare_cached("SELECT 1 FROM users WHERE bot_id = ?1 AND bm_id = ?2")?;
            own.iter()
                .map(|(bm_id, data)| {
                    let changed = update.execute(params![
                        bot_id,
                        bm_id,
                        data,
                        stamp.at,
                        stamp.request_id.as_str(),
                        stamp.event_id.as_str()
                    ])?;
                    if changed > 0 {
                        Ok(WriteResult::Applied)
                    } else if exists.exists(params![bot_id, bm_id])? {
                        Ok(WriteResult::Stale)
                    } else {
                        Ok(WriteResult::NotFound)
                    }
                })
                .collect()
        })
        .await
    }

    async fn mark_blocked(&self, bot_id: &BotId, bm_ids: &[String]) -> Result<(), StoreError> {
        let bot_id = bot_id.as_str();
        if bm_ids.is_empty() {
            return Ok(());
        }
        let (bot_id, bm_ids) = (bot_id.to_string(), bm_ids.to_vec());
        self.transaction(move |tx| {
            let mut mark = tx.prepare_cached(
                "UPDATE users SET blocked_at = ?3 WHERE bot_id = ?1 AND bm_id = ?2 AND blocked_at IS NULL",
            )?;
            let now = now_ms();
            for bm_id in &bm_ids {
                mark.execute(params![bot_id, bm_id, now])?;
            }
            Ok(())
        })
        .await
    }

    async fn remember_migrated_chats(
        &self,
        bot_id: &BotId,
        moved: &[(String, String)],
    ) -> Result<(), StoreError> {
        if moved.is_empty() {
            return Ok(());
        }
        let (bot_id, moved) = (bot_id.to_string(), moved.to_vec());
        self.transaction(move |tx| {
            let mut remember = tx.prepare_cached(
                "UPDATE users SET migrated_chat_id = ?3 WHERE bot_id = ?1 AND bm_id = ?2",
            )?;
            for (bm_id, chat) in &moved {
                remember.execute(params![bot_id, bm_id, chat])?;
            }
            Ok(())
        })
        .await
    }

    async fn count(&self, bot_id: &BotId, platform: &PlatformFilter) -> Result<u64, StoreError> {
        let bot_id = bot_id.as_str();
        let bot_id = bot_id.to_string();
        let platform = platform.clone();
        self.read(move |conn| match platform {
            PlatformFilter::Any => conn.query_row(
                "SELECT count(*) FROM users WHERE bot_id = ?1",
                [&bot_id],
                |r| r.get(0),
            ),
            PlatformFilter::Only(p) => conn.query_row(
                "SELECT count(*) FROM users WHERE bot_id = ?1 AND platform = ?2",
                [&bot_id, &p],
                |r| r.get(0),
            ),
        })
        .await
    }

    fn shards(&self) -> u32 {
        SHARDS
    }

    async fn page(
        &self,
        bot_id: &BotId,
        platform: &PlatformFilter,
        shard: u32,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<UserPage, StoreError> {
        let bot_id = bot_id.as_str();
        let after = cursor.unwrap_or("").to_string();
        let (bot_id, platform) = (bot_id.to_string(), platform.clone());
        self.read(move |conn| {
            let map = |r: &rusqlite::Row| -> rusqlite::Result<UserState> {
                Ok(UserState {
                    platform: r.get(0)?,
                    platform_id: r.get(1)?,
                    bm_id: r.get(2)?,
                    blocked: r.get(3)?,
                    migrated_chat_id: r.get(4)?,
                })
            };
            let rows: Vec<UserState> = match &platform {
                PlatformFilter::Any => conn
                    .prepare_cached(
                        "SELECT platform, platform_id, bm_id, blocked_at IS NOT NULL, migrated_chat_id FROM users
                         WHERE bot_id = ?1 AND shard = ?2 AND bm_id > ?3 ORDER BY bm_id LIMIT ?4",
                    )?
                    .query_map(params![bot_id, shard, after, limit as i64], map)?
                    .collect::<rusqlite::Result<_>>()?,
                PlatformFilter::Only(p) => conn
                    .prepare_cached(
                        "SELECT platform, platform_id, bm_id, blocked_at IS NOT NULL, migrated_chat_id FROM users
                         WHERE bot_id = ?1 AND platform = ?2 AND shard = ?3 AND bm_id > ?4
                         ORDER BY bm_id LIMIT ?5",
                    )?
                    .query_map(params![bot_id, p, shard, after, limit as i64], map)?
                    .collect::<rusqlite::Result<_>>()?,
            };
            let next = (rows.len() == limit)
                .then(|| rows.last().map(|u| u.bm_id.clone()))
                .flatten();
            Ok(UserPage { users: rows, next })
        })
        .await
    }
}
