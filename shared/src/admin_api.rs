//! The admin API under `/v1/admin`: bots, events, users, requests and dead letters.
//!
//! Every route needs `Authorization: Bearer <admin token>` ([`require_admin_token`]
//! compares its hash in constant time; a runtime with no admin token configured answers
//! 401 to all). Handlers validate, call the admin ports ([`crate::ports::admin`]) and answer JSON; every
//! refusal is an [`ApiError`], so errors are the same problem+json as the public API.
//! Secrets go one way: bot tokens and signing secrets are accepted, never answered; an
//! event secret is answered once, when it is made (create, rotate).

use crate::admin::{Cancellation, EventChanges, Removal, Selection};
use crate::channels::{BotChanges, BotSummary, Connections};
use crate::domain::{now_ms, Action, Event, PreviousSecret, RateLimit, UserRef};
use crate::http_parts::{bearer, Route, Shared};
use crate::ports::App;
use crate::problem::ApiError;
use crate::request::RequestError;
use crate::status::{rfc3339, RequestStatus};
use crate::{import, secret};
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::{Deserialize, Serialize};

/// Largest admin JSON document (user imports are streamed and have no overall limit).
const MAX_ADMIN_BODY: usize = 1024 * 1024;
/// Longest grace period of a rotated secret: 30 days.
const MAX_GRACE_SECONDS: u64 = 30 * 24 * 3600;

pub(crate) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/v1/admin/bots",
            &["GET", "POST"],
            get(list_bots).post(create_bot),
        ),
        Route::new(
            "/v1/admin/bots/{bot_id}",
            &["GET", "PATCH", "DELETE"],
            get(show_bot).patch(update_bot).delete(delete_bot),
        ),
        Route::new(
            "/v1/admin/bots/{bot_id}/users",
            &["POST"],
            post(import_users),
        ),
        Route::new(
            "/v1/admin/bots/{bot_id}/users/{platform}/{user_id}",
            &["GET", "DELETE"],
            get(show_user).delete(delete_user),
        ),
        Route::new(
            "/v1/admin/events",
            &["GET", "POST"],
            get(list_events).post(create_event),
        ),
        Route::new(
            "/v1/admin/events/{event_id}",
            &["GET", "PATCH", "DELETE"],
            get(show_event).patch(update_event).delete(delete_event),
        ),
        Route::new(
            "/v1/admin/events/{event_id}/rotate-secret",
            &["POST"],
            post(rotate_secret),
        ),
        Route::new("/v1/admin/requests", &["GET"], get(list_requests)),
        Route::new(
            "/v1/admin/requests/{request_id}",
            &["GET"],
            get(show_request),
        ),
        Route::new(
            "/v1/admin/requests/{request_id}/cancel",
            &["POST"],
            post(cancel_request),
        ),
        Route::new("/v1/admin/dead-letters", &["GET"], get(list_dead_letters)),
        Route::new("/v1/admin/dead-letters/redrive", &["POST"], post(redrive)),
        Route::new("/v1/admin/dead-letters/purge", &["POST"], post(purge)),
    ]
}

/// Whether `headers` carry the admin token (`Authorization: Bearer …`), in constant time.
pub fn has_admin_token(config: &crate::Config, headers: &HeaderMap) -> bool {
    let presented = bearer(headers).unwrap_or_default();
    let stored = config.admin_token_hash;
    // Hash and compare even with no token configured, so every refusal takes as long.
    let matches = secret::verify(&presented, &stored.unwrap_or([0u8; 32]));
    matches && stored.is_some() && !presented.is_empty()
}

/// Refuse every `/v1/admin` request without the admin token, before any handler runs.
pub(crate) async fn require_admin_token(
    State(app): Shared,
    request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/v1/admin") {
        return next.run(request).await;
    }
    if has_admin_token(&app.config, request.headers()) {
        next.run(request).await
    } else {
        tracing::info!(path = %request.uri().path(), status = 401, "admin request refused");
        ApiError::Unauthorized.into_response()
    }
}

/// The document of a PATCH: as [`document`], but a body is required (a change with no
/// body is a client's mistake, not "change nothing"): 422 without one.
async fn changes_document<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    read_document(headers, body, false).await
}

/// A JSON document of an admin request; an empty body reads as `{}`.
async fn document<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    read_document(headers, body, true).await
}

