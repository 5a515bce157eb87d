//! The figures of a lanes benchmark (`benches/lanes.rs` embedded, `aws_lanes` on the
//! emulators), read from a fake Telegram's record: order latency and the broadcast's rate
//! as a ratio of what the orders leave.

use crate::TelegramLog;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The `q`-quantile (0..=1) of `samples`, sorted in place.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let index = ((samples.len() - 1) as f64 * q).round() as usize;
    samples[index]
}

/// Print the figures of a run under `label`: `orders` maps each order's key — what
/// `key_of(chat, text)` picks from an arrival — to when it was accepted; every other
/// arrival is the broadcast's, to `users` users, at a fake enforcing `limit` per second.
pub fn print(
    label: &str,
    log: &TelegramLog,
    (users, limit): (usize, usize),
    orders: &HashMap<String, Instant>,
    key_of: for<'a> fn(&'a str, &'a str) -> &'a str,
) {
    let order_at = |(chat, text, _): &(String, String, Instant)| orders.get(key_of(chat, text));
    let mut latencies: Vec<Duration> = log
        .arrivals
        .iter()
        .filter_map(|arrival| order_at(arrival).map(|a| arrival.2.saturating_duration_since(*a)))
        .collect();
    assert_eq!(latencies.len(), orders.len(), "every order arrived once");
    let promos: Vec<Instant> = log
        .arrivals
        .iter()
        .filter(|arrival| order_at(arrival).is_none())
        .map(|(_, _, at)| *at)
        .collect();
    assert_eq!(promos.len(), users, "every broadcast message arrived once");
    let span = promos[promos.len() - 1]
        .duration_since(promos[0])
        .as_secs_f64();
    let broadcast_rate = (promos.len() - 1) as f64 / span;
    let orders_rate = orders.len() as f64 / span;
    let (limit, pace) = (limit as f64, limit as f64 / 1.05);
    println!(
        "{label}: {users}-user broadcast, {} one-user orders (every 0.5 s), {span:.1} s",
        orders.len()
    );
    let mut ms = |q: f64| quantile(&mut latencies, q).as_secs_f64() * 1000.0;
    let (p50, p99, max) = (ms(0.5), ms(0.99), ms(1.0));
    println!(
        "{label}: order latency accept -> arrival: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms (goal p99 < 1000 ms embedded)"
    );
    println!(
        "{label}: broadcast {broadcast_rate:.2} msg/s: ratio {:.3} of the limit less the orders ({:.2}/s; goal >= 0.95), {:.3} of Herald's pace less the orders ({:.2}/s)",
        broadcast_rate / (limit - orders_rate),
        limit - orders_rate,
        broadcast_rate / (pace - orders_rate),
        pace - orders_rate
    );
    println!("{label}: 429 answers: {} (goal 0)", log.rate_limited);
}
