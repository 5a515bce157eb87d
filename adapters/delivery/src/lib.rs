//! Herald's deliverers: what runs an event's action for one user.
//!
//! [`dispatch::Dispatcher`] is the [`Deliverer`] both runtimes wire: it looks the bot's
//! connections up and sends a `message` through [`telegram`] (Telegram Bot API) and a
//! `screen` through [`bot_engine`] (a signed webhook), falling back to the core's `log`
//! deliverer for a bot with no connection for it. Answers are classified into delivered,
//! retry (with the platform's wait when it gives one) and permanent failures with a reason.
//!
//! [`Deliverer`]: herald_core::ports::Deliverer

pub mod bot_engine;
pub mod dispatch;
pub mod telegram;

use std::time::Duration;

/// How deliveries are made; read once by an entrypoint.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Base URL of the Telegram Bot API (tests point it at a local server).
    pub telegram_api: String,
    /// Messages per second per bot, kept evenly spaced (Telegram allows about 30).
    pub telegram_rate: u32,
    /// Screen webhooks in flight at once per bot.
    pub engine_concurrency: usize,
    /// Timeout of one HTTP call.
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            telegram_api: "https://api.telegram.org".into(),
            telegram_rate: 30,
            engine_concurrency: 8,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The HTTP client every delivery goes through: `timeout` on the whole call and on
/// connecting, and no redirects (a 3xx is an answer, never followed).
pub fn http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Seconds from a `Retry-After` header (delta-seconds form).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.as_bytes())
}

/// A `Retry-After` value in its delta-seconds form (the HTTP-date form reads as none).
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    std::str::from_utf8(value)
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}
