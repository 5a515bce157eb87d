//! Herald's embedded adapters: every port on one SQLite file.
//!
//! [`Sqlite`] opens the file in WAL mode, applies the [`schema`] migrations, and implements
//! the event directory ([`events`]), the user store ([`users`]), the request log and intake
//! ([`requests`]), a durable job queue with leases, attempts and dead jobs ([`queue`], which
//! the core's worker pool drains) and the operators' changes ([`admin`]).
//! Writes go through one writer connection (SQLite allows one writer at a time anyway):
//! write transactions are queued to its thread, which commits many of them at a time
//! ([`group_commit`]). Reads use a small pool of reader connections on tokio's blocking
//! pool, so status reads never wait for writes.
//!
//! # Layout
//!
//! - the connection and its writer: this file, [`group_commit`], [`schema`] (migrations);
//! - one module per port: [`events`] (with [`event_cache`]), [`users`], [`requests`]
//!   (request log and intake), [`queue`] (`JobQueue` and `LeaseQueue`), [`admin`] (the five
//!   admin ports);
//! - embedded-only operations `herald serve` runs: [`backlog`], [`retention`], [`backup`].

pub mod admin;
pub mod backlog;
pub mod backup;
pub mod event_cache;
pub mod events;
pub mod group_commit;
pub mod queue;
pub mod requests;
pub mod retention;
pub mod schema;
pub mod users;

use herald_core::channels::Channels;
use herald_core::ports::Deliverer;
use herald_core::{App, Config, Ports, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Reads running at once, each on a connection of the pool and a blocking thread. Without
/// a bound, 400 concurrent status reads of a request with 256 KiB of data opened 400
/// connections and took the process to about 1.5 GB.
pub const MAX_READERS: usize = 16;

/// The embedded store. Cheap to clone: clones share connections.
#[derive(Clone)]
pub struct Sqlite {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// At most [`MAX_READERS`] reads at once: a read waits here (cheaply, as a task)
    /// rather than each taking a blocking thread and a connection of its own.
    reader_slots: Arc<tokio::sync::Semaphore>,
    /// Woken whenever jobs are enqueued.
    jobs_ready: Notify,
    /// Writes waiting to be committed together by the writer thread ([`group_commit`]).
    committer: group_commit::Queue,
    /// Events read lately ([`event_cache`]).
    events: event_cache::EventCache,
    /// Bots' backlogs counted lately ([`backlog`]).
    backlogs: backlog::Backlogs,
}

impl Sqlite {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Sqlite, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut writer = connect(&path).map_err(StoreError::new)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(StoreError::new)?;
        // Checkpoints run on their own thread (see `checkpoints`), never inside a commit:
        // a checkpoint in the committing connection stalls every accept waiting on it.
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(StoreError::new)?;
        let fresh: i64 = writer
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(StoreError::new)?;
        if fresh == 0 {
            // Before the first table: freed pages can then be handed back (retention).
            writer
                .pragma_update(None, "auto_vacuum", "INCREMENTAL")
                .map_err(StoreError::new)?;
        }
        schema::migrate(&mut writer).map_err(StoreError::new)?;
        let auto_vacuum: i64 = writer
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(StoreError::new)?;
        if auto_vacuum != 2 {
            // A database made before retention: rebuilt once so that it can give space back.
            tracing::info!(path = %path.display(), "rebuilding the database once so that deleted data gives its space back (VACUUM)");
            writer
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
                .map_err(StoreError::new)?;
        }
        let (committer, waiting) = group_commit::queue();
        let store = Sqlite {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                reader_slots: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
                jobs_ready: Notify::new(),
                committer,
                events: event_cache::EventCache::default(),
                backlogs: backlog::Backlogs::default(),
            }),
        };
        group_commit::start(Arc::downgrade(&store.inner), waiting)?;
        checkpoints(&store)?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Run `f` on the writer connection, on the blocking pool, outside any transaction and
    /// outside group commit: for rare maintenance statements. Everything on a hot path goes
    /// through [`Sqlite::transaction`].
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn).map_err(store_error)
        })
        .await
        .map_err(StoreError::new)?
    }

    /// Run `f` on a reader connection, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let inner = self.inner.clone();
        let slot = inner
            .reader_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(StoreError::new)?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => connect_reader(&inner.path).map_err(StoreError::new)?,
            };
            let result = f(&conn).map_err(store_error);
            inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(StoreError::new)?
    }

    /// Checkpoint the WAL now, as the background thread does every tick (see
    /// [`checkpoints`]): copy it back, and rewind it once it holds [`WAL_RESTART_FRAMES`].
    /// True when it was rewound; false when there was no need, or another connection
    /// (the background checkpointer, a reader) kept it from completing — the next tick
    /// tries again.
    pub fn checkpoint(&self) -> Result<bool, StoreError> {
        let conn = connect(&self.inner.path).map_err(StoreError::new)?;
        checkpoint(&self.inner, &conn).map_err(StoreError::new)
    }

    pub(crate) fn notify_jobs(&self) {
        self.inner.jobs_ready.notify_waiters();
    }

    pub(crate) async fn jobs_enqueued(&self) {
        self.inner.jobs_ready.notified().await
    }
}

