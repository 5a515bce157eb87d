//! The public routes: `POST /v1/events/{event_id}/{secret}` and `POST /v1/events/{event_id}`
//! (with `Authorization: Bearer <secret>`) accept events; `GET /v1/requests/{request_id}`
//! (bearer) and `GET /v1/requests/{request_id}/{secret}` answer the status document;
//! `GET /healthz`. Checks run cheapest first — content type, secret, body size, JSON,
//! contract — and every refusal is an [`ApiError`], so each answer is problem+json.

use super::extract::{bearer, caused_by_timeout, check_json_content_type, Shared};
use super::{Auth, Route};
use crate::ids::RequestId;
use crate::intake::{self, Answer};
use crate::log_budget::LogBudget;
use crate::ports::{App, Remembered};
use crate::problem::ApiError;
use crate::status::RequestStatus;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use futures::StreamExt;
use tracing::Instrument;

pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/v1/events/{event_id}/{secret}",
            &["POST"],
            Auth::EventSecret,
            post(event_by_path),
        ),
        Route::new(
            "/v1/events/{event_id}",
            &["POST"],
            Auth::EventSecret,
            post(event_by_bearer),
        ),
        Route::new(
            "/v1/requests/{request_id}",
            &["GET"],
            Auth::EventSecret,
            get(status_by_bearer),
        ),
        Route::new(
            "/v1/requests/{request_id}/{secret}",
            &["GET"],
            Auth::EventSecret,
            get(status_by_path),
        ),
        Route::new("/healthz", &["GET"], Auth::Public, get(|| async { "ok" })),
    ]
}

async fn event_by_path(
    State(app): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match path {
        Ok(Path((event_id, secret))) => event(&app, &event_id, &secret, &headers, body).await,
        Err(_) => ApiError::NotFound.into_response(),
    }
}

async fn event_by_bearer(
    State(app): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match (path, bearer(&headers)) {
        (Ok(Path(event_id)), Some(secret)) => event(&app, &event_id, &secret, &headers, body).await,
        _ => ApiError::NotFound.into_response(),
    }
}

async fn event(
    app: &App,
    event_id: &str,
    secret: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    // The request's span: its log lines carry `event_id` (and `request_id` once there is
    // one) from here rather than each repeating them.
    let span = tracing::info_span!(
        "event_request",
        event_id,
        request_id = tracing::field::Empty
    );
    let result = accept_event(app, event_id, secret, headers, body)
        .instrument(span.clone())
        .await;
    let _entered = span.enter(); // no await below: the answer is built synchronously
    let status = match &result {
        Ok(Answer::Accepted(_)) => 202,
        Ok(Answer::DryRun(_)) => 200,
        Ok(Answer::Replay(first)) => first.status,
        Err(error) => error.status().as_u16(),
    };
    metrics::counter!(crate::metrics::REQUESTS, "status" => status.to_string()).increment(1);
    match result {
        Ok(Answer::Accepted(accepted)) => {
            span.record("request_id", accepted.request_id.as_str());
            // The line a log query looks for names its ids itself too.
            tracing::info!(
                event_id,
                request_id = %accepted.request_id,
                targeted = accepted.targeted,
                status = 202,
                "event request accepted"
            );
            let location = accepted.status_url.clone();
            let mut response = (StatusCode::ACCEPTED, Json(accepted)).into_response();
            if let Ok(value) = location.parse() {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Ok(Answer::DryRun(dry)) => {
            tracing::info!(targeted = dry.targeted, status = 200, "event dry run");
            (StatusCode::OK, Json(dry)).into_response()
        }
        Ok(Answer::Replay(first)) => {
            span.record("request_id", first.request_id.as_str());
            tracing::info!(status = first.status, "idempotent replay");
            replayed(app, first)
        }
        Err(ApiError::NotFound) => {
            // Anyone can send these (an unknown event, a wrong secret): counted, and
            // summarised in one line a second. Secrets are 256 random bits, so guessing is
            // hopeless and nobody is slowed down.
            metrics::counter!(crate::metrics::AUTH_REFUSED, "route" => "event").increment(1);
            static REFUSALS: LogBudget = LogBudget::new();
            if let Some(left_out) = REFUSALS.take() {
                tracing::info!(
                    status = 404,
                    more_since_last = left_out,
                    "event request refused: unknown event or wrong secret"
                );
            }
            ApiError::NotFound.into_response()
        }
        Err(error) => {
            tracing::info!(status = error.status().as_u16(), "event request refused");
            error.into_response()
        }
    }
}

/// The first request's answer again, marked as a replay, for a request whose idempotency
/// key was used before with the same body.
fn replayed(app: &App, first: Remembered) -> Response {
    let status = StatusCode::from_u16(first.status).unwrap_or(StatusCode::ACCEPTED);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        first.answer,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        "idempotent-replayed",
        header::HeaderValue::from_static("true"),
    );
    let location = app
        .config
        .url(&format!("/v1/requests/{}", first.request_id));
    if let Ok(value) = location.parse() {
        headers.insert(header::LOCATION, value);
    }
    response
}

async fn accept_event(
    app: &App,
    event_id: &str,
    secret: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    check_json_content_type(headers)?;
    let key = idempotency_key(headers)?;
    let event = intake::authenticate(app, event_id, secret).await?;
    let body = read_body(app, headers, body).await?;
    intake::accept(app, &event, &body, key.as_deref()).await
}

/// The `Idempotency-Key` header: 1 to 255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key.to_string()))
        }
        _ => Err(ApiError::BadHeader(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        )),
    }
}

