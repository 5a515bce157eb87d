//! Message templates: Jinja syntax (minijinja), checked when an event is created and
//! rendered per user.
//!
//! A template sees `last_request` (the user's data for this request), `user.platform`,
//! `user.platform_id`, `user.bm_id` and `event.name`: `Order {{ last_request.order }} is
//! ready, {{ last_request.name }}!`. Rendering is strict: a value missing for a user is an
//! error for that user (counted, with its reason), never a silent blank.

use crate::domain::{Object, UserState};
use minijinja::{Environment, UndefinedBehavior};
use serde_json::json;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Whether `template` compiles; the error says where it does not.
pub fn check(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("the template is empty".into());
    }
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// `template` rendered for one user.
pub fn render(
    template: &str,
    event_name: &str,
    user: &UserState,
    last_request: &Object,
) -> Result<String, String> {
    let context = json!({
        "last_request": last_request,
        "user": {"platform": user.platform, "platform_id": user.platform_id, "bm_id": user.bm_id},
        "event": {"name": event_name},
    });
    let env = environment();
    let compiled = env.template_from_str(template).map_err(|e| describe(&e))?;
    let text = compiled.render(context).map_err(|e| describe(&e))?;
    if text.trim().is_empty() {
        return Err("the message rendered empty".into());
    }
    Ok(text)
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
    fn bad_templates_are_refused_at_check() {
        assert!(check("Hello {{ last_request.name }").is_err());
        assert!(check("   ").is_err());
        assert!(check("{% if last_request.vip %}VIP {% endif %}{{ last_request.name }}").is_ok());
    }
}
