//! Fake Telegram Bot API and bot engine, on free local ports, that behave like the real
//! ones where Herald depends on it: Telegram enforces a per-token rate (sliding second)
//! and, on demand, one message per chat per interval, both with 429 and `retry_after`;
//! answers 403 blocked / 400 chat not found for chosen chats, fails with 502 or answers
//! slowly on demand, and records every accepted message in arrival order; the engine checks HMAC signatures and
//! timestamps. [`fault_proxy`] takes an emulator away from the SDK clients on demand;
//! [`conflict_relay`] makes DynamoDB Local's transactions lose conflicts as DynamoDB's do.

pub mod conflict_relay;
pub mod deliverers;
pub mod fault_proxy;
pub mod lanes_report;
pub use conflict_relay::ConflictRelay;
pub use fault_proxy::{Fault, FaultProxy};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the fake Telegram does for particular chats.
#[derive(Default)]
pub struct TelegramScript {
    /// Messages per second per token before 429.
    pub limit_per_second: usize,
    pub blocked: Vec<String>,
    pub missing: Vec<String>,
    /// chat id → number of 502 answers before it succeeds.
    pub flaky: HashMap<String, u32>,
    pub delay: Duration,
    /// The least time between two accepted messages to one chat (zero: no limit), as
    /// Telegram's about one message per second per chat.
    pub chat_gap: Duration,
    /// chat id → `retry_after` seconds of a 429 its first call gets.
    pub limited_once: HashMap<String, u64>,
    /// chat id → the supergroup it became: messages to it are refused with 400 and
    /// `parameters.migrate_to_chat_id`, as Telegram answers for an upgraded group.
    pub migrated: HashMap<String, i64>,
    /// Messages per second per token for paid broadcasts (`allow_paid_broadcast: true`),
    /// counted apart from the free ones; 0: no limit.
    pub paid_limit_per_second: usize,
}

#[derive(Default)]
pub struct TelegramLog {
    /// chat id → texts received and accepted.
    pub delivered: HashMap<String, Vec<String>>,
    /// chat id → calls of any outcome.
    pub calls: HashMap<String, u32>,
    pub rate_limited: u32,
    /// When each accepted message arrived, in order.
    pub accepted_at: Vec<Instant>,
    /// Every accepted message in arrival order: (chat, text, when).
    pub arrivals: Vec<(String, String, Instant)>,
    /// Every 429 answered: (chat, when).
    pub limited: Vec<(String, Instant)>,
    /// Accepted messages that were paid broadcasts.
    pub paid: u32,
    /// Every accepted `sendMessage` body, in arrival order.
    pub bodies: Vec<Value>,
    sent: HashMap<String, VecDeque<Instant>>,
    last_to_chat: HashMap<String, Instant>,
}

impl TelegramLog {
    /// Chats that received more than one accepted message.
    pub fn messaged_more_than_once(&self) -> usize {
        self.delivered
            .values()
            .filter(|texts| texts.len() > 1)
            .count()
    }
}

pub struct FakeTelegram {
    pub url: String,
    pub log: Arc<Mutex<TelegramLog>>,
}

type TelegramState = (Arc<TelegramScript>, Arc<Mutex<TelegramLog>>);

impl FakeTelegram {
    pub async fn start(script: TelegramScript) -> FakeTelegram {
        let log = Arc::new(Mutex::new(TelegramLog::default()));
        let state: TelegramState = (Arc::new(script), log.clone());
        let app = axum::Router::new().fallback(telegram).with_state(state);
        FakeTelegram {
            url: serve(app).await,
            log,
        }
    }

    /// A fake that only enforces `limit_per_second` messages per second per token.
    pub async fn with_limit(limit_per_second: usize) -> FakeTelegram {
        FakeTelegram::start(TelegramScript {
            limit_per_second,
            ..TelegramScript::default()
        })
        .await
    }
}

