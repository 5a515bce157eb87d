//! Jobs kept dead: listed, put back on the queue, or purged.

use crate::admin::{DeadLetter, Selection};
use crate::domain::Job;
use crate::error::StoreError;
use async_trait::async_trait;

/// The dead letters as operators handle them.
#[async_trait]
pub trait DeadLetterAdmin: Send + Sync {
    /// Dead jobs, oldest first, at most `limit`.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, StoreError>;
    /// Put the selected dead jobs back on the queue as fresh jobs (attempts from zero),
    /// first reopening their users' `failed` outcomes so that they count again. Answers
    /// the jobs put back.
    async fn redrive(&self, which: &Selection) -> Result<Vec<Job>, StoreError>;
    /// Delete the selected dead jobs for good; answers how many.
    async fn purge(&self, which: &Selection) -> Result<u64, StoreError>;
}
