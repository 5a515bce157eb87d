//! Platform answers: any status, body and Retry-After from Telegram or a bot engine is
//! classified as delivered, retry (with a wait Herald can honour) or permanent.
#![no_main]

use herald_core::domain::DeliveryResult;
use herald_delivery::channels::{engine as bot_engine, telegram};
use herald_delivery::parse_retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let status = u16::from_le_bytes([input[0], input[1]]) % 1000;
    let split = (input[2] as usize).min(input.len() - 3);
    let (header, body) = input[3..].split_at(split);
    let wait = parse_retry_after(header);
    for result in [
        telegram::classify_answer(status, body, wait),
        bot_engine::classify(status, wait),
    ] {
        if let DeliveryResult::Permanent { reason, .. } | DeliveryResult::Retry { reason, .. } =
            &result
        {
            assert!(!reason.is_empty());
        }
    }
});
