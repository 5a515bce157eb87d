//! Upgrading a database whose users hold copies of their request's data: the copies go,
//! the data is kept once, and every user reads as before.

use herald_sqlite::schema;
use herald_sqlite::Sqlite;
use serde_json::json;

#[tokio::test]
async fn copies_of_a_requests_data_are_folded_into_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    {
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        schema::migrate_to(&mut conn, 5).unwrap();
        let record = json!({
            "id": "01req", "event_id": "ev", "event_name": "e", "bot_id": "bot",
            "action": {"type": "screen", "screen_id": "s"},
            "data": {"order": 42, "items": [1, 2]},
            "audience": {"type": "bm", "count": 2}, "created_at": 1
        });
        conn.execute(
            "INSERT INTO requests (id, event_id, record, state, created_at)
             VALUES ('01req', 'ev', ?1, 'accepted', 1)",
            [record.to_string()],
        )
        .unwrap();
        for (bm_id, data) in [
            ("copy", json!({"order": 42, "items": [1, 2]})),
            ("own", json!({"order": 42, "items": [1, 2], "name": "Ann"})),
        ] {
            conn.execute(
                "INSERT INTO users (bot_id, bm_id, platform, platform_id, shard, last_request,
                                    last_request_id, created_at)
                 VALUES ('bot', ?1, 'tg', ?1, 0, ?2, '01req', 1)",
                [bm_id.to_string(), data.to_string()],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO jobs (id, request_id, kind, payload, visible_at, due_at, created_at)
             VALUES ('j1', '01req', 'deliver', '{}', 0, 0, 1)",
            [],
        )
        .unwrap();
    }
    let store = Sqlite::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let kept: Vec<(String, Option<String>)> = conn
        .prepare("SELECT bm_id, last_request FROM users ORDER BY bm_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kept[0], ("copy".to_string(), None), "the copy is gone");
    assert!(kept[1].1.is_some(), "data of a user's own stays");
    let record: String = conn
        .query_row("SELECT record FROM requests", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&record).unwrap()["data"],
        json!({})
    );
    let bot: String = conn
        .query_row("SELECT bot_id FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bot, "bot", "jobs know their bot");
    let copy = store.user_json("bot", "copy").await.unwrap().unwrap();
    assert_eq!(copy["last_request"], json!({"order": 42, "items": [1, 2]}));
    let own = store.user_json("bot", "own").await.unwrap().unwrap();
    assert_eq!(own["last_request"]["name"], "Ann");
    let (read, _) = herald_core::ports::RequestLog::record(&store, &"01req".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.data.get("order"),
        Some(&json!(42)),
        "the record reads whole"
    );
}
