//! A consistent copy of a database file, taken while a server writes to it.
//!
//! `VACUUM INTO` reads one snapshot of the database (in WAL mode a reader neither blocks
//! the writer nor is blocked by it) and writes it, compacted, to a new file, which is
//! fsynced before this returns. The copy is a complete database with no `-wal` of its own.

use herald_core::StoreError;
use std::path::Path;

/// Copy the database at `db` to `to` (which must not exist); the copy's size in bytes.
pub fn backup(db: &Path, to: &Path) -> Result<u64, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(StoreError::new)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(StoreError::new)?;
    let target = to
        .to_str()
        .ok_or_else(|| StoreError::new("the backup's path is not UTF-8"))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(StoreError::new)?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(StoreError::new)?;
    std::fs::metadata(to)
        .map(|m| m.len())
        .map_err(StoreError::new)
}
