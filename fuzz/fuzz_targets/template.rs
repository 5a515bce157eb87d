//! Templates: any source is checked or refused, and a checked one renders or fails for a
//! user with a reason, never a panic or a blank message.
#![no_main]

use herald_core::domain::UserState;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // The first line is the template, the rest the request's data (JSON).
    let text = String::from_utf8_lossy(input);
    let (template, data) = text.split_once('\n').unwrap_or((&text, "{}"));
    if herald_core::template::check(template).is_err() {
        return;
    }
    let data = match serde_json::from_str::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(data)) => data,
        _ => Default::default(),
    };
    let user = UserState {
        bm_id: "bm".into(),
        platform: "tg".into(),
        platform_id: "1".into(),
        blocked: false,
        migrated_chat_id: None,
    };
    if let Ok(message) = herald_core::template::render(template, "event", &user, &data) {
        assert!(!message.trim().is_empty());
    }
});
