//! The job queue: a job postponed again and again is looked at less and less often, and
//! the queue's oldest age counts its whole wait.

use herald_core::domain::{now_ms, Job};
use herald_core::ports::JobQueue;
use herald_sqlite::queue::LONGEST_POSTPONEMENT;
use herald_sqlite::Sqlite;
use std::time::Duration;

fn visible_at(store: &Sqlite) -> i64 {
    rusqlite::Connection::open(store.path())
        .unwrap()
        .query_row("SELECT visible_at FROM jobs", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn postponing_backs_off_and_the_oldest_age_counts_the_whole_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    store
        .enqueue(vec![Job::deliver("r", 0, vec![])], Duration::ZERO)
        .await
        .unwrap();
    let mut waits = Vec::new();
    for _ in 0..7 {
        let leased = store.lease(Duration::from_secs(60)).await.unwrap();
        let job = leased.expect("the job is visible").job;
        let before = now_ms();
        store
            .postpone(&job.id, Duration::from_millis(200))
            .await
            .unwrap();
        waits.push(visible_at(&store) - before);
        // Due again now, for the next round.
        rusqlite::Connection::open(store.path())
            .unwrap()
            .execute("UPDATE jobs SET visible_at = 0", [])
            .unwrap();
    }
    let longest = LONGEST_POSTPONEMENT.as_millis() as i64;
    for (i, wait) in waits.iter().enumerate() {
        let expected = (200i64 << i).min(longest);
        assert!(
            (expected - 5..=expected + 50).contains(wait),
            "postponement {i}: waited {wait} ms, expected about {expected}"
        );
    }
    // Waiting since 33 s ago, postponed many times since: 33 s old.
    rusqlite::Connection::open(store.path())
        .unwrap()
        .execute("UPDATE jobs SET due_at = ?1", [now_ms() - 33_000])
        .unwrap();
    let depth = store.queue_depth().await.unwrap();
    assert!(depth.oldest_ready_ms >= 33_000, "{}", depth.oldest_ready_ms);
}
