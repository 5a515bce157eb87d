//! The job queue: transactional jobs are leased before older bulk ones, a bot at its
//! share in a lane has none of its deliver jobs in that lane leased (so idle workers do
//! not spin leasing and putting them back), and the queue's oldest age counts a job's
//! whole wait however often it was postponed.

use herald_core::domain::{now_ms, Job};
use herald_core::lane::Lane;
use herald_core::ports::{JobQueue, LeaseFilter, LeaseQueue};
use herald_sqlite::Sqlite;
use std::time::Duration;

fn sql(store: &Sqlite) -> rusqlite::Connection {
    rusqlite::Connection::open(store.path()).unwrap()
}

#[tokio::test]
async fn the_deliver_jobs_of_a_full_bot_are_left_for_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    let busy = Job::deliver(&"r1".parse().unwrap(), Lane::Bulk, 0, vec![]);
    let expand = Job::expand(&"r1".parse().unwrap(), 0, None);
    let other = Job::deliver(&"r2".parse().unwrap(), Lane::Bulk, 0, vec![]);
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
    let full = LeaseFilter {
        full: vec![("busy".parse().unwrap(), Lane::Bulk)],
        only: None,
    };
    let mut leased = Vec::new();
    while let Some(job) = store.lease(Duration::from_secs(60), &full).await.unwrap() {
        leased.push(job.job.id);
    }
    leased.sort();
    let mut expected = vec![expand.id, other.id];
    expected.sort();
    assert_eq!(leased, expected, "all but the full bot's deliver job");
    let left = store
        .lease(Duration::from_secs(60), &LeaseFilter::default())
        .await
        .unwrap();
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
            vec![Job::deliver(&"r".parse().unwrap(), Lane::Bulk, 0, vec![])],
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
            .lease(Duration::from_secs(60), &LeaseFilter::default())
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
    let bad = Job::deliver(&"r1".parse().unwrap(), Lane::Bulk, 0, vec![]);
    let good = Job::deliver(&"r2".parse().unwrap(), Lane::Bulk, 0, vec![]);
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
    let leased = store
        .lease(Duration::from_secs(60), &LeaseFilter::default())
        .await
        .unwrap();
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

#[tokio::test]
async fn transactional_jobs_are_leased_before_older_bulk_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    let broadcast: Vec<Job> = (0..3)
        .map(|_| Job::deliver(&"r1".parse().unwrap(), Lane::Bulk, 0, vec![]))
        .collect();
    store
        .enqueue(broadcast.clone(), Duration::ZERO)
        .await
        .unwrap();
    let order = Job::deliver(&"r2".parse().unwrap(), Lane::Transactional, 0, vec![]);
    store
        .enqueue(vec![order.clone()], Duration::ZERO)
        .await
        .unwrap();
    let conn = sql(&store);
    conn.execute("UPDATE jobs SET bot_id = 'shop'", []).unwrap();

    // A worker kept for transactional jobs leases only those.
    let kept = LeaseFilter {
        full: vec![],
        only: Some(Lane::Transactional),
    };
    let first = store.lease(Duration::from_secs(60), &kept).await.unwrap();
    assert_eq!(first.map(|l| l.job.id), Some(order.id.clone()));
    assert!(store
        .lease(Duration::from_secs(60), &kept)
        .await
        .unwrap()
        .is_none());
    store
        .release(&order.id, Duration::ZERO, None, false)
        .await
        .unwrap();

    // Any worker: the transactional job first, though it was queued last; the bot being
    // full in bulk does not hold its transactional job.
    let bulk_full = LeaseFilter {
        full: vec![("shop".parse().unwrap(), Lane::Bulk)],
        only: None,
    };
    let next = store
        .lease(Duration::from_secs(60), &bulk_full)
        .await
        .unwrap();
    assert_eq!(next.map(|l| l.job.id), Some(order.id.clone()));
    assert!(store
        .lease(Duration::from_secs(60), &bulk_full)
        .await
        .unwrap()
        .is_none());
    let mut rest = Vec::new();
    while let Some(l) = store
        .lease(Duration::from_secs(60), &LeaseFilter::default())
        .await
        .unwrap()
    {
        rest.push(l.job.id);
    }
    let broadcast: Vec<String> = broadcast.into_iter().map(|j| j.id).collect();
    assert_eq!(rest, broadcast, "bulk jobs in their order");
}
