//! `/v1/admin/bots`: register bots and change their connections, checked against the
//! channel registry; secrets are taken, never answered.

use super::super::extract::{changes_document, document, Param, Shared};
use super::super::{Auth, Route};
use super::check_id;
use crate::admin::Removal;
use crate::channels::{BotChanges, BotSummary, Connections};
use crate::ids::BotId;
use crate::ports::App;
use crate::problem::ApiError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;

pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/v1/admin/bots",
            &["GET", "POST"],
            Auth::Admin,
            get(list_bots).post(create_bot),
        ),
        Route::new(
            "/v1/admin/bots/{bot_id}",
            &["GET", "PATCH", "DELETE"],
            Auth::Admin,
            get(show_bot).patch(update_bot).delete(delete_bot),
        ),
    ]
}

/// A bot's changes from an admin document (`connections` and the flat aliases, plus
/// `other_keys`), checked against the registered channels.
fn bot_changes(
    app: &App,
    document: &serde_json::Value,
    other_keys: &[&str],
) -> Result<BotChanges, ApiError> {
    let Some(object) = document.as_object() else {
        return Err(ApiError::invalid(vec![(
            String::new(),
            "must be a JSON object".into(),
        )]));
    };
    let changes = BotChanges::from_document(object, other_keys).map_err(ApiError::invalid)?;
    changes.validate(app.channels).map_err(ApiError::invalid)?;
    Ok(changes)
}

async fn list_bots(State(app): Shared) -> Result<Response, ApiError> {
    let bots: Vec<BotSummary> = app
        .ports
        .admin
        .bots
        .bots()
        .await?
        .iter()
        .map(|bot| bot.summary(app.channels))
        .collect();
    Ok(Json(serde_json::json!({ "bots": bots })).into_response())
}

async fn create_bot(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value: serde_json::Value = document(&headers, body).await?;
    let changes = bot_changes(&app, &value, &["id"])?;
    let id = match value.get("id") {
        Some(serde_json::Value::String(id)) => id.clone(),
        _ => {
            return Err(ApiError::invalid(vec![(
                "id".into(),
                "must be a string: the bot's id".into(),
            )]))
        }
    };
    let id = check_id("id", &id)?;
    changes
        .keeps_needs(app.channels, None)
        .map_err(ApiError::invalid)?;
    let mut connections = Connections::default();
    connections.apply(&changes);
    if !app.ports.admin.bots.create_bot(&id, &connections).await? {
        return Err(ApiError::Conflict(format!("bot {id} exists already")));
    }
    tracing::info!(bot_id = %id, "bot created");
    let bot = app
        .ports
        .admin
        .bots
        .bot_record(&id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((StatusCode::CREATED, Json(bot.summary(app.channels))).into_response())
}

async fn show_bot(State(app): Shared, Param(bot_id): Param<BotId>) -> Result<Response, ApiError> {
    let bot = app
        .ports
        .admin
        .bots
        .bot_record(&bot_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(bot.summary(app.channels)).into_response())
}

async fn update_bot(
    State(app): Shared,
    Param(bot_id): Param<BotId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let value: serde_json::Value = changes_document(&headers, body).await?;
    let changes = bot_changes(&app, &value, &[])?;
    // Changes that break a channel's needs whatever the bot holds (a URL set, its secret
    // cleared) are wrong in themselves (422); changes that break them only for this bot,
    // as it is stored, conflict with it (409).
    // The bot most in their favour holds every field that others need, and none of the
    // fields that need others.
    let mut favourable = Connections::default();
    for spec in app.channels {
        for field in spec.fields.iter().filter(|f| f.needs.is_none()) {
            favourable = favourable.with(spec.name, field.name, "set");
        }
    }
    changes
        .keeps_needs(app.channels, Some(&favourable))
        .map_err(ApiError::invalid)?;
    let current = app
        .ports
        .admin
        .bots
        .bot_record(&bot_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if let Err(mut errors) = changes.keeps_needs(app.channels, Some(&current.connections)) {
        let (field, why) = errors.remove(0);
        let field = field.rsplit('.').next().unwrap_or(&field).to_string();
        return Err(ApiError::Conflict(format!(
            "bot {bot_id} has no {field}: {why}"
        )));
    }
    if !app.ports.admin.bots.update_bot(&bot_id, &changes).await? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(bot_id = %bot_id, "bot updated");
    show_bot(State(app), Param(bot_id)).await
}

async fn delete_bot(State(app): Shared, Param(bot_id): Param<BotId>) -> Result<Response, ApiError> {
    match app.ports.admin.bots.delete_bot(&bot_id).await? {
        Removal::Removed => {
            tracing::info!(bot_id = %bot_id, "bot deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Removal::NotFound => Err(ApiError::NotFound),
        Removal::InUse(why) => Err(ApiError::Conflict(why)),
    }
}
