//! The admin ports, one per resource an operator manages: bots, events, users, requests
//! and dead letters. Each runtime implements all five; [`crate::http::admin`] serves them.

mod bots;
mod dead_letters;
mod events;
mod requests;
mod users;

pub use bots::BotAdmin;
pub use dead_letters::DeadLetterAdmin;
pub use events::EventAdmin;
pub use requests::RequestAdmin;
pub use users::UserAdmin;

use std::sync::Arc;

/// The admin ports of one runtime.
#[derive(Clone)]
pub struct AdminPorts {
    pub bots: Arc<dyn BotAdmin>,
    pub events: Arc<dyn EventAdmin>,
    pub users: Arc<dyn UserAdmin>,
    pub requests: Arc<dyn RequestAdmin>,
    pub dead_letters: Arc<dyn DeadLetterAdmin>,
}

impl AdminPorts {
    /// Every admin port on one adapter that implements them all.
    pub fn all<T>(store: Arc<T>) -> AdminPorts
    where
        T: BotAdmin + EventAdmin + UserAdmin + RequestAdmin + DeadLetterAdmin + 'static,
    {
        AdminPorts {
            bots: store.clone(),
            events: store.clone(),
            users: store.clone(),
            requests: store.clone(),
            dead_letters: store,
        }
    }
}
