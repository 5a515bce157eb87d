//! Herald's deliverers: what runs an event's action for one user.
//!
//! [`dispatch::Dispatcher`] is the [`Deliverer`] both runtimes wire: it looks the bot's
//! connections up and routes each action to one of the [`channels`] — a `message` to the
//! channel that reaches the user's platform (Telegram Bot API), a `screen` to the bot
//! engine (a signed webhook) — falling back to the core's `log` deliverer for a bot with
//! no connection at all. Answers are classified into delivered, retry (with the platform's
//! wait when it gives one) and permanent failures with a reason.
//!
//! [`Deliverer`]: herald_core::ports::Deliverer
//!
//! # Layout
//!
//! - [`channels`]: one module per channel (its spec and sender) and the `register!` line
//!   that lists them ([`CHANNELS`]);
//! - [`dispatch`]: which channel an action goes to;
//! - this file: [`DeliveryConfig`] and the one HTTP client every channel shares.

pub mod channels;
pub mod dispatch;

pub use channels::CHANNELS;
use std::collections::BTreeMap;
use std::time::Duration;

/// How deliveries are made; read once by an entrypoint.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Base URLs of channels' APIs by channel name, where not their own (tests point them
    /// at a local server): `{"telegram": "http://127.0.0.1:…"}`.
    pub apis: BTreeMap<String, String>,
    /// Messages per second per bot when the bot sets no rate of its own (Telegram allows
    /// about 30).
    pub telegram_rate: u32,
    /// Screen webhooks in flight at once per bot.
    pub engine_concurrency: usize,
    /// Timeout of one HTTP call.
    pub timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            apis: BTreeMap::new(),
            telegram_rate: 30,
            engine_concurrency: 8,
            timeout: Duration::from_secs(10),
        }
    }
}

impl DeliveryConfig {
    /// The base URL of `channel`'s API: as configured, else `default`.
    pub fn api<'a>(&'a self, channel: &str, default: &'a str) -> &'a str {
        self.apis.get(channel).map_or(default, String::as_str)
    }

    /// This configuration with `channel`'s API at `url`.
    pub fn with_api(mut self, channel: &str, url: impl Into<String>) -> DeliveryConfig {
        self.apis.insert(channel.into(), url.into());
        self
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
