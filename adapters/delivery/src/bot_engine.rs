//! `screen` actions: a signed webhook to the bot engine.
//!
//! Herald POSTs JSON `{bot_id, screen_id, user: {platform, platform_id, bm_id},
//! last_request, request_id, event_id}` to the bot's `screen_url` with two headers:
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

use herald_core::domain::DeliveryResult;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

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

#[derive(Clone)]
pub struct BotEngine {
    http: reqwest::Client,
}

impl BotEngine {
    pub fn new(http: reqwest::Client) -> BotEngine {
        BotEngine { http }
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
