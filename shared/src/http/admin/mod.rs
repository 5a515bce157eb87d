//! The admin API under `/v1/admin`, one module per resource. Every route is declared
//! [`Auth::Admin`](super::Auth::Admin) in its module's table, which the Router applies; handlers validate,
//! call the admin ports ([`crate::ports::admin`]) and answer JSON, every refusal an
//! [`ApiError`]. Secrets go one way: bot tokens and signing secrets are accepted, never
//! answered; an event secret is answered once, when it is made (create, rotate).

mod bots;
mod dead_letters;
mod events;
mod requests;
mod users;

pub use events::EventView;

use super::Route;
use crate::ids::BotId;
use crate::problem::ApiError;

/// Every admin route.
pub(super) fn routes() -> Vec<Route> {
    [
        bots::routes(),
        users::routes(),
        events::routes(),
        requests::routes(),
        dead_letters::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A bot id given in a path or a document, by the one rule of [`BotId`] (422 naming
/// `field` otherwise).
fn check_id(field: &str, id: &str) -> Result<BotId, ApiError> {
    BotId::parse(id).map_err(|e| ApiError::invalid(vec![(field.into(), e.to_string())]))
}

/// A list's `limit`: `default` when absent, 422 outside 1..=`most` (as documented).
fn page_size(limit: Option<usize>, default: usize, most: usize) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        n if (1..=most).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(vec![(
            "limit".into(),
            format!("must be from 1 to {most}"),
        )])),
    }
}
