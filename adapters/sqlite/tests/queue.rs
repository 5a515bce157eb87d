//! The job queue: a bot at its share has none of its deliver jobs leased (so idle workers
//! do not spin leasing and putting them back), and the queue's oldest age counts a job's
//! whole wait however often it was postponed.

use herald_core::domain::{now_ms, Job};
use herald_core::ports::{JobQueue, LeaseQueue};
use herald_sqlite::Sqlite;
use std::time::Duration;

fn sql(store: &Sqlite) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

#[tokio::test]
async fn the_deliver_jobs_of_a_full_bot_are_left_for_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    let busy = Job::deliver(&"r1".parse().unwrap(), 0, vec![]);
    let expand = Job::expand(&"r1".parse().unwrap(), 0, None);
    let other = Job::deliver(&"r2".parse().unwrap(), 0, vec![]);
    store
        .enqueue(
            vec![busy.clone(), expand.clone(), other.clone()],
            Duration::ZERO,
        )
        .await
        .unwrap();
    let conn = sql(&store);
    conn.execute(
        "UPDATE jobs SET bot_id = 'busy' WHERE request_id = 'r1'",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE jobs SET bot_id = 'calm' WHERE request_id = 'r2'",
        [],
    )
    .unwrap();
    let full = vec!["busy".parse().unwrap()];
    let mut leased = Vec::new();
    while let Some(job) = store.lease(Duration::from_secs(60), &full).await.unwrap() {
        leased.push(job.job.id);
    }
    leased.sort();
    let mut expected = vec![expand.id, other.id];
    expected.sort();
    assert_eq!(leased, expected, "all but the full bot's deliver job");
    let left = store.lease(Duration::from_secs(60), &[]).await.unwrap();
    assert_eq!(
        left.map(|l| l.job.id),
        Some(busy.id),
        "leased once it may run"
    );
}

#[tokio::test]
async fn the_oldest_age_counts_the_whole_wait_of_a_postponed_job() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    store
        .enqueue(
            vec![Job::deliver(&"r".parse().unwrap(), 0, vec![])],
            Duration::ZERO,
        )
        .await
        .unwrap();
    // Due 33 s ago, postponed again and again since.
    sql(&store)
        .execute("UPDATE jobs SET due_at = ?1", [now_ms() - 33_000])
        .unwrap();
    for _ in 0..3 {
        let job = store
            .lease(Duration::from_secs(60), &[])
            .await
            .unwrap()
            .unwrap()
            .job;
        store.postpone(&job.id, Duration::ZERO).await.unwrap();
    }
    let depth = store.queue_depth().await.unwrap();
    assert!(depth.oldest_ready_ms >= 33_000, "{}", depth.oldest_ready_ms);
}

/// A queued row whose payload is not a job can never run: leasing keeps it as dead with
/// its reason and leases the next job instead, so one bad row never stops the queue; it is
/// listed and purged like any dead job.
#[tokio::test]
async fn a_job_row_that_cannot_be_read_is_dead_at_once_and_the_queue_goes_on() {
    use herald_core::admin::Selection;
    use herald_core::ports::admin::DeadLetterAdmin;
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    let bad = Job::deliver(&"r1".parse().unwrap(), 0, vec![]);
    let good = Job::deliver(&"r2".parse().unwrap(), 0, vec![]);
    store
        .enqueue(vec![bad.clone()], Duration::ZERO)
        .await
        .unwrap();
    sql(&store)
        .execute(
            "UPDATE jobs SET payload = '{\"broken\"' WHERE id = ?1",
            [&bad.id],
        )
        .unwrap();
    store
        .enqueue(vec![good.clone()], Duration::from_millis(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let leased = store.lease(Duration::from_secs(60), &[]).await.unwrap();
    assert_eq!(leased.map(|l| l.job.id), Some(good.id));
    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].id.as_str(), dead[0].kind),
        (bad.id.as_str(), "deliver")
    );
    assert!(
        dead[0].reason.starts_with("corrupt record"),
        "{}",
        dead[0].reason
    );
    assert!(
        store.redrive(&Selection::All).await.unwrap().is_empty(),
        "never redriven"
    );
    assert_eq!(store.purge(&Selection::Ids(vec![bad.id])).await.unwrap(), 1);
}
