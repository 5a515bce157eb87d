//! Group commit: writes that share one SQLite transaction still succeed or fail alone.

use herald_sqlite::Sqlite;
use std::time::Duration;

fn numbers(store: &Sqlite) -> Vec<i64> {
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let mut rows: Vec<i64> = conn
        .prepare("SELECT n FROM scratch")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.sort();
    rows
}

/// A write that holds the writer thread for a moment (inserting 1000), so that writes
/// made meanwhile queue up and are committed as one batch.
async fn hold_the_writer(
    store: &Sqlite,
) -> tokio::task::JoinHandle<Result<usize, herald_core::StoreError>> {
    let store = store.clone();
    let holder = tokio::spawn(async move {
        store
            .transaction(|tx| {
                std::thread::sleep(Duration::from_millis(200));
                tx.execute("INSERT INTO scratch (n) VALUES (1000)", [])
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    holder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_committed_together_succeed_fail_and_panic_each_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    store
        .transaction(|tx| tx.execute_batch("CREATE TABLE scratch (n INTEGER PRIMARY KEY)"))
        .await
        .unwrap();

    // The first write holds the writer thread for a moment, so the 30 behind it queue up
    // and are committed as one batch.
    let holder = hold_the_writer(&store).await;
    let writes: Vec<_> = (0..30i64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let durable = n % 2 == 0;
                let work = move |tx: &rusqlite::Transaction| {
                    tx.execute("INSERT INTO scratch (n) VALUES (?1)", [n])?;
                    match n % 10 {
                        // Fails after writing: its row must be rolled back with it.
                        3 => tx.execute("INSERT INTO no_such_table VALUES (1)", []),
                        7 => panic!("a write that panics"),
                        _ => Ok(1),
                    }
                };
                let result = if durable {
                    store.durable_transaction(work).await
                } else {
                    store.transaction(work).await
                };
                (n, result)
            })
        })
        .collect();

    assert!(holder.await.unwrap().is_ok());
    let mut expected = vec![];
    for write in writes {
        let (n, result) = write.await.unwrap();
        match n % 10 {
            3 | 7 => assert!(result.is_err(), "write {n} fails"),
            _ => {
                assert_eq!(result.unwrap(), 1, "write {n} answers its own result");
                expected.push(n);
            }
        }
    }
    expected.push(1000);
    assert_eq!(
        numbers(&store),
        expected,
        "exactly the writes that succeeded"
    );

    // The writer thread survived the panics and keeps committing.
    store
        .transaction(|tx| tx.execute("INSERT INTO scratch (n) VALUES (2000)", []))
        .await
        .unwrap();
    assert!(numbers(&store).contains(&2000));
}

#[test]
fn the_store_works_from_one_runtime_after_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    for n in 0..3i64 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(store.transaction(move |tx| {
                tx.execute_batch("CREATE TABLE IF NOT EXISTS scratch (n INTEGER PRIMARY KEY)")?;
                tx.execute("INSERT INTO scratch (n) VALUES (?1)", [n])
            }))
            .unwrap();
    }
    assert_eq!(numbers(&store), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_failure_undoes_the_whole_batch_fails_alone() {
    // SQLite rolls the whole transaction back by itself on some errors (a full disk, an
    // I/O error, out of memory); a write that ends the transaction stands in for them.
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
    store
        .transaction(|tx| tx.execute_batch("CREATE TABLE scratch (n INTEGER PRIMARY KEY)"))
        .await
        .unwrap();
    let holder = hold_the_writer(&store).await;
    let writes: Vec<_> = (0..20i64)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let result = store
                    .durable_transaction(move |tx: &rusqlite::Transaction| {
                        tx.execute("INSERT INTO scratch (n) VALUES (?1)", [n])?;
                        if n == 5 {
                            tx.execute_batch("ROLLBACK")?;
                            return tx.execute("INSERT INTO no_such_table VALUES (1)", []);
                        }
                        Ok(1)
                    })
                    .await;
                (n, result)
            })
        })
        .collect();
    assert!(holder.await.unwrap().is_ok());
    let mut expected = vec![];
    for write in writes {
        let (n, result) = write.await.unwrap();
        if n == 5 {
            assert!(result.is_err());
        } else {
            assert_eq!(result.unwrap(), 1, "write {n} is not failed by write 5");
            expected.push(n);
        }
    }
    expected.push(1000);
    assert_eq!(numbers(&store), expected);
}