/// The [`App`] of the embedded runtime: every port on `store`, rate limits in this
/// process, actions through `deliverer`, bots' connections checked against `channels`.
pub fn app(
    store: &Sqlite,
    config: Config,
    deliverer: Arc<dyn Deliverer>,
    channels: Channels,
) -> App {
    let throttle = Arc::new(herald_core::throttle::LocalThrottle::default());
    App::new(
        config,
        Ports::all(Arc::new(store.clone()), throttle),
        deliverer,
        channels,
    )
}

/// How often the WAL is copied back into the database file. Often, so that each copy is
/// small: at 9,000 accepts/s, a copy every 500 ms (with the database file's fsync) stalled
/// the commits of its moment for 10–50 ms (p99 14–53 ms); every 50 ms, p99 stayed at
/// 4–7 ms (BENCHMARKS.md, 1). An idle tick finds nothing to copy.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// A WAL holding this many frames (about 64 MiB) is restarted from its beginning.
pub const WAL_RESTART_FRAMES: i64 = 16384;

/// How long a restarting checkpoint may wait for readers to leave the log.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// How long the writer connection waits on a lock held by another connection.
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A thread that checkpoints the WAL while the store is open.
///
/// Every tick copies what it can back into the database, on a connection of its own
/// (PASSIVE: it never blocks writers or readers). That alone lets the WAL grow without end
/// under steady load: SQLite only rewinds the log when a writer finds it fully copied *and*
/// no reader inside it, which never happens while workers read and write all the time (a
/// fan-out of 200,000 users grew it to 1.5 GB, every append extending the file). So once
/// the log holds [`WAL_RESTART_FRAMES`] the tick also runs a RESTART checkpoint — on the
/// writer connection, under the writer lock, so that writers wait on that lock and carry
/// on the moment it is done rather than sleeping in SQLite's busy handler (which turned
/// a few-millisecond restart into accepts waiting 50–100 ms). It waits at most
/// [`RESTART_WAIT`] for readers to leave the log; the next commit writes from the start of
/// the file again. `journal_size_limit` trims a WAL that a big transaction left large.
fn checkpoints(store: &Sqlite) -> Result<(), StoreError> {
    let conn = connect(&store.inner.path).map_err(StoreError::new)?;
    let store = Arc::downgrade(&store.inner);
    std::thread::Builder::new()
        .name("herald-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            let Some(inner) = store.upgrade() else {
                return;
            };
            if let Err(e) = checkpoint(&inner, &conn) {
                tracing::debug!(error = %e, "checkpoint skipped");
            }
        })
        .map_err(StoreError::new)?;
    Ok(())
}

/// One tick of [`checkpoints`], `conn` being the checkpointer's own connection; whether
/// the WAL was rewound.
fn checkpoint(inner: &Inner, conn: &Connection) -> rusqlite::Result<bool> {
    let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))?;
    if frames >= WAL_RESTART_FRAMES {
        // Copy what came in meanwhile as well, so that little is left to do under the lock
        // (about 1 ms instead of 4–9 ms measured at 6,000 accepts/s).
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
        let writer = inner.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.busy_timeout(RESTART_WAIT)?;
        // Its first column is 1 when a reader or another checkpoint kept it from
        // completing (not an error: the WAL is simply not rewound this time).
        let restarted =
            writer.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        writer.busy_timeout(BUSY_WAIT)?;
        return Ok(restarted? == 0);
    }
    Ok(false)
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_WAIT)?;
    // NORMAL in WAL mode: a commit survives a crash of the process; after a power loss the
    // newest commits may roll back, always as a suffix of the log. Worker bookkeeping is
    // safe under that (a lost outcome means a redelivery). What must survive a power loss
    // too — accepted requests, created events — goes through `durable_transaction`.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 64 MiB of page cache per connection: big imports and fan-outs touch many index pages.
    conn.pragma_update(None, "cache_size", -65536)?;
    // A WAL rewound after a big transaction is trimmed back to this size (bytes).
    conn.pragma_update(None, "journal_size_limit", 64 << 20)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A reader connection. Its page cache is small on purpose: a connection drops its whole
/// cache whenever it finds the WAL changed since its last read — under steady writes that
/// is every read — and the cost of dropping grows with the cache (a 64 MiB cache made
/// dropping it a tenth of a fan-out's CPU time). The pages themselves stay in the OS cache.
fn connect_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = connect(path)?;
    conn.pragma_update(None, "cache_size", -2048)?;
    Ok(conn)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    herald_core::domain::now_ms()
}

/// JSON text of `value` as a rusqlite error when it cannot be serialized.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// A SQLite failure as the core's error: a stored value that does not read as what it
/// must be (bad JSON, a wrong column type) is corrupt — no retry can help — and anything
/// else (busy, locked, I/O) is unavailable.
pub(crate) fn store_error(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => StoreError::corrupt("a stored row", e),
        e => StoreError::unavailable(e),
    }
}

/// `T` from JSON text as a rusqlite error when it does not parse.
/// Column `at` of `row` as an id of its kind; a value that breaks the kind's rule does
/// not convert (the row reads as corrupt).
pub(crate) fn typed<T>(
    row: &rusqlite::Row,
    at: usize,
    parse: fn(String) -> Result<T, herald_core::ids::InvalidId>,
) -> rusqlite::Result<T> {
    parse(row.get(at)?).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}
