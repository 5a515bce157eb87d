//! The HTTP API as one axum [`Router`], served by `herald serve` and by the `api` Lambda.
//!
//! Routes: `POST /v1/events/{event_id}/{secret}` and `POST /v1/events/{event_id}` (with
//! `Authorization: Bearer <secret>`) accept events; `GET /v1/requests/{request_id}` (bearer)
//! and `GET /v1/requests/{request_id}/{secret}` answer the status document; `GET /healthz`.
//! Checks run cheapest first — content type, secret, body size, JSON, contract — and every
//! refusal is an [`ApiError`], so each answer is problem+json from one place.

use crate::intake::{self, Answer};
use crate::ports::App;
use crate::problem::ApiError;
use crate::status::RequestStatus;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;

type Shared = State<Arc<App>>;

/// The whole HTTP API over `app`'s ports.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/v1/events/{event_id}/{secret}",
            only_post(post(event_by_path)),
        )
        .route("/v1/events/{event_id}", only_post(post(event_by_bearer)))
        .route("/v1/requests/{request_id}", only_get(get(status_by_bearer)))
        .route(
            "/v1/requests/{request_id}/{secret}",
            only_get(get(status_by_path)),
        )
        .route("/healthz", only_get(get(|| async { "ok" })))
        .fallback(|| async { ApiError::NotFound })
        .with_state(app)
        // A bug must still answer problem+json, not drop the connection.
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::Internal.into_response()
        }))
}

fn only_post(route: MethodRouter<Arc<App>>) -> MethodRouter<Arc<App>> {
    route.fallback(|| async { ApiError::MethodNotAllowed { allow: "POST" } })
}

fn only_get(route: MethodRouter<Arc<App>>) -> MethodRouter<Arc<App>> {
    route.fallback(|| async { ApiError::MethodNotAllowed { allow: "GET, HEAD" } })
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
    let result = accept_event(app, event_id, secret, headers, body).await;
    match result {
        Ok(Answer::Accepted(accepted)) => {
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
            tracing::info!(
                event_id,
                targeted = dry.targeted,
                status = 200,
                "event dry run"
            );
            (StatusCode::OK, Json(dry)).into_response()
        }
        Err(error) => {
            tracing::info!(
                event_id,
                status = error.status().as_u16(),
                "event request refused"
            );
            error.into_response()
        }
    }
}

async fn accept_event(
    app: &App,
    event_id: &str,
    secret: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    check_json_content_type(headers)?;
    let event = intake::authenticate(app, event_id, secret).await?;
    let body = read_body(app, headers, body).await?;
    intake::accept(app, &event, &body).await
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType { got: None });
    };
    let raw = String::from_utf8_lossy(value.as_bytes()).to_string();
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType { got: Some(raw) })
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
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

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
    let progress = app
        .requests
        .progress(request_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // A disabled event's requests stay readable: only the secret matters here.
    match intake::authenticate(app, &progress.record.event_id, secret).await {
        Ok(_) | Err(ApiError::EventDisabled) => Ok(Json(progress.into())),
        Err(e) => Err(e),
    }
}
