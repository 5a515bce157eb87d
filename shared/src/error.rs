//! The one error type adapters return to the core.
//!
//! Adapters map their own failures (SQLite busy, DynamoDB throttling, a lost connection)
//! to [`StoreError`]; the Router answers 503 with `Retry-After` for it and the queue
//! retries the job, so a backend hiccup never becomes a 500 or lost work.

/// A backend (store, queue) could not do what was asked; the caller may retry.
#[derive(Debug, thiserror::Error)]
#[error("backend unavailable: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub fn new(message: impl std::fmt::Display) -> Self {
        StoreError(message.to_string())
    }
}
