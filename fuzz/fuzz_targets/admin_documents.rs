//! Admin documents: bots' connections, event changes, rate limits and users to import,
//! read and validated from any bytes without a panic.
#![no_main]

use herald_core::admin::{EventChanges, NewUser};
use herald_core::channels::{BotChanges, BotRecord, Connections};
use herald_core::domain::{Action, RateLimit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(serde_json::Value::Object(document)) = serde_json::from_slice(body) {
        if let Ok(changes) = BotChanges::from_document(&document, &["id"]) {
            let channels = herald_delivery::CHANNELS;
            if changes.validate(channels).is_ok() {
                let _ = changes.keeps_needs(channels, None);
                let mut connections = Connections::default();
                connections.apply(&changes);
                let stored = Connections::from_json(&connections.to_json());
                assert_eq!(stored.as_ref().ok(), Some(&connections));
                let record = BotRecord { connections, ..BotRecord::default() };
                let _ = serde_json::to_string(&record.summary(channels));
            }
        }
    }
    if let Ok(changes) = serde_json::from_slice::<EventChanges>(body) {
        if let Some(Some(limit)) = changes.rate_limit {
            if limit.validate().is_ok() {
                let mut tat = None;
                for now in [0, 1, i64::MAX / 2, i64::MAX] {
                    tat = herald_core::throttle::gcra(tat, now, &limit).ok().or(tat);
                }
            }
        }
    }
    if let Ok(limit) = serde_json::from_slice::<RateLimit>(body) {
        let _ = herald_core::throttle::gcra(None, 0, &limit);
    }
    if let Ok(action) = serde_json::from_slice::<Action>(body) {
        let _ = action.validate();
    }
    if let Ok(user) = serde_json::from_slice::<NewUser>(body) {
        let _ = user.problem();
        let _ = user.state_id();
    }
});
