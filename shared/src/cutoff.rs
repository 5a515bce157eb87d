//! When a job stops starting deliveries.
//!
//! A deliver job starts deliveries until the first of: its own time budget runs out, the
//! process is shutting down (`herald serve` got SIGTERM), or the deadline its runtime
//! gives it (the worker Lambda's invocation deadline less the time a send may take).
//! A delivery already started runs to its end and its outcome is recorded; one not yet
//! started answers [`DeliveryResult::NotStarted`] and its user goes on in a new job, so a
//! routine stop never cuts a send in half and nobody is messaged twice.
//!
//! [`Stop`] is what a runtime hands the processor; [`Cutoff`] is what the processor makes
//! of it for one job and hands every delivery.
//!
//! [`DeliveryResult::NotStarted`]: crate::domain::DeliveryResult::NotStarted

use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// A runtime's reasons to stop starting deliveries, besides a job's own time budget.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    /// Cancelled when the process begins to shut down.
    pub shutdown: CancellationToken,
    /// No delivery starts after this instant (the worker Lambda's invocation deadline
    /// less a delivery's timeout and a margin).
    pub deadline: Option<Instant>,
}

impl Stop {
    /// No reason to stop but the job's own budget.
    pub fn never() -> Stop {
        Stop::default()
    }

    /// The cutoff of one job whose time budget ends at `budget_end`.
    pub fn cutoff(&self, budget_end: Instant) -> Cutoff {
        let deadline = match self.deadline {
            Some(deadline) => deadline.min(budget_end),
            None => budget_end,
        };
        Cutoff {
            deadline,
            token: self.shutdown.child_token(),
        }
    }
}

/// When one job's deliveries stop starting.
#[derive(Debug, Clone)]
pub struct Cutoff {
    deadline: Instant,
    token: CancellationToken,
}

impl Cutoff {
    /// Whether a delivery may no longer start.
    pub fn is_reached(&self) -> bool {
        self.token.is_cancelled() || Instant::now() >= self.deadline
    }

    /// Resolves when a delivery may no longer start. A deliverer that must wait before it
    /// sends (the bot's pace, a free connection) races its wait against this.
    pub async fn reached(&self) {
        tokio::select! {
            _ = self.token.cancelled() => {}
            _ = tokio::time::sleep_until(self.deadline.into()) => {}
        }
    }

    /// Stop this job's deliveries from starting now (its outcomes can no longer be
    /// recorded), without touching any other job.
    pub fn trip(&self) {
        self.token.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_cutoff_is_reached_at_its_deadline_at_shutdown_or_when_tripped() {
        let far = Instant::now() + Duration::from_secs(3600);
        let stop = Stop::never();
        let cutoff = stop.cutoff(far);
        assert!(!cutoff.is_reached());
        stop.shutdown.cancel();
        assert!(cutoff.is_reached());
        cutoff.reached().await;

        let near = Stop {
            deadline: Some(Instant::now()),
            ..Stop::never()
        };
        assert!(near.cutoff(far).is_reached(), "the runtime's deadline wins");

        let stop = Stop::never();
        let (one, other) = (stop.cutoff(far), stop.cutoff(far));
        one.trip();
        assert!(one.is_reached());
        assert!(!other.is_reached(), "tripping one job leaves the others");
        assert!(!stop.shutdown.is_cancelled());
    }
}