async fn telegram(State((script, log)): State<TelegramState>, uri: Uri, body: Bytes) -> Response {
    // /bot{token}/sendMessage
    let path = uri.path().trim_start_matches('/');
    let Some((token, "sendMessage")) = path.strip_prefix("bot").and_then(|p| p.split_once('/'))
    else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"ok": false, "description": "Not Found"})),
        )
            .into_response();
    };
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let chat = match &message["chat_id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if !script.delay.is_zero() {
        tokio::time::sleep(script.delay).await;
    }
    let mut log = log.lock().unwrap();
    let log = &mut *log;
    *log.calls.entry(chat.clone()).or_default() += 1;
    let now = Instant::now();
    let paid = message["allow_paid_broadcast"] == json!(true);
    if let Some(wait) = rate_limit(&script, log, token, &chat, now, paid) {
        log.rate_limited += 1;
        log.limited.push((chat.clone(), now));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"ok": false, "error_code": 429,
                        "description": format!("Too Many Requests: retry after {wait}"),
                        "parameters": {"retry_after": wait}})),
        )
            .into_response();
    }
    if let Some(moved_to) = script.migrated.get(&chat) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": moved_to}})),
        )
            .into_response();
    }
    if script.blocked.contains(&chat) {
        return (StatusCode::FORBIDDEN, Json(json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}))).into_response();
    }
    if script.missing.contains(&chat) {
        return (StatusCode::BAD_REQUEST, Json(json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"}))).into_response();
    }
    if let Err(why) = check_markup(&message) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"ok": false, "error_code": 400,
                        "description": format!("Bad Request: can't parse entities: {why}")})),
        )
            .into_response();
    }
    let calls = log.calls[&chat];
    if script.flaky.get(&chat).is_some_and(|fails| calls <= *fails) {
        return (
            StatusCode::BAD_GATEWAY,
            Json(json!({"ok": false, "error_code": 502, "description": "Bad Gateway"})),
        )
            .into_response();
    }
    let text = message["text"].as_str().unwrap_or_default().to_string();
    log.delivered
        .entry(chat.clone())
        .or_default()
        .push(text.clone());
    log.accepted_at.push(now);
    log.last_to_chat.insert(chat.clone(), now);
    log.paid += u32::from(paid);
    log.bodies.push(message);
    log.arrivals.push((chat, text, now));
    Json(json!({"ok": true, "result": {"message_id": calls}})).into_response()
}

/// Whether a message's text reads in its `parse_mode` as the Bot API reads it: HTML with
/// only Telegram's tags, balanced, and every other `<`, `>`, `&` an entity; MarkdownV2
/// with every reserved character escaped outside its marks, and the marks balanced.
fn check_markup(message: &Value) -> Result<(), String> {
    let text = message["text"].as_str().unwrap_or_default();
    match message["parse_mode"].as_str() {
        None => Ok(()),
        Some("HTML") => check_html(text),
        Some("MarkdownV2") => check_markdown_v2(text),
        Some(other) => Err(format!("unsupported parse_mode {other}")),
    }
}

const HTML_TAGS: [&str; 16] = [
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
];

fn check_html(text: &str) -> Result<(), String> {
    let mut open: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['<', '>', '&']) {
        let (c, after) = (rest.as_bytes()[at], &rest[at + 1..]);
        match c {
            b'>' => return Err(format!("Unexpected end tag at byte offset {at}")),
            b'&' => {
                let end = after.find(';').ok_or("Unclosed entity")?;
                let name = &after[..end];
                let known = matches!(name, "lt" | "gt" | "amp" | "quot")
                    || name
                        .strip_prefix("#x")
                        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
                    || name
                        .strip_prefix('#')
                        .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
                if !known {
                    return Err(format!("Unsupported entity \"&{name};\""));
                }
                rest = &after[end + 1..];
            }
            _ => {
                let end = after.find('>').ok_or("Unclosed start tag")?;
                let tag = &after[..end];
                let (closing, tag) = match tag.strip_prefix('/') {
                    Some(name) => (true, name),
                    None => (false, tag),
                };
                let name = tag.split_whitespace().next().unwrap_or_default();
                if !HTML_TAGS.contains(&name) {
                    return Err(format!("Unsupported start tag \"{name}\""));
                }
                if closing {
                    if open.pop().as_deref() != Some(name) {
                        return Err(format!("Unmatched end tag \"{name}\""));
                    }
                } else {
                    open.push(name.to_string());
                }
                rest = &after[end + 1..];
            }
        }
    }
    match open.pop() {
        Some(tag) => Err(format!(
            "Can't find end tag corresponding to start tag \"{tag}\""
        )),
        None => Ok(()),
    }
}

