//! Group commit: every caller's write transaction, many at a time in one SQLite transaction.
//!
//! SQLite has one writer, and a commit costs far more than the rows it writes: the pages a
//! commit touched are appended to the WAL whole, and a durable commit waits for an fsync.
//! So [`Sqlite::transaction`] and [`Sqlite::durable_transaction`] do not each open a
//! transaction: they queue their work here, and one writer thread takes everything waiting
//! (up to [`MAX_BATCH`]) and runs it in one transaction, each caller's work inside its own
//! savepoint so that one failing does not undo the others; then every caller gets its own
//! answer. A batch holding any durable work commits with `synchronous=FULL` (one fsync for
//! all of it). Under load the batch grows by itself — work arrives while the previous batch
//! commits — and a page that several jobs touch (a request's counters, the queue's index)
//! is written once per batch instead of once per caller; lone work waits for nobody.
//!
//! Durable work waiting is committed first, in a batch of its own: an accept waits for the
//! batch already running, not for the background work that arrived beside it.
//!
//! The thread is the store's own, not a task of some tokio runtime, so the store works from
//! any runtime (or several) and a caller does not hop through the blocking pool.

use crate::{Inner, Sqlite};
use herald_core::StoreError;
use rusqlite::{Connection, Transaction};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc, Weak};
use tokio::sync::oneshot;

/// Most callers' work committed in one transaction.
pub const MAX_BATCH: usize = 256;

/// One caller's work as the writer thread sees it, whatever it returns.
pub(crate) trait Work: Send {
    /// Whether it must be on disk (WAL fsynced) before its caller is answered.
    fn durable(&self) -> bool;
    /// Run it inside the batch's transaction; false when it failed (or panicked). It may
    /// run again, replacing its outcome, when another work's failure undid the batch.
    fn run(&mut self, tx: &Transaction) -> bool;
    /// Answer its caller once the batch has committed, or failed to.
    fn answer(self: Box<Self>, committed: &Result<(), String>);
}

struct Pending<T, F> {
    work: F,
    durable: bool,
    outcome: Option<Result<T, StoreError>>,
    done: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Work for Pending<T, F>
where
    F: Fn(&Transaction) -> rusqlite::Result<T> + Send,
    T: Send,
{
    fn durable(&self) -> bool {
        self.durable
    }

    fn run(&mut self, tx: &Transaction) -> bool {
        let work = &self.work;
        let outcome = match catch_unwind(AssertUnwindSafe(|| work(tx))) {
            Ok(result) => result.map_err(crate::store_error),
            Err(_) => Err(StoreError::new("a write panicked; it was rolled back")),
        };
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, committed: &Result<(), String>) {
        let answer = match (self.outcome, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(StoreError::new(e)),
            (None, Ok(())) => Err(StoreError::new("a write was not run")),
        };
        let _ = self.done.send(answer);
    }
}

pub(crate) type Queue = mpsc::Sender<Box<dyn Work>>;
pub(crate) type Waiting = mpsc::Receiver<Box<dyn Work>>;

impl Sqlite {
    /// Run `f` in a transaction on the writer, together with whatever other writes are
    /// waiting; its result once committed.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&Transaction) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.commit(f, false).await
    }

    /// [`Sqlite::transaction`], on disk (WAL fsynced) before it returns: for what a caller
    /// is told has been recorded, such as an accepted request.
    pub async fn durable_transaction<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn(&Transaction) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.commit(f, true).await
    }

    async fn commit<T, F>(&self, work: F, durable: bool) -> Result<T, StoreError>
    where
        F: Fn(&Transaction) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (done, answer) = oneshot::channel();
        let pending = Pending {
            work,
            durable,
            outcome: None,
            done,
        };
        self.inner
            .committer
            .send(Box::new(pending))
            .map_err(|_| StoreError::new("the writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::new("the writer thread dropped a write"))?
    }
}

/// The queue that hands the writer thread its work, and the thread's end of it.
pub(crate) fn queue() -> (Queue, Waiting) {
    mpsc::channel()
}

/// Start the writer thread of `store`, taking its work from `waiting`.
pub(crate) fn start(store: Weak<Inner>, waiting: Waiting) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name("herald-writer".into())
        .spawn(move || run(store, waiting))
        .map_err(StoreError::new)?;
    Ok(())
}

/// The writer thread: it ends when the store is dropped (its queue with it).
///
/// Of the work waiting, the durable work (accepts a client waits on) is committed first,
/// in a batch of its own, and the rest (workers' leases, outcomes, completions) after it:
/// an accept waits for at most the one batch already running, never for the rows of
/// background work that arrived beside it.
fn run(store: Weak<Inner>, waiting: Waiting) {
    let mut held: Vec<Box<dyn Work>> = Vec::new();
    loop {
        if held.is_empty() {
            match waiting.recv() {
                Ok(first) => held.push(first),
                Err(_) => return,
            }
        }
        while held.len() < 2 * MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => held.push(next),
                Err(_) => break,
            }
        }
        let (mut durable, mut background): (Vec<_>, Vec<_>) =
            held.drain(..).partition(|work| work.durable());
        while !durable.is_empty() {
            let rest = durable.split_off(durable.len().min(MAX_BATCH));
            commit_and_answer(&store, std::mem::replace(&mut durable, rest));
        }
        let later = background.split_off(background.len().min(MAX_BATCH));
        if !background.is_empty() {
            commit_and_answer(&store, background);
        }
        held = later;
    }
}

fn commit_and_answer(store: &Weak<Inner>, mut batch: Vec<Box<dyn Work>>) {
    let committed = match store.upgrade() {
        Some(inner) => commit_batch(&inner, &mut batch),
        None => Err("the store is closed".to_string()),
    };
    for work in batch {
        work.answer(&committed);
    }
}

/// Run `batch` in one transaction on the writer connection and commit it.
fn commit_batch(inner: &Arc<Inner>, batch: &mut [Box<dyn Work>]) -> Result<(), String> {
    let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
    let durable = batch.iter().any(|work| work.durable());
    if durable {
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| e.to_string())?;
    }
    let committed = run_in_transaction(&mut conn, batch);
    if durable {
        // The next batch sets it again if it needs it; a failure here only costs an fsync.
        let _ = conn.pragma_update(None, "synchronous", "NORMAL");
    }
    committed.map_err(|e| e.to_string())
}

fn run_in_transaction(conn: &mut Connection, batch: &mut [Box<dyn Work>]) -> rusqlite::Result<()> {
    // Works whose failure undid the whole transaction (SQLite rolls back by itself on a
    // full disk, an I/O error or running out of memory): the batch runs again without
    // them, so that one failing write does not fail the others with it.
    let mut left_out = vec![false; batch.len()];
    'batch: loop {
        let tx = conn.transaction()?;
        let running = left_out.iter().filter(|out| !**out).count();
        for (i, work) in batch.iter_mut().enumerate() {
            if left_out[i] {
                continue;
            }
            if running == 1 {
                // Nothing to keep apart: a failure rolls the whole transaction back.
                return if work.run(&tx) {
                    tx.commit()
                } else {
                    tx.rollback()
                };
            }
            tx.execute_batch("SAVEPOINT work")?;
            if work.run(&tx) {
                tx.execute_batch("RELEASE work")?;
            } else if tx.execute_batch("ROLLBACK TO work; RELEASE work").is_err()
                || tx.is_autocommit()
            {
                left_out[i] = true;
                drop(tx);
                continue 'batch;
            }
        }
        return tx.commit();
    }
}
