//! Per-event rate limits on the public endpoint: GCRA, one number of state per event.
//!
//! The generic cell rate algorithm keeps a "theoretical arrival time" (TAT) per event: a
//! request is admitted when the TAT is at most `burst - 1` intervals ahead of now, and
//! moves it one interval on. [`gcra`] is the whole rule, pure; [`Throttle`] is where the
//! TAT lives — in this process for `herald serve` ([`LocalThrottle`]), in DynamoDB for
//! the Lambdas, so that every `api` instance shares one limit.

use crate::domain::RateLimit;
use crate::error::StoreError;
use crate::ports::Throttle;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The TAT after admitting one request at `now` (microseconds), or how long to wait.
pub fn gcra(tat: Option<i64>, now: i64, limit: &RateLimit) -> Result<i64, Duration> {
    // Saturating throughout: a rate too small to mean anything (stored before limits were
    // checked, or on the edge of them) must refuse, never wrap around and admit all.
    let interval = (1e6 / limit.per_second).round().clamp(1.0, MAX_INTERVAL_US) as i64;
    let tolerance = interval.saturating_mul(i64::from(limit.burst.max(1)) - 1);
    let tat = tat.unwrap_or(now).max(now);
    let ahead = tat.saturating_sub(now);
    if ahead > tolerance {
        Err(Duration::from_micros(ahead.saturating_sub(tolerance) as u64))
    } else {
        Ok(tat.saturating_add(interval))
    }
}

/// The longest interval between two admitted requests: about 30 years.
const MAX_INTERVAL_US: f64 = 1e15;

/// Whole seconds to tell a client to wait (`Retry-After`), at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_micros().div_ceil(1_000_000).max(1) as u64
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Rate-limit state in this process: exact for one `herald serve`.
#[derive(Default)]
pub struct LocalThrottle {
    tats: Mutex<HashMap<String, i64>>,
}

#[async_trait]
impl Throttle for LocalThrottle {
    async fn admit(
        &self,
        key: &str,
        limit: &RateLimit,
    ) -> Result<Result<(), Duration>, StoreError> {
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_us();
        // Forget events idle long enough that their state no longer matters.
        if tats.len() > 10_000 {
            tats.retain(|_, tat| *tat > now);
        }
        Ok(match gcra(tats.get(key).copied(), now, limit) {
            Ok(tat) => {
                tats.insert(key.to_string(), tat);
                Ok(())
            }
            Err(wait) => Err(wait),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000;

    #[test]
    fn a_burst_is_admitted_then_one_per_interval() {
        let limit = RateLimit {
            per_second: 2.0,
            burst: 3,
        };
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 0, &limit).expect("within the burst"));
        }
        let wait = gcra(tat, 0, &limit).expect_err("over the burst");
        assert_eq!(wait, Duration::from_millis(500));
        assert!(gcra(tat, SECOND / 2, &limit).is_ok());
    }

    #[test]
    fn a_quiet_spell_refills_the_burst_but_no_more() {
        let limit = RateLimit {
            per_second: 1.0,
            burst: 2,
        };
        let mut tat = Some(gcra(None, 0, &limit).unwrap());
        let later = 100 * SECOND;
        for _ in 0..2 {
            tat = Some(gcra(tat, later, &limit).expect("burst refilled"));
        }
        assert!(gcra(tat, later, &limit).is_err());
    }

    #[test]
    fn a_tiny_rate_admits_one_request_then_refuses_without_overflowing() {
        for per_second in [1e-300, f64::MIN_POSITIVE, 1e-3] {
            let limit = RateLimit {
                per_second,
                burst: 1,
            };
            let now = 1_800_000_000 * SECOND;
            let tat = gcra(None, now, &limit).expect("the first is admitted");
            for later in [now, now + SECOND, now + 500 * SECOND] {
                assert!(gcra(Some(tat), later, &limit).is_err(), "{per_second}");
            }
        }
        let wide = RateLimit {
            per_second: 1e-300,
            burst: 1_000_000,
        };
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra(tat, 0, &wide).unwrap_or(i64::MAX));
        }
        assert!(tat.is_some());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
    }

    #[tokio::test]
    async fn the_local_throttle_keeps_events_apart() {
        let throttle = LocalThrottle::default();
        let limit = RateLimit {
            per_second: 0.001,
            burst: 1,
        };
        assert!(throttle.admit("a", &limit).await.unwrap().is_ok());
        assert!(throttle.admit("a", &limit).await.unwrap().is_err());
        assert!(throttle.admit("b", &limit).await.unwrap().is_ok());
    }
}
