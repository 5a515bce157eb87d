//! Events kept in memory by the accept path: changes through the store are seen at once,
//! changes by another process within a moment, and new events are never missed.

use herald_core::admin::EventChanges;
use herald_core::domain::Action;
use herald_core::ports::admin::EventAdmin;
use herald_core::ports::EventDirectory;
use herald_sqlite::event_cache::FRESH_FOR;
use herald_sqlite::Sqlite;
use std::time::{Duration, Instant};

fn screen() -> Action {
    Action::Screen {
        screen_id: "s".into(),
    }
}

fn disable() -> EventChanges {
    EventChanges {
        enabled: Some(false),
        ..EventChanges::default()
    }
}

#[tokio::test]
async fn a_change_through_the_store_is_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    let created = store.new_event("bot", "e", screen()).await.unwrap();
    let id = &created.event_id;
    assert!(
        store.event(id).await.unwrap().unwrap().enabled,
        "read and kept"
    );

    assert!(store.update_event(id, &disable()).await.unwrap());
    assert!(!store.event(id).await.unwrap().unwrap().enabled);

    let before = store.event(id).await.unwrap().unwrap().secret_hash;
    assert!(store.rotate_secret(id, [7u8; 32], 0).await.unwrap());
    let after = store.event(id).await.unwrap().unwrap();
    assert_eq!(after.secret_hash, [7u8; 32]);
    assert_eq!(after.previous_secret.unwrap().hash, before);

    assert!(store.delete_event(id).await.unwrap());
    assert!(store.event(id).await.unwrap().is_none());
}

#[tokio::test]
async fn another_process_s_change_is_seen_within_a_moment_and_a_new_event_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let serving = Sqlite::open(&path).unwrap();
    // A second store on the same file stands for the CLI run with `--db`.
    let other = Sqlite::open(&path).unwrap();

    let created = other.new_event("bot", "e", screen()).await.unwrap();
    let id = &created.event_id;
    assert!(
        serving.event(id).await.unwrap().is_some(),
        "created elsewhere, found at once"
    );
    let unknown = "no-such-event".parse().unwrap();
    assert!(other.event(&unknown).await.unwrap().is_none());
    let later = other.new_event("bot", "later", screen()).await.unwrap();
    assert!(
        serving.event(&later.event_id).await.unwrap().is_some(),
        "a miss is not kept"
    );

    assert!(other.update_event(id, &disable()).await.unwrap());
    let changed_at = Instant::now();
    // Seen once what was kept is older than FRESH_FOR; the deadline only stops a hang.
    loop {
        if !serving.event(id).await.unwrap().unwrap().enabled {
            break;
        }
        assert!(
            changed_at.elapsed() < FRESH_FOR * 30,
            "the change made elsewhere is never seen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
