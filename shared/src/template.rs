//! Message templates: Jinja syntax (minijinja), checked when an event is created and
//! rendered per user.
//!
//! A template sees `last_request` (the user's data for this request), `user.platform`,
//! `user.platform_id`, `user.bm_id` and `event.name`: `Order {{ last_request.order }} is
//! ready, {{ last_request.name }}!`. Rendering is strict: a value missing for a user is an
//! error for that user (counted, with its reason), never a silent blank. A template is
//! compiled once per process and reused for every user (see [`compiled`]).
//!
//! A message ([`Message`]) is several templates: its text (the user's platform's override,
//! if it has one), each button's text and URL. Values put into a marked-up text are
//! escaped for its markup, values put into a URL percent-encoded ([`Escape`]).

use crate::domain::{Action, DeliveryResult, Object, UserState};
use crate::message::{self, Markup, Message, Rendered, RenderedButton};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Compiled templates kept at most; past it the cache starts over.
const CACHED: usize = 256;

/// The longest template an event may carry, in characters.
pub const MAX_TEMPLATE_CHARS: usize = 16 * 1024;

/// The longest message a template may render, in bytes: above every messenger's own limit,
/// low enough that a loop over a user's data cannot take the worker's memory.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Template instructions one rendering may run: thousands of times what a message needs,
/// so a loop nested in a loop fails that user (reason `template`) within milliseconds
/// instead of holding a worker.
const FUEL: u64 = 200_000;

/// How the values a template prints are written into its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Escape {
    /// As they are (plain text).
    Plain,
    /// Escaped for a markup: they show as themselves and add no markup.
    Markup(Markup),
    /// Percent-encoded, for a URL.
    Url,
}

fn environment(escape: Escape) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    if escape != Escape::Plain {
        env.set_formatter(move |out, _state, value| {
            let text = value.to_string();
            let written = match escape {
                Escape::Markup(markup) => message::escape(markup, &text),
                Escape::Url => message::escape_url(&text),
                Escape::Plain => text,
            };
            out.write_str(&written).map_err(|_| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "message too long")
            })
        });
    }
    env
}

/// Whether `template` compiles; the error says where it does not.
pub fn check(template: &str) -> Result<(), String> {
    if crate::domain::is_blank(template) {
        return Err("the template is empty".into());
    }
    if template.chars().count() > MAX_TEMPLATE_CHARS {
        return Err(format!(
            "the template is longer than {MAX_TEMPLATE_CHARS} characters"
        ));
    }
    environment(Escape::Plain)
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// How long one user's rendering may run in a delivery. Past it the user fails (reason
/// `template`), and so does every later user of the same template without rendering: the
/// rendering goes on in its thread until its instructions run out, but nobody waits for it.
pub const RENDER_FOR: Duration = Duration::from_secs(1);

// Here rather than in `domain`, which the template engine depends on, not the reverse.
impl Action {
    /// Whether the action can run: a screen id is set, a template compiles.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Action::Screen { screen_id } if screen_id.trim().is_empty() => {
                Err("the screen id is empty".into())
            }
            Action::Screen { .. } => Ok(()),
            Action::Message(message) => check_message(message),
        }
    }
}

