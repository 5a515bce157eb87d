//! Scheduled sends: the rule for a request's `send_at`, once, for the contract and both
//! runtimes.
//!
//! A request may carry `send_at`, an RFC 3339 time with its offset (`Z` or `+03:00`), at
//! most [`AT_MOST_AHEAD`] ahead. It is accepted at once and sent then: its jobs are queued
//! to become visible at `send_at`, and a job that comes up earlier (a queue that cannot
//! wait that long: SQS delays a message by at most 15 minutes) is put back for the rest of
//! the wait, at most [`RECHECK_AT_MOST`] at a time, so that nothing is sent early and a
//! cancelled request is settled within that time. A `send_at` already past sends at once.

use std::time::Duration;

/// The furthest ahead a request may be scheduled.
pub const AT_MOST_AHEAD: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest a job of a scheduled request is put back for at a time (SQS's longest
/// message delay).
pub const RECHECK_AT_MOST: Duration = Duration::from_secs(15 * 60);

/// `text` as milliseconds since the Unix epoch, checked against `now` (milliseconds), or
/// why it cannot be a `send_at`.
pub fn parse(text: &str, now: i64) -> Result<i64, String> {
    let at: jiff::Timestamp = text.parse().map_err(|_| {
        "must be an RFC 3339 time with its offset, such as \"2026-12-24T09:00:00Z\" or \
         \"2026-12-24T12:00:00+03:00\""
            .to_string()
    })?;
    let at = at.as_millisecond();
    let horizon = now.saturating_add(AT_MOST_AHEAD.as_millis() as i64);
    if at > horizon {
        return Err(format!(
            "may be at most {} days ahead",
            AT_MOST_AHEAD.as_secs() / 86_400
        ));
    }
    Ok(at)
}

/// How long a job of a request due in `due_in` waits before it looks again.
pub fn recheck_after(due_in: Duration) -> Duration {
    due_in.min(RECHECK_AT_MOST)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000; // 2026-11-30T...Z

    #[test]
    fn utc_and_offsets_are_the_same_instant() {
        let utc = parse("2026-12-24T09:00:00Z", NOW).unwrap();
        assert_eq!(parse("2026-12-24T12:00:00+03:00", NOW), Ok(utc));
        assert_eq!(parse("2026-12-24T09:00:00.250Z", NOW), Ok(utc + 250));
    }

    #[test]
    fn times_without_an_offset_or_not_times_are_refused() {
        for text in [
            "2026-12-24T09:00:00",
            "tomorrow",
            "",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse(text, NOW).unwrap_err().contains("RFC 3339"), "{text}");
        }
    }

    #[test]
    fn thirty_days_ahead_is_the_limit_and_the_past_is_now() {
        let limit = NOW + AT_MOST_AHEAD.as_millis() as i64;
        let text = |ms: i64| jiff::Timestamp::from_millisecond(ms).unwrap().to_string();
        assert_eq!(parse(&text(limit), NOW), Ok(limit));
        assert!(parse(&text(limit + 1000), NOW)
            .unwrap_err()
            .contains("30 days"));
        assert_eq!(parse(&text(NOW - 60_000), NOW), Ok(NOW - 60_000));
    }

    #[test]
    fn a_far_wait_is_looked_at_again_every_fifteen_minutes() {
        assert_eq!(recheck_after(Duration::from_secs(86_400)), RECHECK_AT_MOST);
        assert_eq!(
            recheck_after(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
