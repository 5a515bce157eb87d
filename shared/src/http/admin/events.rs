//! `/v1/admin/events`: create (the secret answered once), list, change, rotate the secret,
//! delete.

use super::super::extract::{changes_document, document, Param, QueryOf, Shared};
use super::super::{Auth, Route};
use super::check_id;
use crate::admin::EventChanges;
use crate::domain::{now_ms, Action, Event, PreviousSecret, RateLimit};
use crate::ids::{BotId, EventId};
use crate::lane::Lane;
use crate::ports::App;
use crate::problem::ApiError;
use crate::secret;
use crate::status::rfc3339;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Longest grace period of a rotated secret: 30 days.
const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/v1/admin/events",
            &["GET", "POST"],
            Auth::Admin,
            get(list_events).post(create_event),
        ),
        Route::new(
            "/v1/admin/events/{event_id}",
            &["GET", "PATCH", "DELETE"],
            Auth::Admin,
            get(show_event).patch(update_event).delete(delete_event),
        ),
        Route::new(
            "/v1/admin/events/{event_id}/rotate-secret",
            &["POST"],
            Auth::Admin,
            post(rotate_secret),
        ),
    ]
}

/// An event as the admin API shows it (never its secret).
#[derive(Serialize)]
pub struct EventView {
    pub id: EventId,
    pub bot_id: BotId,
    pub name: String,
    pub action: Action,
    pub enabled: bool,
    pub rate_limit: Option<RateLimit>,
    /// The lane of its requests that name none (None: by audience).
    pub lane: Option<Lane>,
    /// Where CRMs post with `Authorization: Bearer <secret>` (or append `/<secret>`).
    pub url: String,
    pub created_at: String,
    /// Until when the secret before the last rotation still works, if it does.
    pub previous_secret_valid_until: Option<String>,
}

impl EventView {
    fn new(app: &App, event: Event) -> EventView {
        EventView {
            url: app.config.url(&format!("/v1/events/{}", event.id)),
            previous_secret_valid_until: event
                .previous_secret
                .filter(|p| p.valid_until > now_ms())
                .map(|p| rfc3339(p.valid_until)),
            created_at: rfc3339(event.created_at),
            id: event.id,
            bot_id: event.bot_id,
            name: event.name,
            action: event.action,
            enabled: event.enabled,
            rate_limit: event.rate_limit,
            lane: event.lane,
        }
    }
}

/// The only answer that carries an event's secret: on creation and rotation.
#[derive(Serialize)]
struct WithSecret {
    event: EventView,
    secret: String,
    /// The full URL, secret included, for CRMs that cannot set headers.
    url_with_secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEvent {
    bot_id: String,
    name: String,
    action: Action,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    rate_limit: Option<RateLimit>,
    #[serde(default)]
    lane: Option<Lane>,
}

fn yes() -> bool {
    true
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if crate::domain::is_blank(name) || name.chars().count() > 200 {
        return Err(ApiError::invalid(vec![(
            "name".into(),
            "must be 1 to 200 characters, not only spaces".into(),
        )]));
    }
    Ok(())
}

fn check_rate_limit(limit: Option<&RateLimit>) -> Result<(), ApiError> {
    match limit.map(RateLimit::validate) {
        Some(Err(message)) => Err(ApiError::invalid(vec![("rate_limit".into(), message)])),
        _ => Ok(()),
    }
}

fn with_secret(app: &App, event: Event, secret: String) -> WithSecret {
    let url_with_secret = app.config.url(&format!("/v1/events/{}/{secret}", event.id));
    WithSecret {
        event: EventView::new(app, event),
        secret,
        url_with_secret,
    }
}

#[derive(Deserialize)]
struct EventFilter {
    bot_id: Option<String>,
}

async fn list_events(
    State(app): Shared,
    QueryOf(filter): QueryOf<EventFilter>,
) -> Result<Response, ApiError> {
    // An id no bot can have filters every event out, as an unknown bot's would.
    let events = match filter.bot_id.as_deref().map(BotId::parse) {
        Some(Err(_)) => Vec::new(),
        Some(Ok(bot_id)) => app.ports.admin.events.events(Some(&bot_id)).await?,
        None => app.ports.admin.events.events(None).await?,
    };
    let events: Vec<EventView> = events
        .into_iter()
        .map(|e| EventView::new(&app, e))
        .collect();
    Ok(Json(serde_json::json!({ "events": events })).into_response())
}

async fn create_event(
    State(app): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let new: NewEvent = document(&headers, body).await?;
    let bot_id = check_id("bot_id", &new.bot_id)?;
    check_name(&new.name)?;
    new.action
        .validate()
        .map_err(|message| ApiError::invalid(vec![("action".into(), message)]))?;
    check_rate_limit(new.rate_limit.as_ref())?;
    let secret = secret::generate();
    let event = Event {
        id: EventId::generate(),
        bot_id,
        name: new.name,
        secret_hash: secret::hash(&secret),
        previous_secret: None,
        action: new.action,
        enabled: new.enabled,
        rate_limit: new.rate_limit,
        lane: new.lane,
        created_at: now_ms(),
    };
    app.ports.admin.events.create_event(&event).await?;
    tracing::info!(event_id = %event.id, bot_id = %event.bot_id, "event created");
    let body = with_secret(&app, event, secret);
    let location = body.event.url.replace("/v1/events/", "/v1/admin/events/");
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn show_event(
    State(app): Shared,
    Param(event_id): Param<EventId>,
) -> Result<Response, ApiError> {
    let event = app
        .ports
        .events
        .event(&event_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(EventView::new(&app, event)).into_response())
}

async fn update_event(
    State(app): Shared,
    Param(event_id): Param<EventId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let changes: EventChanges = changes_document(&headers, body).await?;
    if let Some(name) = &changes.name {
        check_name(name)?;
    }
    check_rate_limit(changes.rate_limit.as_ref().and_then(Option::as_ref))?;
    if !app
        .ports
        .admin
        .events
        .update_event(&event_id, &changes)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    tracing::info!(event_id = %event_id, "event updated");
    show_event(State(app), Param(event_id)).await
}

async fn delete_event(
    State(app): Shared,
    Param(event_id): Param<EventId>,
) -> Result<Response, ApiError> {
    if app.ports.admin.events.delete_event(&event_id).await? {
        tracing::info!(event_id = %event_id, "event deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotation {
    /// How long the old secret keeps working, in seconds (0: it stops at once).
    #[serde(default)]
    #[serde(deserialize_with = "crate::domain::integral")]
    grace_seconds: u64,
}

async fn rotate_secret(
    State(app): Shared,
    Param(event_id): Param<EventId>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let rotation: Rotation = document(&headers, body).await?;
    if rotation.grace_seconds > MAX_GRACE_SECONDS {
        return Err(ApiError::invalid(vec![(
            "grace_seconds".into(),
            format!("must be at most {MAX_GRACE_SECONDS} (30 days)"),
        )]));
    }
    let secret = secret::generate();
    let until = now_ms() + (rotation.grace_seconds * 1000) as i64;
    if !app
        .ports
        .admin
        .events
        .rotate_secret(&event_id, secret::hash(&secret), until)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    tracing::info!(event_id = %event_id, grace_seconds = rotation.grace_seconds, "event secret rotated");
    let mut event = app
        .ports
        .events
        .event(&event_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if rotation.grace_seconds == 0 {
        event.previous_secret = None::<PreviousSecret>;
    }
    Ok(Json(with_secret(&app, event, secret)).into_response())
}
