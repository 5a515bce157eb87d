//! The answer of `GET /readyz`, reused for [`READINESS_FOR`]: the probe behind it is an
//! fsynced write and the route needs no token, so a flood of probes costs at most one
//! write per period, whatever their number.

use std::future::Future;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long one readiness answer is reused.
pub const READINESS_FOR: Duration = Duration::from_secs(1);

/// The last probe's result and when it was taken.
#[derive(Default)]
pub struct Readiness {
    last: Mutex<Option<(Instant, bool)>>,
}

impl Readiness {
    /// Whether the store is ready: the last answer if younger than [`READINESS_FOR`],
    /// else `probe`'s. Callers arriving while a probe runs wait for it and share it.
    pub async fn check<P: Future<Output = bool>>(&self, probe: impl FnOnce() -> P) -> bool {
        let mut last = self.last.lock().await;
        if let Some((at, ready)) = *last {
            if at.elapsed() < READINESS_FOR {
                return ready;
            }
        }
        let ready = probe().await;
        *last = Some((Instant::now(), ready));
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    async fn probe(count: &AtomicUsize, ready: bool) -> bool {
        count.fetch_add(1, Ordering::SeqCst);
        ready
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_probes_writes_once_per_period() {
        let readiness = Arc::new(Readiness::default());
        let probes = Arc::new(AtomicUsize::new(0));
        let mut checks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (readiness, probes) = (readiness.clone(), probes.clone());
            checks.spawn(async move { readiness.check(|| probe(&probes, true)).await });
        }
        while let Some(ready) = checks.join_next().await {
            assert!(ready.unwrap());
        }
        assert_eq!(probes.load(Ordering::SeqCst), 1);

        tokio::time::advance(READINESS_FOR - Duration::from_millis(1)).await;
        assert!(readiness.check(|| probe(&probes, false)).await);
        assert_eq!(probes.load(Ordering::SeqCst), 1, "reused within the period");

        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!readiness.check(|| probe(&probes, false)).await);
        assert_eq!(probes.load(Ordering::SeqCst), 2, "probed again after it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_is_reused_too_then_retried() {
        let readiness = Readiness::default();
        let probes = AtomicUsize::new(0);
        assert!(!readiness.check(|| probe(&probes, false)).await);
        assert!(!readiness.check(|| probe(&probes, true)).await);
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        tokio::time::advance(READINESS_FOR).await;
        assert!(readiness.check(|| probe(&probes, true)).await);
        assert_eq!(probes.load(Ordering::SeqCst), 2);
    }
}
