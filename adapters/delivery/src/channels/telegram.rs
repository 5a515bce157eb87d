//! The `telegram` channel: `message` actions to `tg` users through the Telegram Bot API
//! (`sendMessage`), with the bot's `token`. Every send waits for its turn on the bot's
//! schedule in the process's [`Pacer`]: at most the bot's rate with a 5% margin,
//! transactional requests first, and one message per [`CHAT_GAP`] to one chat. The rate is
//! the bot's `rate` setting, else [`PAID_RATE`] with `paid_broadcast` on, else
//! `telegram_rate`; with `paid_broadcast` on, every message carries
//! `allow_paid_broadcast: true` (Telegram then lifts its broadcast limit, for a fee). A message still waiting for its turn at the job's cutoff is not sent
//! (`NotStarted`): its user goes on in a new job.
//!
//! Answers are classified as Telegram documents them: `ok: true` is delivered; 429 pauses
//! the bot's whole schedule for `parameters.retry_after` and retries the user; 5xx, connection errors and timeouts retry with
//! backoff; 403 "bot was blocked by the user", 400 "chat not found" and "user is
//! deactivated" (400 or 403) are permanent (reasons `blocked`, `chat_not_found`, `deactivated`), as is
//! any other 4xx (`rejected`). "bot can't initiate conversation with a user" (403) is
//! `not_started`, "bot was kicked" (403) `kicked`, "can't parse entities" (400) `rejected`
//! with Telegram's reason. The token is part of the URL and never logged.
//!
//! A group that became a supergroup (400 with `parameters.migrate_to_chat_id`) is sent the
//! message at its new chat at once; the delivered outcome's detail names that chat
//! ([`MIGRATED_CHAT_ID`]), which the processor remembers on the user, so later messages go
//! there first ([`herald_core::domain::UserState::chat_id`]).
//!
//! A message's markup goes as `parse_mode` (`HTML`, `MarkdownV2`), its buttons as an
//! inline keyboard of URL buttons (one per row), its link preview options as
//! `link_preview_options`. `delivered` means the Bot API accepted the message (`ok: true`).

use super::{Channel, Content};
use crate::DeliveryConfig;
use async_trait::async_trait;
use herald_core::channels::{ChannelSpec, FieldKind, FieldSpec, PaceRule, Serves};
use herald_core::domain::{Bot, DeliveryResult, BLOCKED, MIGRATED_CHAT_ID};
use herald_core::message::{Markup, MessageLimits, Rendered, MAX_BUTTONS, MAX_BUTTON_TEXT_CHARS};
use herald_core::pace::{Pace, PaceKey, Pacer};
use herald_core::ports::Delivery;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const SPEC: ChannelSpec = ChannelSpec {
    name: "telegram",
    title: "Telegram",
    serves: Serves::Messages,
    platforms: &["tg"],
    fields: &[
        FieldSpec {
            name: "token",
            kind: FieldKind::Secret,
            about: "Telegram Bot API token (for `message` actions to `tg` users)",
            needs: None,
        },
        FieldSpec {
            name: "rate",
            kind: FieldKind::Number {
                min: 1,
                max: PAID_RATE,
            },
            about: "Messages per second for this bot (default: the process's rate, 30; over 30 needs paid_broadcast)",
            needs: None,
        },
        FieldSpec {
            name: "paid_broadcast",
            kind: FieldKind::Switch,
            about: "Send with allow_paid_broadcast (Telegram paid broadcasts: up to 1000/s, for a fee)",
            needs: None,
        },
    ],
    pace: Some(PaceRule {
        rate_field: "rate",
        boost: Some(("paid_broadcast", PAID_RATE)),
    }),
    limits: Some(MessageLimits {
        renders: &[Markup::Html, Markup::MarkdownV2],
        // 1-4096 characters after entities parsing (the Bot API's sendMessage).
        text_chars: 4096,
        // Telegram takes up to 100 buttons; a message here carries at most MAX_BUTTONS.
        buttons: MAX_BUTTONS,
        button_text_chars: MAX_BUTTON_TEXT_CHARS,
    }),
};

/// The most messages per second Telegram takes from one bot with paid broadcasts.
pub const PAID_RATE: u32 = 1000;

/// The Bot API's default address.
pub const API: &str = "https://api.telegram.org";

/// The least time between two messages to one chat: Telegram allows about one a second.
pub const CHAT_GAP: Duration = Duration::from_secs(1);

/// The reason of a 429 answer.
const RATE_LIMITED: &str = "rate_limited";

pub struct Telegram {
    http: reqwest::Client,
    api: String,
    pacer: Arc<Pacer>,
    per_second: u32,
}

#[derive(Deserialize, Default)]
struct Answer {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Deserialize, Default)]
struct Parameters {
    retry_after: Option<u64>,
    migrate_to_chat_id: Option<i64>,
}

/// The reason of a 400 "group chat was upgraded to a supergroup chat" (when the message
/// cannot be sent at the new chat either, the answer there is the user's outcome).
const MIGRATED: &str = "migrated";

