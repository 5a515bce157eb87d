//! The one error type adapters return to the core, with a kind and a source.
//!
//! Adapters map their own failures to a [`StoreError`] of the kind that says what the
//! caller should do: [`Unavailable`](StoreError::Unavailable) (SQLite busy, DynamoDB
//! throttling, a lost connection: try again later — the Router answers 503 with
//! `Retry-After`, the queue retries the job), [`Conflict`](StoreError::Conflict) (a
//! conditional write lost to another writer: try again with fresh data), and
//! [`Corrupt`](StoreError::Corrupt) (a stored record that cannot be read: trying again
//! cannot help, so a job that meets one goes to the dead letters at once, with its reason).
//! A backend hiccup never becomes a 500 or lost work.

use std::error::Error;

/// Why an underlying failure happened, kept as the error's source.
pub type Source = Box<dyn Error + Send + Sync + 'static>;

/// A backend (store, queue) could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot answer now; the same call may succeed later.
    #[error("backend unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Source>,
    },
    /// Another writer changed the record first; try again with what is stored now.
    #[error("conflicting change: {message}")]
    Conflict { message: String },
    /// A stored record cannot be read as what it must be; no retry can help.
    #[error("corrupt record: {message}")]
    Corrupt {
        message: String,
        #[source]
        source: Option<Source>,
    },
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    Unavailable,
    Conflict,
    Corrupt,
}

impl StoreError {
    /// Unavailable, with only a message.
    pub fn new(message: impl std::fmt::Display) -> Self {
        StoreError::Unavailable {
            message: message.to_string(),
            source: None,
        }
    }

    /// Unavailable, because of `source`.
    pub fn unavailable(source: impl Error + Send + Sync + 'static) -> Self {
        StoreError::Unavailable {
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    pub fn conflict(message: impl std::fmt::Display) -> Self {
        StoreError::Conflict {
            message: message.to_string(),
        }
    }

    /// A record (`what`, named without its contents) that cannot be read, because of
    /// `source`. The message names only the record: a parser's words may quote stored data,
    /// which never goes into logs or answers, so they stay in the source.
    pub fn corrupt(what: impl std::fmt::Display, source: impl Into<Source>) -> Self {
        StoreError::Corrupt {
            message: format!("{what} cannot be read"),
            source: Some(source.into()),
        }
    }

    pub fn kind(&self) -> StoreErrorKind {
        match self {
            StoreError::Unavailable { .. } => StoreErrorKind::Unavailable,
            StoreError::Conflict { .. } => StoreErrorKind::Conflict,
            StoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
        }
    }

    /// Whether trying again cannot help.
    pub fn is_corrupt(&self) -> bool {
        self.kind() == StoreErrorKind::Corrupt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_keeps_its_message_and_source() {
        let parse = serde_json::from_str::<u32>("\"secret-data\"").unwrap_err();
        let corrupt = StoreError::corrupt("job 1", parse);
        assert!(corrupt.is_corrupt());
        assert_eq!(corrupt.to_string(), "corrupt record: job 1 cannot be read");
        assert!(corrupt
            .source()
            .unwrap()
            .to_string()
            .contains("secret-data"));
        let busy = StoreError::unavailable(std::io::Error::other("busy"));
        assert_eq!(busy.kind(), StoreErrorKind::Unavailable);
        assert_eq!(busy.to_string(), "backend unavailable: busy");
        assert!(!StoreError::new("x").is_corrupt());
        assert_eq!(StoreError::conflict("v").kind(), StoreErrorKind::Conflict);
    }
}
