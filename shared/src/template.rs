//! Message templates: Jinja syntax (minijinja), checked when an event is created and
//! rendered per user.
//!
//! A template sees `last_request` (the user's data for this request), `user.platform`,
//! `user.platform_id`, `user.bm_id` and `event.name`: `Order {{ last_request.order }} is
//! ready, {{ last_request.name }}!`. Rendering is strict: a value missing for a user is an
//! error for that user (counted, with its reason), never a silent blank. A template is
//! compiled once per process and reused for every user (see [`compiled`]).

use crate::domain::{Action, DeliveryResult, Object, UserState};
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

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
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
    environment()
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
            Action::Message { template } => check(template).map_err(|e| format!("template: {e}")),
        }
    }
}

/// `template` rendered for one user, on the caller's thread with no deadline: for checks
/// and the fuzz target; deliveries go through [`for_user`].
pub fn render(
    template: &str,
    event_name: &str,
    user: &UserState,
    last_request: &Object,
) -> Result<String, String> {
    compiled(template)?.render(context(event_name, user, last_request))
}

fn context(event_name: &str, user: &UserState, last_request: &Object) -> serde_json::Value {
    json!({
        "last_request": last_request,
        "user": {"platform": user.platform, "platform_id": user.platform_id, "bm_id": user.bm_id},
        "event": {"name": event_name},
    })
}

/// The message of `template` for `user` of a request to `event_name` whose data for them
/// is `data`, or the failure to count for them (reason `template`). It renders on the
/// blocking pool within [`RENDER_FOR`], so a template that builds huge values it never
/// prints holds no worker.
pub async fn for_user(
    template: &str,
    event_name: &str,
    user: &UserState,
    data: &Object,
) -> Result<String, DeliveryResult> {
    let failed = |message: String| DeliveryResult::Permanent {
        reason: "template".into(),
        message,
    };
    let compiled = compiled(template).map_err(failed)?;
    if compiled.too_slow.load(Ordering::Relaxed) {
        return Err(failed(format!(
            "the template took longer than {RENDER_FOR:?} to render for an earlier user; it \
             fails every user until the event's template changes"
        )));
    }
    let context = context(event_name, user, data);
    let (started, running) = oneshot::channel();
    let rendering = {
        let compiled = compiled.clone();
        tokio::task::spawn_blocking(move || {
            let _ = started.send(());
            compiled.render(context)
        })
    };
    // The deadline counts from the rendering's start, not from its wait for a thread.
    let _ = running.await;
    match tokio::time::timeout(RENDER_FOR, rendering).await {
        Ok(Ok(rendered)) => rendered.map_err(failed),
        Ok(Err(_)) => Err(failed("the template's rendering failed".into())),
        Err(_) => {
            compiled.too_slow.store(true, Ordering::Relaxed);
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
fn compiled(source: &str) -> Result<Arc<Compiled>, String> {
    static CACHE: Mutex<Option<HashMap<String, Arc<Compiled>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(compiled) = cache.get(source) {
        return Ok(compiled.clone());
    }
    let mut env = environment();
    env.add_template_owned("message", source.to_string())
        .map_err(|e| describe(&e))?;
    let compiled = Arc::new(Compiled {
        env,
        too_slow: AtomicBool::new(false),
    });
    if cache.len() >= CACHED {
        cache.clear();
    }
    cache.insert(source.to_string(), compiled.clone());
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

    fn user() -> UserState {
        UserState {
            platform: "tg".into(),
            platform_id: "42".into(),
            bm_id: "b1".into(),
            blocked: false,
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
        let first = compiled(source).unwrap();
        assert!(Arc::ptr_eq(&first, &compiled(source).unwrap()));
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
        let reason = |result: Result<String, DeliveryResult>| match result {
            Err(DeliveryResult::Permanent { reason, message }) => (reason, message),
            other => panic!("{other:?}"),
        };
        let (why, message) = reason(for_user(slow, "n", &user, &data).await);
        assert_eq!(why, "template");
        assert_eq!(message, "the template took longer than 1s to render");
        let (why, message) = reason(for_user(slow, "n", &user, &data).await);
        assert_eq!(why, "template");
        assert!(message.contains("for an earlier user"), "{message}");
        // Other templates are not affected.
        let quick = "Hello {{ user.platform_id }}";
        assert_eq!(
            for_user(quick, "n", &user, &data).await.unwrap(),
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
}
