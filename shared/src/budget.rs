//! A bot's send budget shared across processes: the rule, and an in-process budget.
//!
//! Where several processes send for one bot (the AWS worker's instances), each would
//! otherwise have to keep to a fixed share of the bot's rate: together under the
//! platform's limit, but a lone instance at a fraction of it. With a shared budget every
//! process paces at the bot's whole rate and, before a send, spends a slot of the budget,
//! claimed a few at a time from where the budget lives ([`SendBudget`]: DynamoDB on AWS).
//!
//! The budget is one number per bot and channel, like a rate limit's: the time its next
//! slot is free (its theoretical arrival time). A claim of `n` slots takes the `n` next
//! slots, spaced `window / rate` apart, from that time or from now if it is past — no burst
//! after an idle spell, and the same 5% margin as a process's own pace
//! ([`JITTER_MARGIN`]). The transactional lane claims first: a transactional
//! send may claim a slot up to [`TRANSACTIONAL_AHEAD`] ahead, one at a time; a bulk send
//! claims up to [`BULK_CHUNK`] at once, but only slots within [`BULK_AHEAD`] of now, so an
//! order confirmation on any instance waits behind at most that much of a broadcast's
//! claims (or one slot, at a rate under five a second). A process whose bulk claims have been
//! refused [`crate::pace::BULK_FLOOR_EVERY`] times in a row claims once as transactional
//! (bulk's floor share across processes). Slots a process does not use in time (its job
//! ended) are dropped, never sent late in a burst. A 429's `retry_after` met by any
//! process moves the budget's next free slot past it ([`paused`]), so every process
//! waits, not just the one that met it.

use crate::error::StoreError;
use crate::lane::Lane;
use crate::ports::SendBudget;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How much longer than a second the window of `rate` sends is: 5%, so that a send
/// delayed by up to 50 ms on its way (a busy host, a slow connection) does not land in the
/// same second as the one `rate` turns later. A process's own pace keeps the same margin
/// (`pace` takes it from here), and so does the chat gap.
pub const JITTER_MARGIN: Duration = Duration::from_millis(50);

/// The window of `rate` sends: a second and the jitter margin. Every pace and budget of
/// Herald's spaces sends by it, and the status document's ETA counts with it.
pub const WINDOW: Duration = Duration::from_secs(1).saturating_add(JITTER_MARGIN);

/// [`WINDOW`] in microseconds, the budget's unit.
const WINDOW_US: i64 = WINDOW.as_micros() as i64;

/// How far ahead a transactional send may claim its slot.
pub const TRANSACTIONAL_AHEAD: Duration = Duration::from_secs(1);

/// How far ahead the budget may be taken for a bulk claim to be granted.
pub const BULK_AHEAD: Duration = Duration::from_millis(200);

/// Slots a bulk claim takes at most at once, as many as fit within [`BULK_AHEAD`] (a
/// transactional claim takes one).
pub const BULK_CHUNK: u32 = 5;

/// Microseconds between two slots at `per_second`.
pub fn interval_us(per_second: u32) -> i64 {
    (WINDOW_US / i64::from(per_second.max(1))).max(1)
}

/// Claim `want` slots of a budget whose next free slot is at `tat` (None: never used) at
/// `now`, both in microseconds of one clock: the new `tat` and the claimed slots' times,
/// or how long until a claim of `lane` may be granted.
pub fn claim(
    tat: Option<i64>,
    now: i64,
    per_second: u32,
    lane: Lane,
    want: u32,
) -> Result<(i64, Vec<i64>), Duration> {
    let interval = interval_us(per_second);
    let start = tat.unwrap_or(now).max(now);
    let ahead_allowed = match lane {
        Lane::Transactional => TRANSACTIONAL_AHEAD.as_micros() as i64,
        Lane::Bulk => (BULK_AHEAD.as_micros() as i64).max(interval),
    };
    let ahead = start - now;
    if ahead > ahead_allowed {
        return Err(Duration::from_micros((ahead - ahead_allowed) as u64));
    }
    // A bulk claim takes only the slots that fit within its horizon: an order behind it
    // waits at most that long.
    let fits = match lane {
        Lane::Transactional => i64::MAX,
        Lane::Bulk => (ahead_allowed - ahead) / interval + 1,
    };
    let granted = i64::from(want.max(1)).min(fits.max(1));
    let slots = (0..granted).map(|i| start + i * interval).collect();
    Ok((start + granted * interval, slots))
}

/// The budget's next free slot after a pause of `wait` at `now` (microseconds): None when
/// it is free no sooner than that already.
pub fn paused(tat: Option<i64>, now: i64, wait: Duration) -> Option<i64> {
    let until = now.saturating_add(wait.as_micros().min(i64::MAX as u128) as i64);
    (tat.unwrap_or(now) < until).then_some(until)
}

