//! Log lines a client can cause at will (a wrong secret, a refused connection), written at
//! most once a second each, with how many were left out since the last one.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// One kind of line's budget; a `static` per call site.
#[derive(Debug, Default)]
pub struct LogBudget {
    second: AtomicI64,
    left_out: AtomicU64,
}

impl LogBudget {
    pub const fn new() -> LogBudget {
        LogBudget {
            second: AtomicI64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// Some(lines left out since the last one) when this line may be written now.
    pub fn take(&self) -> Option<u64> {
        let now = crate::domain::now_ms() / 1000;
        if self.second.swap(now, Ordering::Relaxed) == now {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            Some(self.left_out.swap(0, Ordering::Relaxed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogBudget;

    #[test]
    fn one_line_a_second_and_a_count_of_the_rest() {
        let budget = LogBudget::new();
        assert_eq!(budget.take(), Some(0));
        let mut written = 0;
        for _ in 0..1000 {
            written += budget.take().is_some() as u32;
        }
        // At most one more, should the second have turned meanwhile.
        assert!(written <= 1, "{written}");
    }
}