#[async_trait]
impl Channel for Telegram {
    fn spec(&self) -> &'static ChannelSpec {
        &SPEC
    }

    async fn send(&self, bot: &Bot, delivery: &Delivery<'_>, content: Content<'_>) -> DeliveryResult {
        let (Some(token), Content::Message(message)) =
            (bot.connections.get(SPEC.name, "token"), content)
        else {
            return super::misrouted(&SPEC);
        };
        let key = PaceKey {
            bot: bot.id.clone(),
            channel: SPEC.name,
        };
        let paid = bot.connections.get(SPEC.name, "paid_broadcast") == Some("true");
        let pace = Pace {
            per_second: self.rate_of(bot),
            chat_gap: CHAT_GAP,
        };
        if let Some(unsent) = super::take_turn(&self.pacer, &key, pace, delivery).await {
            return unsent;
        }
        let chat = delivery.user.chat_id();
        let (mut result, moved_to) = self.send_message(token, chat, message, paid).await;
        if let Some(moved_to) = moved_to {
            // The group became a supergroup: send there, and say so for the processor to
            // remember on the user.
            result = match self.send_message(token, &moved_to, message, paid).await.0 {
                DeliveryResult::Delivered { .. } => DeliveryResult::Delivered {
                    detail: Some(json!({ MIGRATED_CHAT_ID: moved_to })),
                },
                other => other,
            };
        }
        if let DeliveryResult::Retry {
            reason,
            after: Some(wait),
            ..
        } = &result
        {
            // The limit is the token's: every send of the bot waits, not just this user.
            if reason == RATE_LIMITED {
                self.pacer.pause(&key, *wait);
            }
        }
        result
    }
}

impl Telegram {
    pub fn new(http: reqwest::Client, config: &DeliveryConfig, pacer: &Arc<Pacer>) -> Telegram {
        Telegram {
            http,
            api: config.api(SPEC.name, API).trim_end_matches('/').to_string(),
            pacer: pacer.clone(),
            per_second: config.telegram_rate.max(1),
        }
    }

    /// Messages per second for `bot`: its `rate` setting, else the paid or the default
    /// rate ([`SPEC`]'s pace rule; where several processes send for it, they share one
    /// budget: [`Pacer`]).
    fn rate_of(&self, bot: &Bot) -> u32 {
        SPEC.rate_of(&bot.connections, self.per_second)
            .unwrap_or(self.per_second)
    }

    /// Send `message` to `chat_id` as the bot whose token is `token` (as a paid broadcast
    /// when `paid`): the outcome, and the chat the group moved to if Telegram said so.
    async fn send_message(
        &self,
        token: &str,
        chat_id: &str,
        message: &Rendered,
        paid: bool,
    ) -> (DeliveryResult, Option<String>) {
        let url = format!("{}/bot{token}/sendMessage", self.api);
        let body = message_body(chat_id, message, paid);
        let response = match self.http.post(url).json(&body).send().await
        {
            Ok(response) => response,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timeout"
                } else {
                    "unreachable"
                };
                // Without the URL: it holds the token.
                let failed = retry(what, format!("Telegram {what}: {}", e.without_url()), None);
                return (failed, None);
            }
        };
        let status = response.status().as_u16();
        let header_wait = crate::retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let answer: Answer = serde_json::from_slice(&body).unwrap_or_default();
        let moved_to = answer
            .parameters
            .as_ref()
            .and_then(|p| p.migrate_to_chat_id)
            .map(|chat| chat.to_string());
        (classify(status, answer, header_wait), moved_to)
    }
}

/// The `sendMessage` body of `message` to `chat_id`: its `parse_mode`, its buttons as an
/// inline keyboard of one button per row, its link preview options.
pub fn message_body(chat_id: &str, message: &Rendered, paid: bool) -> serde_json::Value {
    let mut body = json!({"chat_id": chat_id, "text": message.text});
    if let Some(markup) = message.markup {
        body["parse_mode"] = markup.parse_mode().into();
    }
    if !message.buttons.is_empty() {
        let rows: Vec<_> = message
            .buttons
            .iter()
            .map(|b| json!([{"text": b.text, "url": b.url}]))
            .collect();
        body["reply_markup"] = json!({ "inline_keyboard": rows });
    }
    if let Some(preview) = message.telegram.as_ref().and_then(|t| t.link_preview.as_ref()) {
        body["link_preview_options"] = json!(preview);
    }
    if paid {
        body["allow_paid_broadcast"] = true.into();
    }
    body
}

/// What an answer of the Bot API means for the delivery: its status, its JSON body
/// (anything else reads as an empty answer) and its `Retry-After`.
pub fn classify_answer(status: u16, body: &[u8], header_wait: Option<Duration>) -> DeliveryResult {
    let answer: Answer = serde_json::from_slice(body).unwrap_or_default();
    classify(status, answer, header_wait)
}