/// A budget in this process (tests, and a single process that wants the rule), on tokio's
/// clock so that tests can run it on a paused one.
pub struct LocalBudget {
    base: tokio::time::Instant,
    tats: Mutex<HashMap<String, i64>>,
}

impl Default for LocalBudget {
    fn default() -> Self {
        LocalBudget {
            base: tokio::time::Instant::now(),
            tats: Mutex::default(),
        }
    }
}

#[async_trait]
impl SendBudget for LocalBudget {
    async fn claim(
        &self,
        key: &str,
        per_second: u32,
        lane: Lane,
        want: u32,
    ) -> Result<Result<Vec<Duration>, Duration>, StoreError> {
        let now = self.base.elapsed().as_micros() as i64;
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        Ok(
            claim(tats.get(key).copied(), now, per_second, lane, want).map(|(tat, slots)| {
                tats.insert(key.to_string(), tat);
                slots_from(now, &slots)
            }),
        )
    }

    async fn pause(&self, key: &str, wait: Duration) -> Result<(), StoreError> {
        let now = self.base.elapsed().as_micros() as i64;
        let mut tats = self.tats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = paused(tats.get(key).copied(), now, wait) {
            tats.insert(key.to_string(), until);
        }
        Ok(())
    }
}

/// Claimed slots' times as waits from `now` (microseconds of the same clock).
pub fn slots_from(now: i64, slots: &[i64]) -> Vec<Duration> {
    slots
        .iter()
        .map(|at| Duration::from_micros((at - now).max(0) as u64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_at_the_rate_with_the_margin_from_now_or_the_last_claim() {
        let (tat, slots) = claim(None, 1_000_000, 30, Lane::Bulk, 3).unwrap();
        assert_eq!(slots, [1_000_000, 1_035_000, 1_070_000]);
        assert_eq!(tat, 1_105_000);
        // A bulk claim takes what fits within its 200 ms: six slots at 30/s, two at 10/s.
        let (_, chunk) = claim(None, 0, 30, Lane::Bulk, 10).unwrap();
        assert_eq!(chunk.len(), 6);
        let (_, slow) = claim(None, 0, 10, Lane::Bulk, BULK_CHUNK).unwrap();
        assert_eq!(slow, [0, 105_000]);
        // Claimed again at once: after the last slot, not on top of it.
        let (_, next) = claim(Some(tat), 1_000_100, 30, Lane::Bulk, 1).unwrap();
        assert_eq!(next, [1_105_000]);
        // After an idle spell: from now, with no burst for the time unused.
        let (_, idle) = claim(Some(tat), 9_000_000, 30, Lane::Bulk, 2).unwrap();
        assert_eq!(idle, [9_000_000, 9_035_000]);
    }

    #[test]
    fn bulk_waits_while_the_budget_is_taken_ahead_and_transactional_still_claims() {
        let now = 0;
        let tat = 500_000; // taken half a second ahead
        assert_eq!(
            claim(Some(tat), now, 30, Lane::Bulk, BULK_CHUNK),
            Err(Duration::from_micros(300_000))
        );
        let (_, slot) = claim(Some(tat), now, 30, Lane::Transactional, 1).unwrap();
        assert_eq!(slot, [500_000]);
        assert!(claim(Some(1_200_000), now, 30, Lane::Transactional, 1).is_err());
        // At one message a second a bulk claim may be one interval ahead.
        assert!(claim(Some(1_000_000), now, 1, Lane::Bulk, 1).is_ok());
    }

    #[test]
    fn a_pause_moves_the_next_slot_past_it_and_never_back() {
        let wait = Duration::from_secs(7);
        assert_eq!(paused(None, 1_000, wait), Some(7_001_000));
        assert_eq!(paused(Some(500), 1_000, wait), Some(7_001_000));
        assert_eq!(paused(Some(9_000_000), 1_000, wait), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_local_budget_is_one_budget_for_every_claimer() {
        let budget = LocalBudget::default();
        let first = budget
            .claim("shop#telegram", 10, Lane::Bulk, 2)
            .await
            .unwrap();
        assert_eq!(first, Ok(vec![Duration::ZERO, Duration::from_millis(105)]));
        // Taken 210 ms ahead: bulk waits, transactional claims the next slot.
        let bulk = budget
            .claim("shop#telegram", 10, Lane::Bulk, 1)
            .await
            .unwrap();
        assert_eq!(bulk, Err(Duration::from_millis(10)));
        let order = budget
            .claim("shop#telegram", 10, Lane::Transactional, 1)
            .await
            .unwrap();
        assert_eq!(order, Ok(vec![Duration::from_millis(210)]));
        let other = budget
            .claim("other#telegram", 10, Lane::Bulk, 1)
            .await
            .unwrap();
        assert_eq!(other, Ok(vec![Duration::ZERO]));
    }
}
