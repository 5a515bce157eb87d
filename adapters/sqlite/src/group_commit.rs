//! Group commit of accepted requests: many accepts, one transaction, one fsync.
//!
//! A 202 may only be sent once its request is on disk, and an fsync costs far more than
//! the rows it makes durable. So accepts do not each open a durable transaction: they queue
//! here, and one committer task takes everything waiting (up to [`MAX_BATCH`]) and records
//! it in one `synchronous=FULL` transaction, each accept inside its own savepoint so that
//! one failing does not undo the others; then every caller gets its own answer. Under load
//! the batch grows by itself (accepts arrive while the previous one commits); a lone
//! accept waits for nobody.

use crate::requests::{record_accept, Accept};
use crate::{Inner, Sqlite};
use herald_core::ports::Recorded;
use herald_core::StoreError;
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot};

/// Most accepts recorded in one transaction.
pub const MAX_BATCH: usize = 256;

pub(crate) struct Pending {
    accept: Accept,
    done: oneshot::Sender<Result<Recorded, StoreError>>,
}

pub(crate) type Queue = mpsc::UnboundedSender<Pending>;

impl Sqlite {
    /// Record `accept` durably, together with whatever other accepts are waiting.
    pub(crate) async fn commit_accept(&self, accept: Accept) -> Result<Recorded, StoreError> {
        let (done, answer) = oneshot::channel();
        self.committer()
            .send(Pending { accept, done })
            .map_err(|_| StoreError::new("the accept committer has stopped"))?;
        answer
            .await
            .map_err(|_| StoreError::new("the accept committer dropped a request"))?
    }

    fn committer(&self) -> &Queue {
        self.inner.committer.get_or_init(|| {
            let (queue, waiting) = mpsc::unbounded_channel();
            // The task holds the store weakly: it ends when the last handle is dropped.
            tokio::spawn(run(Arc::downgrade(&self.inner), waiting));
            queue
        })
    }
}

async fn run(store: Weak<Inner>, mut waiting: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = waiting.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = Sqlite { inner };
        let (accepts, answers): (Vec<Accept>, Vec<_>) =
            batch.into_iter().map(|p| (p.accept, p.done)).unzip();
        let results = store
            .durable_transaction(move |tx| {
                let mut results = Vec::with_capacity(accepts.len());
                for accept in &accepts {
                    tx.execute_batch("SAVEPOINT accept")?;
                    match record_accept(tx, accept) {
                        Ok(recorded) => {
                            tx.execute_batch("RELEASE accept")?;
                            results.push(Ok(recorded));
                        }
                        Err(e) => {
                            tx.execute_batch("ROLLBACK TO accept; RELEASE accept")?;
                            results.push(Err(StoreError::new(e)));
                        }
                    }
                }
                Ok(results)
            })
            .await;
        match results {
            Ok(results) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(StoreError::new(&e)));
                }
            }
        }
    }
}