async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, ApiError> {
    let limit = app.config.limits.max_body_bytes;
    let too_large = || {
        ApiError::Request(crate::request::RequestError::TooLarge(vec![
            crate::request::FieldError {
                field: String::new(),
                message: format!("the body is over the limit of {limit} bytes"),
            },
        ]))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > DRAIN_AT_MOST as u64) {
        // Too large to be worth reading: answered at once (the connection is closed).
        return Err(too_large());
    }
    let mut chunks = body.into_data_stream();
    let mut read = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let mut seen: usize = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            if caused_by_timeout(&e) {
                ApiError::BodyTimeout
            } else {
                too_large()
            }
        })?;
        seen = seen.saturating_add(chunk.len());
        if seen > DRAIN_AT_MOST {
            return Err(too_large());
        }
        // Past the limit the rest is read and dropped, so that the client, still
        // sending, reads the 413 instead of a reset connection.
        if seen <= limit {
            read.extend_from_slice(&chunk);
        }
    }
    if seen > limit {
        return Err(too_large());
    }
    Ok(read.into())
}

/// How much of a body over the limit is still read (and dropped) before the 413, so that
/// clients that stop at a broken pipe see the answer: a body declared larger than this
/// is refused unread.
const DRAIN_AT_MOST: usize = 32 * 1024 * 1024;

async fn status_by_bearer(
    State(app): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Json<RequestStatus>, ApiError> {
    match (path, bearer(&headers)) {
        (Ok(Path(request_id)), Some(secret)) => status(&app, &request_id, &secret).await,
        _ => Err(ApiError::NotFound),
    }
}

async fn status_by_path(
    State(app): Shared,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<RequestStatus>, ApiError> {
    let Ok(Path((request_id, secret))) = path else {
        return Err(ApiError::NotFound);
    };
    status(&app, &request_id, &secret).await
}

/// The status document, for the secret of the request's event.
async fn status(
    app: &App,
    request_id: &str,
    secret: &str,
) -> Result<Json<RequestStatus>, ApiError> {
    // An id no request can have is an unknown request. The secret is checked against the
    // request's event before the record (with its data) is read: an anonymous caller costs
    // one small read.
    let request_id = &RequestId::parse(request_id).map_err(|_| ApiError::NotFound)?;
    let event_id = app
        .ports
        .requests
        .event_of(request_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // A disabled event's requests stay readable: only the secret matters here.
    match intake::authenticate(app, &event_id, secret).await {
        Ok(_) | Err(ApiError::EventDisabled) => {}
        Err(e) => {
            if matches!(e, ApiError::NotFound) {
                metrics::counter!(crate::metrics::AUTH_REFUSED, "route" => "status").increment(1);
            }
            return Err(e);
        }
    }
    let progress = app
        .ports
        .requests
        .progress(request_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(crate::status::document(app, progress).await?))
}
