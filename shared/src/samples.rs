//! Which failures and delivery details a request keeps as samples, for both runtimes.
//!
//! A status document shows at most [`ERROR_SAMPLES`] failed users, at most
//! [`ERROR_SAMPLES_PER_REASON`] of any one reason (so that one loud reason cannot hide the
//! others), and at most [`DELIVERY_SAMPLES`] delivery details. The stores apply these rules
//! through [`admit_errors`] and [`admit_deliveries`] to what they hold, so the embedded and
//! the AWS runtime keep the same samples.

/// Error samples a request keeps.
pub const ERROR_SAMPLES: usize = 20;
/// Error samples of one reason a request keeps.
pub const ERROR_SAMPLES_PER_REASON: usize = 5;
/// Delivery details a request keeps.
pub const DELIVERY_SAMPLES: usize = 5;

/// Which of `candidates` (the reasons of new failures, in order) join samples whose
/// reasons are `kept`: their indexes, in order.
pub fn admit_errors<'a>(
    kept: impl IntoIterator<Item = &'a str>,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Vec<usize> {
    let mut reasons: Vec<&str> = kept.into_iter().collect();
    let mut admitted = Vec::new();
    for (index, reason) in candidates.into_iter().enumerate() {
        if reasons.len() >= ERROR_SAMPLES {
            break;
        }
        if reasons.iter().filter(|r| **r == reason).count() < ERROR_SAMPLES_PER_REASON {
            reasons.push(reason);
            admitted.push(index);
        }
    }
    admitted
}

/// How many of `candidates` new delivery details join `kept` stored ones.
pub fn admit_deliveries(kept: usize, candidates: usize) -> usize {
    candidates.min(DELIVERY_SAMPLES.saturating_sub(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_twenty_samples_and_five_of_a_reason() {
        let loud = ["rate_limited"; 30];
        assert_eq!(admit_errors([], loud.iter().copied()).len(), 5);
        let kept = ["a"; 5];
        let mixed = ["a", "b", "b", "c"];
        assert_eq!(admit_errors(kept.iter().copied(), mixed), vec![1, 2, 3]);
        let reasons: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
        let many: Vec<&str> = reasons.iter().flat_map(|r| [r.as_str(); 3]).collect();
        assert_eq!(admit_errors([], many.iter().copied()).len(), ERROR_SAMPLES);
        assert_eq!(admit_deliveries(3, 10), 2);
        assert_eq!(admit_deliveries(7, 10), 0);
    }
}
