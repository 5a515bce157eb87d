//! The import's line parsers: JSON lines and CSV (first line the header), from any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for line in text.lines() {
        if let Ok(user) = herald_core::import::parse_json_line(line) {
            assert!(user.problem().is_none());
        }
    }
    if let Ok(users) = herald_core::import::parse_csv_lines(text.lines()) {
        for user in users.into_iter().flatten() {
            assert!(user.problem().is_none());
        }
    }
});
