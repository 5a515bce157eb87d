//! Upgrading a database written by an older schema: what was stored survives, and work
//! under way at the upgrade completes.

use herald_core::domain::{shard_of, Action, Audience, Job, PlatformFilter, RequestRecord};
use herald_core::worker_pool::{drain, PoolOptions};
use herald_core::Config;
use herald_sqlite::Sqlite;
use rusqlite::params;
use std::sync::Arc;

#[path = "support/mod.rs"]
mod support;

const USERS: usize = 40;

/// A schema-3 database (users in rowid order, `everyone` paged by rowid) holding a
/// broadcast stopped part-way: shard 0 expanded up to its third user, whose deliveries
/// are done; shards 1..3 not started.
fn version_3_database(path: &std::path::Path) -> (herald_core::ids::RequestId, Vec<String>) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    herald_sqlite::schema::migrate_to(&mut conn, 3).unwrap();
    // Rowid order differs from bm_id order ("bm-10" sorts before "bm-2").
    let bm_ids: Vec<String> = (0..USERS).map(|i| format!("bm-{i}")).collect();
    for (i, bm_id) in bm_ids.iter().enumerate() {
        conn.execute(
            "INSERT INTO users (bot_id, platform, platform_id, bm_id, shard, created_at)
             VALUES ('shop', 'tg', ?1, ?2, ?3, 0)",
            params![i.to_string(), bm_id, shard_of(bm_id, 4)],
        )
        .unwrap();
    }
    let record = RequestRecord {
        id: "01JREQUESTUNDERWAY0000000".parse().unwrap(),
        event_id: "e1".parse().unwrap(),
        event_name: "broadcast".into(),
        bot_id: "shop".parse().unwrap(),
        action: Action::Screen {
            screen_id: "s".into(),
        },
        data: serde_json::from_str(r#"{"sale": true}"#).unwrap(),
        audience: Audience::Everyone {
            platform: PlatformFilter::Only("tg".into()),
            shards: 4,
        },
        lane: Default::default(),
        created_at: herald_core::domain::now_ms(),
        send_at: None,
    };
    // Written as version 3 wrote it: records had no lane.
    let mut stored = serde_json::to_value(&record).unwrap();
    stored.as_object_mut().unwrap().remove("lane");
    // Shard 0's first three users (in rowid order) were expanded and delivered.
    let reached: Vec<(i64, String)> = conn
        .prepare("SELECT id, bm_id FROM users WHERE shard = 0 ORDER BY id LIMIT 3")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let cursor = reached.last().unwrap().0.to_string();
    conn.execute(
        "INSERT INTO requests (id, event_id, record, state, targeted, expansions_pending,
                               delivered, created_at)
         VALUES (?1, 'e1', ?2, 'accepted', 3, 4, 3, ?3)",
        params![record.id.as_str(), stored.to_string(), record.created_at],
    )
    .unwrap();
    for shard in 0..4 {
        let at = (shard == 0).then(|| cursor.clone());
        conn.execute(
            "INSERT INTO expansions (request_id, shard, cursor) VALUES (?1, ?2, ?3)",
            params![record.id.as_str(), shard, at],
        )
        .unwrap();
        let job = Job::expand(&record.id, shard, at);
        conn.execute(
            "INSERT INTO jobs (id, request_id, kind, payload, visible_at, created_at)
             VALUES (?1, ?2, 'expand', ?3, 0, 0)",
            params![
                job.id,
                record.id.as_str(),
                serde_json::to_string(&job).unwrap()
            ],
        )
        .unwrap();
    }
    for (_, bm_id) in &reached {
        conn.execute(
            "INSERT INTO outcomes (request_id, user_key, outcome, at)
             VALUES (?1, ?2, 'delivered', 0)",
            params![record.id.as_str(), format!("bm:{bm_id}")],
        )
        .unwrap();
        conn.execute(
            "UPDATE users SET last_request = '{\"sale\":true}', last_request_id = ?1
             WHERE bm_id = ?2",
            params![record.id.as_str(), bm_id],
        )
        .unwrap();
    }
    (record.id, reached.into_iter().map(|(_, b)| b).collect())
}