fn classify(status: u16, answer: Answer, header_wait: Option<Duration>) -> DeliveryResult {
    let description = answer.description.to_lowercase();
    if let Some(moved_to) = answer.parameters.as_ref().and_then(|p| p.migrate_to_chat_id) {
        return permanent(
            MIGRATED,
            format!("Telegram: {}; moved to {moved_to}", answer.description),
        );
    }
    match status {
        200..=299 if answer.ok => DeliveryResult::Delivered { detail: None },
        429 => {
            let wait = answer
                .parameters
                .and_then(|p| p.retry_after)
                .map(Duration::from_secs)
                .or(header_wait)
                .unwrap_or(Duration::from_secs(1));
            retry(
                RATE_LIMITED,
                format!("Telegram 429: {}", answer.description),
                Some(wait),
            )
        }
        400 | 403 if description.contains("deactivated") => {
            permanent("deactivated", answer.description)
        }
        403 if description.contains("can't initiate conversation") => {
            permanent("not_started", answer.description)
        }
        403 if description.contains("kicked") => permanent("kicked", answer.description),
        400 if description.contains("can't parse entities") => permanent(
            "rejected",
            format!("Telegram could not read the message's markup: {}", answer.description),
        ),
        403 if description.contains("blocked") => permanent(BLOCKED, answer.description),
        400 if description.contains("chat not found") => {
            permanent("chat_not_found", answer.description)
        }
        500..=599 => retry(
            "unavailable",
            format!("Telegram {status}: {}", answer.description),
            header_wait,
        ),
        _ => permanent(
            "rejected",
            format!("Telegram {status}: {}", answer.description),
        ),
    }
}

fn retry(reason: &str, message: String, after: Option<Duration>) -> DeliveryResult {
    DeliveryResult::Retry {
        reason: reason.into(),
        message,
        after,
    }
}

fn permanent(reason: &str, message: String) -> DeliveryResult {
    DeliveryResult::Permanent {
        reason: reason.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(ok: bool, description: &str, retry_after: Option<u64>) -> Answer {
        Answer {
            ok,
            description: description.into(),
            parameters: retry_after.map(|r| Parameters {
                retry_after: Some(r),
                migrate_to_chat_id: None,
            }),
        }
    }

    fn reason(result: &DeliveryResult) -> (&'static str, &str) {
        match result {
            DeliveryResult::Delivered { .. } => ("delivered", ""),
            DeliveryResult::Retry { reason, .. } => ("retry", reason),
            DeliveryResult::Permanent { reason, .. } => ("permanent", reason),
            DeliveryResult::NotStarted => ("not started", ""),
            DeliveryResult::Withheld => ("withheld", ""),
        }
    }

    #[test]
    fn answers_are_classified_as_telegram_documents_them() {
        assert_eq!(
            reason(&classify(200, answer(true, "", None), None)),
            ("delivered", "")
        );
        let limited = classify(
            429,
            answer(false, "Too Many Requests: retry after 7", Some(7)),
            None,
        );
        assert_eq!(reason(&limited), ("retry", "rate_limited"));
        assert!(
            matches!(limited, DeliveryResult::Retry { after: Some(d), .. } if d == Duration::from_secs(7))
        );
        let blocked = classify(
            403,
            answer(false, "Forbidden: bot was blocked by the user", None),
            None,
        );
        assert_eq!(reason(&blocked), ("permanent", "blocked"));
        let missing = classify(
            400,
            answer(false, "Bad Request: chat not found", None),
            None,
        );
        assert_eq!(reason(&missing), ("permanent", "chat_not_found"));
        let gone = classify(
            403,
            answer(false, "Forbidden: user is deactivated", None),
            None,
        );
        assert_eq!(reason(&gone), ("permanent", "deactivated"));
        let gone = classify(
            400,
            answer(false, "Bad Request: user is deactivated", None),
            None,
        );
        assert_eq!(reason(&gone), ("permanent", "deactivated"));
        assert_eq!(
            reason(&classify(502, Answer::default(), None)),
            ("retry", "unavailable")
        );
        assert_eq!(
            reason(&classify(401, answer(false, "Unauthorized", None), None)),
            ("permanent", "rejected")
        );
        let never_started = classify(
            403,
            answer(false, "Forbidden: bot can't initiate conversation with a user", None),
            None,
        );
        assert_eq!(reason(&never_started), ("permanent", "not_started"));
        let kicked = classify(
            403,
            answer(false, "Forbidden: bot was kicked from the supergroup chat", None),
            None,
        );
        assert_eq!(reason(&kicked), ("permanent", "kicked"));
        let markup = classify(
            400,
            answer(
                false,
                "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0",
                None,
            ),
            None,
        );
        assert_eq!(reason(&markup), ("permanent", "rejected"));
        assert!(
            matches!(&markup, DeliveryResult::Permanent { message, .. } if message.contains("Unsupported start tag")),
            "the reason is kept"
        );
    }
}