/// Whether every template of `message` compiles and every part is within bounds; the
/// error names the part (`template`, `buttons[1].url`, `platforms.vk.template`…).
fn check_message(message: &Message) -> Result<(), String> {
    use crate::message::{MAX_BUTTONS, MAX_BUTTON_TEXT_CHARS};
    let check = |path: &str, template: &str| check(template).map_err(|e| format!("{path}: {e}"));
    check("template", &message.template)?;
    for (platform, text) in &message.platforms {
        crate::ids::Platform::parse(platform.as_str())
            .map_err(|e| format!("platforms.{platform}: {e}"))?;
        check(&format!("platforms.{platform}.template"), &text.template)?;
    }
    if message.buttons.len() > MAX_BUTTONS {
        return Err(format!(
            "buttons: at most {MAX_BUTTONS} buttons, not {}",
            message.buttons.len()
        ));
    }
    for (i, button) in message.buttons.iter().enumerate() {
        check(&format!("buttons[{i}].text"), &button.text)?;
        if button.text.chars().count() > MAX_BUTTON_TEXT_CHARS {
            return Err(format!(
                "buttons[{i}].text: longer than {MAX_BUTTON_TEXT_CHARS} characters"
            ));
        }
        check(&format!("buttons[{i}].url"), &button.url)?;
        if !message::starts_with_http_origin(&button.url) {
            return Err(format!(
                "buttons[{i}].url: must begin with http:// or https:// and a host, written \
                     in the template (values put into it are percent-encoded)"
            ));
        }
    }
    if let Some(url) = message
        .telegram
        .as_ref()
        .and_then(|t| t.link_preview.as_ref())
        .and_then(|p| p.url.as_deref())
    {
        if !message::is_http_url(url) || url.len() > message::MAX_URL_BYTES {
            return Err(
                "telegram.link_preview.url: must be an http(s) URL of at most 2048 bytes".into(),
            );
        }
    }
    Ok(())
}

/// `template` rendered for one user, on the caller's thread with no deadline: for checks
/// and the fuzz target; deliveries go through [`for_user`].
pub fn render(
    template: &str,
    event_name: &str,
    user: &UserState,
    last_request: &Object,
) -> Result<String, String> {
    compiled(template, Escape::Plain)?.render(context(event_name, user, last_request))
}

fn context(event_name: &str, user: &UserState, last_request: &Object) -> serde_json::Value {
    json!({
        "last_request": last_request,
        "user": {"platform": user.platform, "platform_id": user.platform_id, "bm_id": user.bm_id},
        "event": {"name": event_name},
    })
}

/// `message` for `user` of a request to `event_name` whose data for them is `data`, or
/// the failure to count for them (reason `template`). Its templates render on the blocking
/// pool within [`RENDER_FOR`] together, so a template that builds huge values it never
/// prints holds no worker. A button URL that renders to no http(s) URL, or one too long,
/// fails the user (reason `rejected`).
pub async fn for_user(
    message: &Message,
    event_name: &str,
    user: &UserState,
    data: &Object,
) -> Result<Rendered, DeliveryResult> {
    let (text, markup) = message.text_for(&user.platform);
    let mut parts = vec![compiled(text, markup.map_or(Escape::Plain, Escape::Markup))];
    for button in &message.buttons {
        parts.push(compiled(&button.text, Escape::Plain));
        parts.push(compiled(&button.url, Escape::Url));
    }
    let parts = parts
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let mut rendered = render_all(parts, context(event_name, user, data))
        .await?
        .into_iter();
    let text = rendered.next().unwrap_or_default();
    let mut buttons = Vec::with_capacity(message.buttons.len());
    while let (Some(text), Some(url)) = (rendered.next(), rendered.next()) {
        if !message::is_http_url(&url) || url.len() > message::MAX_URL_BYTES {
            return Err(DeliveryResult::Permanent {
                reason: "rejected".into(),
                message: format!(
                    "a button's URL is not an http(s) URL of at most {} bytes once rendered",
                    message::MAX_URL_BYTES
                ),
            });
        }
        buttons.push(RenderedButton { text, url });
    }
    Ok(Rendered {
        text,
        markup,
        buttons,
        telegram: message.telegram.clone(),
    })
}

fn failed(message: String) -> DeliveryResult {
    DeliveryResult::Permanent {
        reason: "template".into(),
        message,
    }
}

/// Every compiled part rendered with `context`, on one blocking thread within
/// [`RENDER_FOR`]; a part that ran past it marks its template too slow.
async fn render_all(
    parts: Vec<Arc<Compiled>>,
    context: serde_json::Value,
) -> Result<Vec<String>, DeliveryResult> {
    if parts.iter().any(|c| c.too_slow.load(Ordering::Relaxed)) {
        return Err(failed(format!(
            "the template took longer than {RENDER_FOR:?} to render for an earlier user; it \
             fails every user until the event's template changes"
        )));
    }
    let (started, running) = oneshot::channel();
    let rendering = {
        let parts = parts.clone();
        tokio::task::spawn_blocking(move || {
            let _ = started.send(());
            parts
                .iter()
                .map(|part| part.render(context.clone()))
                .collect::<Result<Vec<_>, _>>()
        })
    };
    // The deadline counts from the rendering's start, not from its wait for a thread.
    let _ = running.await;
    match tokio::time::timeout(RENDER_FOR, rendering).await {
        Ok(Ok(rendered)) => rendered.map_err(failed),
        Ok(Err(_)) => Err(failed("the template's rendering failed".into())),
        Err(_) => {
            for part in &parts {
                part.too_slow.store(true, Ordering::Relaxed);
            }
            Err(failed(format!(
                "the template took longer than {RENDER_FOR:?} to render"
            )))
        }
    }
}

