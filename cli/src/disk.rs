//! Free space on the database's file system, watched so that `herald serve` sheds new
//! work before the disk is full rather than after.
//!
//! A background task reads `statvfs` of the database's directory every
//! [`CHECK_EVERY`]. While fewer than `min_free` bytes are left, new event requests are
//! answered 503 with `Retry-After` (nothing accepted) and readiness answers 503; work
//! already accepted goes on. Jobs, outcomes and status reads need little space, and
//! SQLite reuses its log, so they keep working on what is left.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often free space is read.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

pub struct DiskWatch {
    low: AtomicBool,
    free: AtomicU64,
    min_free: u64,
}

impl DiskWatch {
    /// Watch the file system holding `db`; low below `min_free` bytes.
    pub fn start(db: &Path, min_free: u64) -> Arc<DiskWatch> {
        let dir = db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let watch = Arc::new(DiskWatch {
            low: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
            min_free,
        });
        watch.check(&dir);
        let watching = Arc::downgrade(&watch);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            loop {
                tick.tick().await;
                let Some(watch) = watching.upgrade() else {
                    return;
                };
                watch.check(&dir);
            }
        });
        watch
    }

    fn check(&self, dir: &Path) {
        let Some(free) = free_bytes(dir) else {
            return;
        };
        self.free.store(free, Ordering::Relaxed);
        let low = free < self.min_free;
        if self.low.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(
                    free,
                    min_free = self.min_free,
                    "free disk is low: new requests are refused"
                );
            } else {
                tracing::info!(free, "free disk recovered: requests are accepted again");
            }
        }
    }

    /// Whether free space is below the minimum.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }
}

/// Bytes available to this process on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the zeroed struct passed to it.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut stat) == 0)
            .then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
    }
}