fn check_markdown_v2(text: &str) -> Result<(), String> {
    let mut marks: Vec<char> = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line_start = true;
    let mut in_link_url = false;
    while let Some(c) = chars.next() {
        if c == '\\' {
            chars.next();
            line_start = false;
            continue;
        }
        if in_link_url {
            in_link_url = c != ')';
            continue;
        }
        match c {
            '*' | '_' | '~' | '`' => {
                if marks.last() == Some(&c) {
                    marks.pop();
                } else {
                    marks.push(c);
                }
            }
            '[' => marks.push('['),
            ']' if marks.last() == Some(&'[') && chars.peek() == Some(&'(') => {
                marks.pop();
                chars.next();
                in_link_url = true;
            }
            '>' if line_start => {}
            ']' | '(' | ')' | '>' | '#' | '+' | '-' | '=' | '|' | '{' | '}' | '.' | '!' => {
                return Err(format!(
                    "Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ))
            }
            _ => {}
        }
        line_start = c == '\n';
    }
    match marks.pop() {
        Some(mark) => Err(format!(
            "Can't find end of the entity starting with '{mark}'"
        )),
        None => Ok(()),
    }
}

/// The `retry_after` of a 429 for this call, if it gets one: a chat's scripted first-call
/// 429, the token's sliding second full (its paid one for a paid broadcast), or the chat's
/// last message too recent. A call let through is counted in the token's second.
fn rate_limit(
    script: &TelegramScript,
    log: &mut TelegramLog,
    token: &str,
    chat: &str,
    now: Instant,
    paid: bool,
) -> Option<u64> {
    if log.calls[chat] == 1 {
        if let Some(wait) = script.limited_once.get(chat) {
            return Some(*wait);
        }
    }
    let too_soon_for_chat = !script.chat_gap.is_zero()
        && log
            .last_to_chat
            .get(chat)
            .is_some_and(|at| now.duration_since(*at) < script.chat_gap);
    let (counter, limit) = match paid {
        true => (format!("{token}/paid"), script.paid_limit_per_second),
        false => (token.to_string(), script.limit_per_second),
    };
    let window = log.sent.entry(counter).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        window.pop_front();
    }
    let token_full = limit > 0 && window.len() >= limit;
    if token_full || too_soon_for_chat {
        return Some(1);
    }
    window.push_back(now);
    None
}

/// A bot engine that accepts only correctly signed, fresh webhooks.
pub struct FakeEngine {
    pub url: String,
    pub log: Arc<Mutex<EngineLog>>,
}

#[derive(Default)]
pub struct EngineLog {
    pub accepted: Vec<Value>,
    pub bad_signatures: u32,
}

type EngineState = (String, Duration, Arc<Mutex<EngineLog>>);

impl FakeEngine {
    pub async fn start(secret: &str) -> FakeEngine {
        FakeEngine::slow(secret, Duration::ZERO).await
    }

    /// An engine that takes `delay` to answer each webhook.
    pub async fn slow(secret: &str, delay: Duration) -> FakeEngine {
        let log = Arc::new(Mutex::new(EngineLog::default()));
        let state: EngineState = (secret.to_string(), delay, log.clone());
        let app = axum::Router::new()
            .route("/screen", axum::routing::post(engine))
            .with_state(state);
        FakeEngine {
            url: format!("{}/screen", serve(app).await),
            log,
        }
    }
}

async fn engine(
    State((secret, delay, log)): State<EngineState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let valid = herald_delivery::channels::engine::verify(
        &secret,
        &header(herald_delivery::channels::engine::TIMESTAMP_HEADER),
        &header(herald_delivery::channels::engine::SIGNATURE_HEADER),
        &body,
        now,
        300,
    );
    let mut log = log.lock().unwrap();
    if !valid {
        log.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    log.accepted
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::NO_CONTENT
}

/// Serve `app` on a free loopback port in the background; its base URL.
/// Serve `app` on a free loopback port, on a thread and runtime of its own: like a real
/// API in another process, the fake sees a request when it arrives, however busy the
/// test's own runtime is (on a shared runtime, a stall there bunched the arrival times
/// the fake's rate limit counts).
async fn serve(app: axum::Router) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap()
        });
    });
    format!("http://{address}")
}