/// A rendering's output, refused past [`MAX_MESSAGE_BYTES`].
#[derive(Default)]
struct BoundedText {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for BoundedText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_MESSAGE_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("message too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A template compiled once, and whether a delivery's rendering of it ran past
/// [`RENDER_FOR`] (forgotten with the cache entry, when the cache starts over).
struct Compiled {
    env: Environment<'static>,
    too_slow: AtomicBool,
}

impl Compiled {
    fn render(&self, context: serde_json::Value) -> Result<String, String> {
        let mut text = BoundedText::default();
        self.env
            .get_template("message")
            .and_then(|t| t.render_captured_to(context, &mut text).map(drop))
            .map_err(|e| match text.overflowed {
                true => format!("the message is longer than {MAX_MESSAGE_BYTES} bytes"),
                false => describe(&e),
            })?;
        let text =
            String::from_utf8(text.bytes).map_err(|_| "the message is not UTF-8".to_string())?;
        if text.trim().is_empty() {
            return Err("the message rendered empty".into());
        }
        Ok(text)
    }
}

/// `source` compiled, from the process-wide cache: a broadcast compiles its template once,
/// not once per user.
fn compiled(source: &str, escape: Escape) -> Result<Arc<Compiled>, String> {
    type Cache = HashMap<(Escape, String), Arc<Compiled>>;
    static CACHE: Mutex<Option<Cache>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    let key = (escape, source.to_string());
    if let Some(compiled) = cache.get(&key) {
        return Ok(compiled.clone());
    }
    let mut env = environment(escape);
    env.add_template_owned("message", source.to_string())
        .map_err(|e| describe(&e))?;
    let compiled = Arc::new(Compiled {
        env,
        too_slow: AtomicBool::new(false),
    });
    if cache.len() >= CACHED {
        cache.clear();
    }
    cache.insert(key, compiled.clone());
    Ok(compiled)
}

fn describe(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!(
            "{} (line {line})",
            e.detail().unwrap_or(&e.kind().to_string())
        ),
        None => e
            .detail()
            .map(String::from)
            .unwrap_or_else(|| e.kind().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Button, Text};

    fn user() -> UserState {
        UserState {
            platform: "tg".into(),
            platform_id: "42".into(),
            bm_id: "b1".into(),
            blocked: false,
            migrated_chat_id: None,
        }
    }

    fn data(v: serde_json::Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn renders_last_request_user_and_event() {
        let text = render(
            "{{ event.name }}: order {{ last_request.order.id }} for {{ user.platform_id }}",
            "paid",
            &user(),
            &data(json!({"order": {"id": 7}})),
        );
        assert_eq!(text.unwrap(), "paid: order 7 for 42");
    }

    #[test]
    fn a_missing_value_is_an_error_not_a_blank() {
        let err = render("Hi {{ last_request.name }}", "e", &user(), &data(json!({}))).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn a_template_is_compiled_once_for_every_user() {
        let source = "Hello {{ user.bm_id }} (compiled once)";
        let first = compiled(source, Escape::Plain).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &compiled(source, Escape::Plain).unwrap()
        ));
        let html = compiled(source, Escape::Markup(Markup::Html)).unwrap();
        assert!(!Arc::ptr_eq(&first, &html), "one per escape");
        assert_eq!(
            render(source, "e", &user(), &Object::new()).unwrap(),
            "Hello b1 (compiled once)"
        );
    }

    #[test]
    fn bad_templates_are_refused_at_check() {
        assert!(check("Hello {{ last_request.name }").is_err());
        assert!(check("   ").is_err());
        assert!(check("{% if last_request.vip %}VIP {% endif %}{{ last_request.name }}").is_ok());
        assert!(check(&"é".repeat(MAX_TEMPLATE_CHARS)).is_ok());
        let err = check(&"x".repeat(MAX_TEMPLATE_CHARS + 1)).unwrap_err();
        assert!(err.contains("longer than 16384 characters"), "{err}");
    }

    #[test]
    fn a_runaway_loop_fails_the_user_instead_of_holding_the_worker() {
        let nested =
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}.";
        check(nested).unwrap();
        let err = render(nested, "e", &user(), &Object::new()).unwrap_err();
        assert!(err.contains("fuel"), "{err}");
        // A loop of a few hundred items, far more than a message needs, still renders.
        let list = "{% for item in last_request.items %}{{ item }},{% endfor %}";
        let items: Vec<u32> = (0..500).collect();
        let text = render(list, "e", &user(), &data(json!({ "items": items }))).unwrap();
        assert!(
            text.starts_with("0,1,2,") && text.ends_with("499,"),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rendering_past_its_deadline_fails_that_user_and_the_template_s_later_ones() {
        // Strings of 200 MB that are never printed: few instructions, seconds of work (about
        // 0.4 s each in a release build).
        let slow = "{% set s = 'x' * 99999999 %}{% for i in range(10) %}{% set t = s ~ s %}{% endfor %}done";
        let (user, data) = (user(), Object::new());
        let reason = |result: Result<Rendered, DeliveryResult>| match result {
            Err(DeliveryResult::Permanent { reason, message }) => (reason, message),
            other => panic!("{other:?}"),
        };
        let slow = Message::text(slow);
        let (why, message) = reason(for_user(&slow, "n", &user, &data).await);
        assert_eq!(why, "template");
        assert_eq!(message, "the template took longer than 1s to render");
        let (why, message) = reason(for_user(&slow, "n", &user, &data).await);
        assert_eq!(why, "template");
        assert!(message.contains("for an earlier user"), "{message}");
        // Other templates are not affected.
        let quick = "Hello {{ user.platform_id }}";
        assert_eq!(
            for_user(&Message::text(quick), "n", &user, &data)
                .await
                .unwrap()
                .text,
            "Hello 42"
        );
    }

    #[test]
    fn a_message_longer_than_the_bound_fails_the_user() {
        let big = "x".repeat(MAX_MESSAGE_BYTES / 4 + 1);
        let template = "{{ last_request.big }}{{ last_request.big }}{{ last_request.big }}{{ last_request.big }}";
        let err = render(template, "e", &user(), &data(json!({ "big": big }))).unwrap_err();
        assert_eq!(
            err,
            format!("the message is longer than {MAX_MESSAGE_BYTES} bytes")
        );
        let fits = "x".repeat(MAX_MESSAGE_BYTES / 4);
        let text = render(template, "e", &user(), &data(json!({ "big": fits }))).unwrap();
        assert_eq!(text.len(), MAX_MESSAGE_BYTES);
    }

    fn tg_user() -> UserState {
        user()
    }

    async fn rendered(message: &Message, values: serde_json::Value) -> Rendered {
        for_user(message, "e", &tg_user(), &data(values))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn values_in_a_marked_up_text_are_escaped_for_its_markup_and_the_template_is_not() {
        let values = json!({"name": "<Tom & *Jerry*_>", "price": "1.5"});
        let mut message =
            Message::text("<b>Hi</b> {{ last_request.name }}, {{ last_request.price }}!");
        message.markup = Some(Markup::Html);
        let html = rendered(&message, values.clone()).await;
        assert_eq!(html.text, "<b>Hi</b> &lt;Tom &amp; *Jerry*_&gt;, 1.5!");
        assert_eq!(html.markup, Some(Markup::Html));
        message.template = "*Hi* {{ last_request.name }}, {{ last_request.price }}\\!".into();
        message.markup = Some(Markup::MarkdownV2);
        let markdown = rendered(&message, values.clone()).await;
        assert_eq!(markdown.text, r"*Hi* <Tom & \*Jerry\*\_\>, 1\.5\!");
        message.markup = None;
        message.template = "{{ last_request.name }}".into();
        assert_eq!(rendered(&message, values).await.text, "<Tom & *Jerry*_>");
    }

    #[tokio::test]
    async fn buttons_render_with_their_values_percent_encoded_and_overrides_by_platform() {
        let mut message = Message::text("Order {{ last_request.order }}");
        message.buttons.push(crate::message::Button {
            text: "Track {{ last_request.order }}".into(),
            url: "https://shop.example/o/{{ last_request.order }}?u={{ user.bm_id }}".into(),
        });
        message.platforms.insert(
            "tg".into(),
            crate::message::Text {
                template: "<i>{{ last_request.order }}</i>".into(),
                markup: Some(Markup::Html),
            },
        );
        let out = rendered(&message, json!({"order": "A/7 &x"})).await;
        assert_eq!(out.text, "<i>A/7 &amp;x</i>", "the tg override, escaped");
        assert_eq!(
            out.buttons,
            vec![RenderedButton {
                text: "Track A/7 &x".into(),
                url: "https://shop.example/o/A%2F7%20%26x?u=b1".into(),
            }]
        );
        let mut vk = tg_user();
        vk.platform = "vk".into();
        let plain = for_user(&message, "e", &vk, &data(json!({"order": "7"})))
            .await
            .unwrap();
        assert_eq!((plain.text.as_str(), plain.markup), ("Order 7", None));
        // A URL that no longer parses once rendered fails the user, before any call.
        message.buttons[0].url = "https://{{ last_request.order }}".into();
        let refused = for_user(&message, "e", &vk, &data(json!({"order": ""}))).await;
        assert!(
            matches!(&refused, Err(DeliveryResult::Permanent { reason, .. }) if reason == "rejected"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_message_is_checked_part_by_part() {
        let mut message = Message::text("Hi {{ last_request.name }}");
        assert!(check_message(&message).is_ok());
        message.buttons.push(Button {
            text: "Track".into(),
            url: "{{ last_request.url }}".into(),
        });
        let why = check_message(&message).unwrap_err();
        assert!(
            why.starts_with("buttons[0].url: must begin with http"),
            "{why}"
        );
        message.buttons[0].url = "https://shop.example/o/{{ last_request.order }}".into();
        assert!(check_message(&message).is_ok());
        message.buttons[0].text = "{{ unclosed".into();
        assert!(check_message(&message)
            .unwrap_err()
            .starts_with("buttons[0].text:"));
        message.buttons[0].text = "Track".into();
        let eleventh = message.buttons[0].clone();
        message
            .buttons
            .resize(crate::message::MAX_BUTTONS, eleventh.clone());
        assert!(check_message(&message).is_ok(), "ten buttons");
        message.buttons.push(eleventh);
        assert!(check_message(&message)
            .unwrap_err()
            .starts_with("buttons: at most 10 buttons"));
        message.buttons.truncate(1);
        message.platforms.insert(
            "vk".into(),
            Text {
                template: "{% if %}".into(),
                markup: None,
            },
        );
        assert!(check_message(&message)
            .unwrap_err()
            .starts_with("platforms.vk.template:"));
        message.platforms.clear();
        message.platforms.insert(
            "any".into(),
            Text {
                template: "x".into(),
                markup: None,
            },
        );
        assert!(check_message(&message)
            .unwrap_err()
            .starts_with("platforms.any:"));
        assert_eq!(
            Message::text("a").text_for("vk"),
            ("a", None),
            "no override: the message's own text"
        );
    }

    #[test]
    fn a_message_stored_before_the_model_reads_as_plain_text() {
        let old: crate::domain::Action =
            serde_json::from_str(r#"{"type":"message","template":"Hi"}"#).unwrap();
        assert_eq!(old, crate::domain::Action::Message(Message::text("Hi")));
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"type":"message","template":"Hi"}"#
        );
        let unknown = serde_json::from_str::<crate::domain::Action>(
            r#"{"type":"message","template":"Hi","colour":"red"}"#,
        );
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