/// A JSON document of an admin request: 415 unless JSON, 413 over the limit, 400 when
/// malformed, 422 naming the field when it does not fit; an empty body is `{}` when
/// `empty_allowed`, else 422.
async fn read_document<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    empty_allowed: bool,
) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_ADMIN_BODY)
        .await
        .map_err(|e| {
            if crate::http_parts::caused_by_timeout(&e) {
                return ApiError::BodyTimeout;
            }
            ApiError::Request(RequestError::TooLarge(vec![crate::request::FieldError {
                field: String::new(),
                message: format!("the body is over the limit of {MAX_ADMIN_BODY} bytes"),
            }]))
        })?;
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        if !empty_allowed {
            return Err(ApiError::invalid(vec![(
                String::new(),
                "a JSON object with the fields to change is required".into(),
            )]));
        }
        Bytes::from_static(b"{}")
    } else {
        crate::http_parts::check_json_content_type(headers)?;
        bytes
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| RequestError::Malformed {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    if !value.is_object() {
        // serde would read an array positionally into a struct.
        return Err(ApiError::invalid(vec![(
            String::new(),
            "must be a JSON object".into(),
        )]));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid(vec![(String::new(), e.to_string())]))
}

fn path<T>(extracted: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    extracted.map(|Path(p)| p).map_err(|_| ApiError::NotFound)
}

fn query<T>(extracted: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    extracted
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid(vec![("query".into(), e.body_text())]))
}

fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(vec![(
            field.into(),
            "must be 1 to 128 letters, digits or - _ . :".into(),
        )]))
    }
}

// ---- bots ----

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
    check_id("id", &id)?;
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

async fn show_bot(
    State(app): Shared,
    bot_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let bot_id = path(bot_id)?;
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
    bot_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bot_id = path(bot_id)?;
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
    show_bot(State(app), Ok(Path(bot_id))).await
}

async fn delete_bot(
    State(app): Shared,
    bot_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let bot_id = path(bot_id)?;
    match app.ports.admin.bots.delete_bot(&bot_id).await? {
        Removal::Removed => {
            tracing::info!(bot_id = %bot_id, "bot deleted");
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Removal::NotFound => Err(ApiError::NotFound),
        Removal::InUse(why) => Err(ApiError::Conflict(why)),
    }
}

// ---- users ----

async fn import_users(
    State(app): Shared,
    bot_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bot_id = path(bot_id)?;
    check_id("bot_id", &bot_id)?;
    let format = import::Format::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    )?;
    let summary = import::stream(&app, &bot_id, format, body).await?;
    tracing::info!(
        bot_id = %bot_id,
        inserted = summary.inserted,
        existing = summary.existing,
        rejected = summary.rejected,
        "users imported"
    );
    Ok(Json(summary).into_response())
}

/// `{platform}/{id}`: a platform id, or with platform `bm` a state id.
fn user_ref(platform: String, id: String) -> UserRef {
    if platform == "bm" {
        UserRef::Bm { id }
    } else {
        UserRef::Platform { platform, id }
    }
}

async fn show_user(
    State(app): Shared,
    params: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (bot_id, platform, id) = path(params)?;
    let user = app
        .ports
        .admin
        .users
        .user_document(&bot_id, &user_ref(platform, id))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(user).into_response())
}

