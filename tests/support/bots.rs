//! Bots set up through the CLI, as an operator would: events, a Telegram connection,
//! imported users, and `herald serve` pointed at a fake Telegram.

use super::{herald_json, Event, Server};
use herald_fakes::FakeTelegram;
use serde_json::json;
use std::io::Write;
use std::path::Path;

/// The Telegram token the tests' bots are connected with.
pub const TOKEN: &str = "123456:TEST-TOKEN";

pub fn db_arg(db: &Path) -> &str {
    db.to_str().unwrap()
}

/// Create an event with the CLI; `action` is its `--action …` arguments.
pub fn create_event(db: &Path, bot: &str, action: &[&str]) -> Event {
    let mut args = vec![
        "events",
        "create",
        "--db",
        db_arg(db),
        "--bot",
        bot,
        "--name",
        "e",
    ];
    args.extend_from_slice(action);
    let created = herald_json(&args);
    Event {
        id: created["event"]["id"].as_str().unwrap().into(),
        secret: created["secret"].as_str().unwrap().into(),
    }
}

pub fn message_event(db: &Path, bot: &str, template: &str) -> Event {
    create_event(db, bot, &["--action", "message", "--template", template])
}

/// Connect `bot` to Telegram with `token`.
pub fn set_telegram_token(db: &Path, bot: &str, token: &str) {
    herald_json(&[
        "bots",
        "set",
        "--db",
        db_arg(db),
        "--bot",
        bot,
        "--telegram-token",
        token,
    ]);
}

pub fn screen_event(db: &Path, bot: &str) -> Event {
    create_event(db, bot, &["--action", "screen", "--screen", "thanks"])
}

pub fn import(db: &Path, bot: &str, users: &[(&str, String)]) {
    let file = db.with_extension("users.jsonl");
    let mut out = std::fs::File::create(&file).unwrap();
    for (platform, id) in users {
        writeln!(
            out,
            "{}",
            json!({"platform": platform, "platform_id": id, "bm_id": format!("bm-{platform}-{id}")})
        )
        .unwrap();
    }
    drop(out);
    herald_json(&[
        "users",
        "import",
        "--db",
        db_arg(db),
        "--bot",
        bot,
        file.to_str().unwrap(),
    ]);
}

pub fn serve(db: &Path, telegram: &FakeTelegram, rate: u32) -> Server {
    let rate = rate.to_string();
    Server::start(
        db,
        &[
            "--no-demo",
            "--telegram-api",
            &telegram.url,
            "--telegram-rate",
            &rate,
            "--retry-base-ms",
            "50",
        ],
    )
}