#[tokio::test]
async fn a_broadcast_under_way_at_the_upgrade_reaches_every_user_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let (request_id, reached) = version_3_database(&path);

    let store = Sqlite::open(&path).unwrap();
    let deliverer = Arc::new(support::ScriptedDeliverer::default());
    let app = herald_sqlite::app(
        &store,
        Config::default(),
        deliverer.clone(),
        herald_delivery::CHANNELS,
    );
    drain(&app, &store, &PoolOptions::default()).await.unwrap();

    let progress = app
        .ports
        .requests
        .progress(&request_id)
        .await
        .unwrap()
        .unwrap();
    let status = herald_core::status::RequestStatus::from(progress);
    assert_eq!(status.state, "done");
    assert_eq!(
        status.lane,
        herald_core::lane::Lane::Bulk,
        "a record from before lanes reads as bulk"
    );
    assert_eq!(
        status.targeted,
        Some(USERS as u64),
        "each user counted once"
    );
    assert_eq!(status.delivered, USERS as u64);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let (users, written, outcomes): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM users),
                    (SELECT count(*) FROM users WHERE last_request_id = ?1),
                    (SELECT count(*) FROM outcomes WHERE request_id = ?1)",
            [request_id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (users, written, outcomes),
        (USERS as i64, USERS as i64, USERS as i64)
    );
    // The users reached before the upgrade were skipped, not acted on again.
    assert_eq!(deliverer.total_calls(), (USERS - reached.len()) as u32);
    for bm_id in &reached {
        let platform_id = bm_id.trim_start_matches("bm-");
        assert_eq!(deliverer.calls(platform_id), 0, "{bm_id} acted on again");
        let user = store.user_json("shop", bm_id).await.unwrap().unwrap();
        assert_eq!(user["last_request"]["sale"], true, "{user}");
    }
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, herald_sqlite::schema::version());
}

/// Bots stored in schema 6's flat columns read as connections keyed by channel, keep
/// working through the admin port, and the flat columns are gone.
#[tokio::test]
async fn bots_stored_with_flat_connection_columns_read_as_channel_connections() {
    use herald_core::channels::BotChanges;
    use herald_core::ports::admin::BotAdmin;
    use herald_core::ports::EventDirectory;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        herald_sqlite::schema::migrate_to(&mut conn, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO bots (id, created_at, telegram_token, screen_url, signing_secret)
             VALUES ('both', 0, '1:TOKEN', 'https://engine.example/s', 'KEY'),
                    ('telegram-only', 0, '2:TOKEN', NULL, NULL),
                    ('bare', 0, NULL, NULL, NULL)",
        )
        .unwrap();
    }
    let store = Sqlite::open(&path).unwrap();
    let both = store.bot(&id("both")).await.unwrap().connections;
    assert_eq!(both.get("telegram", "token"), Some("1:TOKEN"));
    assert_eq!(both.get("engine", "url"), Some("https://engine.example/s"));
    assert_eq!(both.get("engine", "signing_secret"), Some("KEY"));
    let telegram_only = store.bot(&id("telegram-only")).await.unwrap().connections;
    assert_eq!(telegram_only.get("telegram", "token"), Some("2:TOKEN"));
    assert_eq!(telegram_only.get("engine", "url"), None);
    // No connection at all stays none (its actions go to the log deliverer).
    assert!(store.bot(&id("bare")).await.unwrap().connections.is_empty());

    let summary = store
        .bot_record(&id("both"))
        .await
        .unwrap()
        .unwrap()
        .summary(herald_delivery::CHANNELS);
    let answer = serde_json::to_value(&summary).unwrap();
    assert_eq!(answer["telegram_token_set"], true);
    assert_eq!(
        answer["connections"]["engine"]["url"],
        "https://engine.example/s"
    );
    assert!(!answer.to_string().contains("TOKEN"));

    let changes = BotChanges::default().set("telegram", "token", "");
    assert!(store.update_bot(&id("both"), &changes).await.unwrap());
    let both = store.bot(&id("both")).await.unwrap().connections;
    assert_eq!(both.get("telegram", "token"), None);
    assert_eq!(both.get("engine", "signing_secret"), Some("KEY"));

    let conn = rusqlite::Connection::open(&path).unwrap();
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('bots')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        !columns.iter().any(|c| c == "telegram_token"),
        "{columns:?}"
    );
}

fn id(bot: &str) -> herald_core::ids::BotId {
    herald_core::ids::BotId::parse(bot).unwrap()
}