async fn delete_user(
    State(app): Shared,
    params: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (bot_id, platform, id) = path(params)?;
    if app
        .ports
        .admin
        .users
        .delete_user(&bot_id, &user_ref(platform, id))
        .await?
    {
        tracing::info!(bot_id = %bot_id, "user deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}

// ---- events ----

/// An event as the admin API shows it (never its secret).
#[derive(Serialize)]
pub struct EventView {
    pub id: String,
    pub bot_id: String,
    pub name: String,
    pub action: Action,
    pub enabled: bool,
    pub rate_limit: Option<RateLimit>,
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
}

fn yes() -> bool {
    true
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(vec![(
            "name".into(),
            "must be 1 to 200 characters".into(),
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
    filter: Result<Query<EventFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let filter = query(filter)?;
    let events = app
        .ports
        .admin
        .events
        .events(filter.bot_id.as_deref())
        .await?;
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
    check_id("bot_id", &new.bot_id)?;
    check_name(&new.name)?;
    new.action
        .validate()
        .map_err(|message| ApiError::invalid(vec![("action".into(), message)]))?;
    check_rate_limit(new.rate_limit.as_ref())?;
    let secret = secret::generate();
    let event = Event {
        id: crate::domain::new_id(),
        bot_id: new.bot_id,
        name: new.name,
        secret_hash: secret::hash(&secret),
        previous_secret: None,
        action: new.action,
        enabled: new.enabled,
        rate_limit: new.rate_limit,
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
    event_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let event_id = path(event_id)?;
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
    event_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let event_id = path(event_id)?;
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
    show_event(State(app), Ok(Path(event_id))).await
}

async fn delete_event(
    State(app): Shared,
    event_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let event_id = path(event_id)?;
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
    event_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let event_id = path(event_id)?;
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

// ---- requests ----

#[derive(Deserialize)]
struct RequestFilter {
    event_id: String,
    before: Option<String>,
    limit: Option<usize>,
}

async fn list_requests(
    State(app): Shared,
    filter: Result<Query<RequestFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let filter = query(filter)?;
    let limit = page_size(filter.limit, 20, 100)?;
    let found = app
        .ports
        .admin
        .requests
        .recent_requests(&filter.event_id, filter.before.as_deref(), limit)
        .await?;
    let next = (found.len() == limit)
        .then(|| found.last().map(|p| p.record.id.clone()))
        .flatten();
    let requests: Vec<RequestStatus> = found.into_iter().map(RequestStatus::from).collect();
    Ok(Json(serde_json::json!({ "requests": requests, "next_before": next })).into_response())
}

async fn show_request(
    State(app): Shared,
    request_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let request_id = path(request_id)?;
    let progress = app
        .ports
        .requests
        .progress(&request_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(RequestStatus::from(progress)).into_response())
}

async fn cancel_request(
    State(app): Shared,
    request_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let request_id = path(request_id)?;
    let progress = app
        .ports
        .requests
        .progress(&request_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let status = RequestStatus::from(progress);
    if matches!(status.state, "done" | "aborted" | "cancelled") {
        return Err(ApiError::Conflict(format!(
            "request {request_id} is {}; only a pending request can be cancelled",
            status.state
        )));
    }
    match app.ports.admin.requests.cancel_request(&request_id).await? {
        Cancellation::Cancelled => {
            tracing::info!(request_id = %request_id, "request cancelled");
            show_request(State(app), Ok(Path(request_id))).await
        }
        Cancellation::NotFound => Err(ApiError::NotFound),
        Cancellation::Final(state) => Err(ApiError::Conflict(format!(
            "request {request_id} is {}; only a pending request can be cancelled",
            state.as_str()
        ))),
    }
}

// ---- dead letters ----

#[derive(Deserialize)]
struct DeadFilter {
    limit: Option<usize>,
}

async fn list_dead_letters(
    State(app): Shared,
    filter: Result<Query<DeadFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = page_size(query(filter)?.limit, 100, 1000)?;
    let dead = app.ports.admin.dead_letters.dead_letters(limit).await?;
    Ok(Json(serde_json::json!({ "dead_letters": dead })).into_response())
}

/// Which dead letters: `{"ids": [...]}` or `{"all": true}` — never all by omission.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Which {
    #[serde(default, deserialize_with = "crate::admin::present")]
    ids: Option<Vec<String>>,
    #[serde(default)]
    all: bool,
}

impl Which {
    fn selection(self) -> Result<Selection, ApiError> {
        match (self.ids, self.all) {
            (Some(ids), false) if !ids.is_empty() => Ok(Selection::Ids(ids)),
            (None, true) => Ok(Selection::All),
            _ => Err(ApiError::invalid(vec![(
                String::new(),
                "give either \"ids\": [...] (not empty) or \"all\": true".into(),
            )])),
        }
    }
}

async fn redrive(State(app): Shared, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let which = document::<Which>(&headers, body).await?.selection()?;
    let jobs = app.ports.admin.dead_letters.redrive(&which).await?;
    tracing::info!(jobs = jobs.len(), "dead letters redriven");
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    Ok(Json(serde_json::json!({ "redriven": jobs.len(), "ids": ids })).into_response())
}

async fn purge(State(app): Shared, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let which = document::<Which>(&headers, body).await?.selection()?;
    let purged = app.ports.admin.dead_letters.purge(&which).await?;
    tracing::info!(jobs = purged, "dead letters purged");
    Ok(Json(serde_json::json!({ "purged": purged })).into_response())
}
