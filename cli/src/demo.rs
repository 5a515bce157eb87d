//! The newcomer's first run: a demo bot, a few users and an event on an empty store.
//!
//! The demo users include the state id from the External Event documentation's `users_bm`
//! example, so all three documented example requests work against the demo as they are.

use herald_core::admin::NewUser;
use herald_core::domain::Action;
use herald_core::ports::admin::UserAdmin;
use herald_sqlite::events::CreatedEvent;
use herald_sqlite::Sqlite;

pub const BOT: &str = "demo";

/// Demo users: (platform, platform_id, bm_id).
const USERS: &[(&str, &str, &str)] = &[
    ("tg", "123456", "5c517b7773515eaha3078e2f"),
    ("tg", "234567", "5c517b7773515eaha3078e30"),
    ("tg", "345678", "5c517b7773515eaha3078e31"),
    ("vk", "456789", "5c517b7773515eaha3078e32"),
];

/// Create the demo bot, users and event.
pub async fn create(store: &Sqlite) -> anyhow::Result<CreatedEvent> {
    let users: Vec<NewUser> = USERS
        .iter()
        .map(|(platform, platform_id, bm_id)| NewUser {
            platform: platform.to_string(),
            platform_id: platform_id.to_string(),
            bm_id: Some(bm_id.to_string()),
        })
        .collect();
    store
        .import_users(&herald_core::ids::BotId::parse(BOT)?, &users)
        .await?;
    let event = store
        .new_event(
            BOT,
            "demo",
            Action::Screen {
                screen_id: "welcome".into(),
            },
        )
        .await?;
    Ok(event)
}

/// What to print so that a newcomer can call the demo event at once.
pub fn banner(event: &CreatedEvent, base_url: &str) -> String {
    let url = format!("{base_url}/v1/events/{}/{}", event.event_id, event.secret);
    format!(
        "\nDemo bot \"{BOT}\" created with users tg:123456, tg:234567, tg:345678 and vk:456789,\n\
         and a demo event that shows screen \"welcome\". Its secret is shown only now:\n\n\
         export HERALD_EVENT_URL={url}\n\n\
         curl -sS -X POST \"$HERALD_EVENT_URL\" -H 'Content-Type: application/json' \\\n  \
         -d '{{\"platform\": \"tg\", \"users\": [\"123456\"], \"data\": {{\"order\": 42}}}}'\n"
    )
}
