//! Reads of the embedded store are bounded: however many callers read at once, at most
//! `MAX_READERS` connections and blocking threads do.

use herald_sqlite::{Sqlite, MAX_READERS};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_wait_for_one_of_a_bounded_set_of_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let reads = (0..200).map(|_| {
        let (store, running, most) = (store.clone(), running.clone(), most.clone());
        tokio::spawn(async move {
            store
                .read(move |conn| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    running.fetch_sub(1, Ordering::SeqCst);
                    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                })
                .await
                .unwrap()
        })
    });
    for read in reads.collect::<Vec<_>>() {
        assert_eq!(read.await.unwrap(), 1);
    }
    let most = most.load(Ordering::SeqCst);
    assert!(most <= MAX_READERS, "{most} reads ran at once");
    assert!(most > 1, "reads still run side by side");
}
