//! The `engine` channel: `screen` actions, as a signed webhook to the bot engine, at most
//! `engine_concurrency` in flight per bot for bulk requests, so that a slow engine holds
//! up only its own bot, and a further quarter of that (at least one) for transactional
//! requests, so that a broadcast's screens never hold the slots an order confirmation
//! needs.
//!
//! Herald POSTs JSON `{bot_id, screen_id, user: {platform, platform_id, bm_id},
//! last_request, request_id, event_id}` to the bot's `url` (alias `screen_url`) with two
//! headers:
//!
//! - `X-Herald-Timestamp`: Unix seconds when it was signed;
//! - `X-Herald-Signature`: `sha256=` + hex HMAC-SHA256, keyed with the bot's signing
//!   secret, of `"{timestamp}.{body}"`.
//!
//! An engine recomputes the HMAC over the raw body, compares in constant time, and
//! refuses timestamps older than a few minutes (replays) — [`verify`] does exactly that.
//! 2xx is delivered; 408, 429, 5xx, connection errors and timeouts retry (honouring
//! `Retry-After`); a 3xx is a permanent failure (`redirected`: redirects are never
//! followed, so the signed body goes only to the configured URL); any other 4xx is
//! permanent (`rejected`).

use super::{Channel, Content};
use crate::DeliveryConfig;
use async_trait::async_trait;
use herald_core::channels::{ChannelSpec, FieldKind, FieldSpec, Serves};
use herald_core::domain::{Bot, DeliveryResult};
use herald_core::ids::BotId;
use herald_core::lane::Lane;
use herald_core::pace::Pacer;
use herald_core::ports::Delivery;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

pub const SPEC: ChannelSpec = ChannelSpec {
    name: "engine",
    title: "Bot engine",
    serves: Serves::Screens,
    platforms: &[],
    fields: &[
        FieldSpec {
            name: "url",
            kind: FieldKind::HttpUrl,
            about: "The bot engine's endpoint for `screen` actions",
            needs: Some(("signing_secret", "webhooks are never sent unsigned")),
        },
        FieldSpec {
            name: "signing_secret",
            kind: FieldKind::Secret,
            about: "Key of the HMAC-SHA256 signature on screen webhooks",
            needs: None,
        },
    ],
    pace: None,
    limits: None,
};

pub const TIMESTAMP_HEADER: &str = "x-herald-timestamp";
pub const SIGNATURE_HEADER: &str = "x-herald-signature";

/// The signature header's value for `body` signed at `timestamp`.
pub fn sign(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// What an engine does with a webhook: check the signature in constant time and refuse
/// one signed more than `tolerance` away from `now` (Unix seconds).
pub fn verify(
    secret: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
    tolerance: u64,
) -> bool {
    let Ok(at) = timestamp.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(at) > tolerance {
        return false;
    }
    let expected = sign(secret, at, body);
    subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), signature.as_bytes()).into()
}

pub struct BotEngine {
    http: reqwest::Client,
    concurrency: usize,
    slots: Mutex<HashMap<(BotId, Lane), Arc<Semaphore>>>,
}

#[async_trait]
impl Channel for BotEngine {
    fn spec(&self) -> &'static ChannelSpec {
        &SPEC
    }

    async fn send(&self, bot: &Bot, delivery: &Delivery<'_>, content: Content<'_>) -> DeliveryResult {
        let connection = |field| bot.connections.get(SPEC.name, field);
        let (Some(url), Some(secret), Content::Screen(screen_id)) =
            (connection("url"), connection("signing_secret"), content)
        else {
            return super::misrouted(&SPEC);
        };
        let request = delivery.request;
        let body = json!({
            "bot_id": bot.id,
            "screen_id": screen_id,
            "user": {
                "platform": delivery.user.platform,
                "platform_id": delivery.user.platform_id,
                "bm_id": delivery.user.bm_id,
            },
            "last_request": delivery.data,
            "request_id": request.id,
            "event_id": request.event_id,
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let slot = self.slot(&bot.id, delivery.request.lane);
        let _permit = tokio::select! {
            biased;
            _ = delivery.cutoff.reached() => return DeliveryResult::NotStarted,
            permit = slot.acquire() => permit,
        };
        self.show(url, secret, body).await
    }
}

impl BotEngine {
    pub fn new(http: reqwest::Client, config: &DeliveryConfig, _pacer: &Arc<Pacer>) -> BotEngine {
        BotEngine {
            http,
            concurrency: config.engine_concurrency.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The webhooks `lane` may have in flight at once for one bot.
    pub fn slots_of(&self, lane: Lane) -> usize {
        match lane {
            Lane::Bulk => self.concurrency,
            Lane::Transactional => (self.concurrency / 4).max(1),
        }
    }

    fn slot(&self, bot_id: &BotId, lane: Lane) -> Arc<Semaphore> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((bot_id.clone(), lane))
            .or_insert_with(|| Arc::new(Semaphore::new(self.slots_of(lane))))
            .clone()
    }

    /// POST `body` to `url`, signed with `secret`.
    pub async fn show(&self, url: &str, secret: &str, body: Vec<u8>) -> DeliveryResult {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, sign(secret, now, &body));
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                // Without the URL: its query string may carry a credential of the engine's,
                // and this message is shown in the status document.
                return DeliveryResult::Retry {
                    reason: what.into(),
                    message: format!("bot engine {what}: {}", e.without_url()),
                    after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let wait = crate::retry_after(response.headers());
        classify(status, wait)
    }
}

/// What an engine's answer means for the delivery: its status and its `Retry-After`.
pub fn classify(status: u16, wait: Option<Duration>) -> DeliveryResult {
    match status {
        200..=299 => DeliveryResult::Delivered { detail: None },
        // Redirects are not followed: the signed body goes only where the bot's owner
        // configured it.
        300..=399 => DeliveryResult::Permanent {
            reason: "redirected".into(),
            message: format!(
                "bot engine answered {status}; redirects are not followed, set the final URL as screen_url"
            ),
        },
        408 | 429 | 500..=599 => DeliveryResult::Retry {
            reason: if status == 429 {
                "rate_limited"
            } else {
                "unavailable"
            }
            .into(),
            message: format!("bot engine answered {status}"),
            after: wait,
        },
        _ => DeliveryResult::Permanent {
            reason: "rejected".into(),
            message: format!("bot engine answered {status}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let body = br#"{"screen_id":"welcome"}"#;
        let signature = sign("s3cret", 1_000, body);
        assert!(verify("s3cret", "1000", &signature, body, 1_100, 300));
        assert!(
            !verify("other", "1000", &signature, body, 1_100, 300),
            "wrong secret"
        );
        assert!(
            !verify("s3cret", "1000", &signature, b"{}", 1_100, 300),
            "other body"
        );
        assert!(
            !verify("s3cret", "1001", &signature, body, 1_100, 300),
            "other timestamp"
        );
        assert!(
            !verify("s3cret", "1000", &signature, body, 2_000, 300),
            "a replay, too old"
        );
    }

    #[test]
    fn answers_are_classified() {
        assert!(matches!(
            classify(204, None),
            DeliveryResult::Delivered { .. }
        ));
        for status in [408, 429, 500, 503] {
            assert!(
                matches!(classify(status, None), DeliveryResult::Retry { .. }),
                "{status}"
            );
        }
        let wait = Some(Duration::from_secs(3));
        assert!(
            matches!(classify(429, wait), DeliveryResult::Retry { after, .. } if after == wait)
        );
        for status in [400, 401, 404, 410] {
            assert!(
                matches!(classify(status, None), DeliveryResult::Permanent { .. }),
                "{status}"
            );
        }
    }
}
