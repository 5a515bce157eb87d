//! Admin documents: bots' connections, event changes, rate limits and users to import,
//! read and validated from any bytes without a panic.
#![no_main]

use herald_core::admin::{BotChanges, EventChanges, NewUser};
use herald_core::domain::{Action, RateLimit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(changes) = serde_json::from_slice::<BotChanges>(body) {
        let _ = changes.validate();
        let _ = changes.keeps_webhooks_signed(None);
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
