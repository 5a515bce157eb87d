//! The event request contract: any bytes parse to a request or a refusal, never a panic,
//! and an accepted request keeps within the limits.
#![no_main]

use herald_core::request::{parse, Targets};
use herald_core::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    if let Ok(request) = parse(body, &limits) {
        match &request.targets {
            Targets::Platform { users, .. } | Targets::Bm { users } => {
                assert!(!users.is_empty() && users.len() <= limits.max_users);
            }
            Targets::Everyone { .. } => {}
        }
        assert!(herald_core::request::serialized_len(&request.data) <= limits.max_data_bytes);
    }
});
