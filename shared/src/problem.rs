//! Every error the HTTP API answers, mapped to `application/problem+json` (RFC 9457) here
//! and nowhere else.
//!
//! Handlers return [`ApiError`]; its `IntoResponse` picks the status, the problem `type`
//! and `title`, the `errors[]` field list for validation failures, and the `Retry-After`
//! and `Allow` headers where they apply.

use crate::error::StoreError;
use crate::request::{FieldError, RequestError};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a client should wait after a 503.
/// Seconds a bot's client is told to wait while its backlog drains.
const BACKLOG_RETRY_AFTER: u64 = 30;

const UNAVAILABLE_RETRY_AFTER: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unknown route, unknown event or request, or wrong secret: one answer for all.
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("unsupported media type")]
    UnsupportedMediaType { got: Option<String> },
    #[error("invalid request")]
    Request(RequestError),
    /// Right secret, but the event is switched off.
    #[error("event disabled")]
    EventDisabled,
    /// An admin route without the admin token, or with a wrong one.
    #[error("unauthorized")]
    Unauthorized,
    /// The change conflicts with what exists (the message says how).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The event's rate limit is used up; retry after this long.
    #[error("rate limited")]
    RateLimited { wait: std::time::Duration },
    /// An `Idempotency-Key` reused with a different body.
    #[error("idempotency key reused")]
    IdempotencyConflict,
    /// A header the request carries is not valid (the message says which and why).
    #[error("bad header: {0}")]
    BadHeader(String),
    #[error(transparent)]
    Unavailable(#[from] StoreError),
    /// The server is at one of its caps (connections, requests in flight); nothing was
    /// done. Answered with `Retry-After` and `Connection: close`.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// The bot has more jobs waiting than `Config::max_backlog_jobs`: nothing accepted
    /// until it drains.
    #[error("the bot's backlog is full")]
    Backlogged,
    /// The body did not arrive within the server's body read timeout.
    #[error("body read timed out")]
    BodyTimeout,
    /// A bug in Herald (a handler panicked); never caused by what a client sent.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// A 422 naming the fields at fault, for admin documents.
    pub fn invalid(errors: Vec<(String, String)>) -> ApiError {
        ApiError::Request(RequestError::Invalid(
            errors
                .into_iter()
                .map(|(field, message)| FieldError { field, message })
                .collect(),
        ))
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::Request(e)
    }
}

/// The error a request body reports when it did not arrive within the server's body read
/// timeout; reading the body answers [`ApiError::BodyTimeout`] for it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

#[derive(Serialize)]
struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Request(RequestError::Malformed { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Request(RequestError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Request(RequestError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::EventDisabled => StatusCode::FORBIDDEN,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadHeader(_) => StatusCode::BAD_REQUEST,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Backlogged => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem(self) -> Problem {
        let status = self.status().as_u16();
        let (slug, title) = self.heading();
        let (detail, errors) = self.detail();
        Problem {
            kind: format!("/problems/{slug}"),
            title,
            status,
            detail,
            errors,
        }
    }

    /// The problem's type slug and title.
    fn heading(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::NotFound => ("not-found", "Not found"),
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::UnsupportedMediaType { .. } => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::Request(RequestError::Malformed { .. }) => {
                ("malformed-json", "Malformed JSON")
            }
            ApiError::Request(RequestError::TooLarge(_)) => ("too-large", "Payload too large"),
            ApiError::Request(RequestError::Invalid(_)) => ("invalid-request", "Invalid request"),
            ApiError::EventDisabled => ("event-disabled", "Event disabled"),
            ApiError::Unauthorized => ("unauthorized", "Unauthorized"),
            ApiError::Conflict(_) => ("conflict", "Conflict"),
            ApiError::RateLimited { .. } => ("rate-limited", "Too many requests"),
            ApiError::IdempotencyConflict => ("idempotency-conflict", "Idempotency key reused"),
            ApiError::BadHeader(_) => ("bad-header", "Bad header"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
            ApiError::Overloaded(_) => ("overloaded", "Service unavailable"),
            ApiError::Backlogged => ("backlogged", "Service unavailable"),
            ApiError::BodyTimeout => ("request-timeout", "Request timeout"),
            ApiError::Internal => ("internal", "Internal error"),
        }
    }

    /// The problem's detail and its field errors.
    fn detail(self) -> (String, Vec<FieldError>) {
        match self {
            ApiError::NotFound => ("no such resource, or the secret does not match".to_string(), vec![]),
            ApiError::MethodNotAllowed { allow } => (format!("this resource allows {allow}"), vec![]),
            ApiError::UnsupportedMediaType { got } => (match got {
                    Some(got) => format!("Content-Type must be application/json, not {got}"),
                    None => "Content-Type must be application/json".to_string(),
                }, vec![]),
            ApiError::Request(RequestError::Malformed {
                line,
                column,
                message,
            }) => (format!("the body is not valid JSON at line {line}, column {column}: {message}"), vec![]),
            ApiError::Request(RequestError::TooLarge(errors)) => (summary(&errors, "over a size limit"), errors),
            ApiError::Request(RequestError::Invalid(errors)) => (summary(&errors, "the request is not valid"), errors),
            ApiError::EventDisabled => ("this event is disabled; nothing was done".to_string(), vec![]),
            ApiError::Unauthorized => ("this route needs the admin token: Authorization: Bearer <token>".to_string(), vec![]),
            ApiError::Conflict(message) => (message, vec![]),
            ApiError::RateLimited { wait } => (format!(
                    "this event's rate limit is used up; nothing was accepted, retry in {} s",
                    crate::throttle::retry_after_secs(wait)
                ), vec![]),
            ApiError::IdempotencyConflict => ("this Idempotency-Key was used with a different body in the last 24 hours; nothing was accepted".to_string(), vec![]),
            ApiError::BadHeader(message) => (message, vec![]),
            ApiError::Unavailable(_) => ("the request could not be recorded; nothing was accepted, retry later".to_string(), vec![]),
            ApiError::Overloaded(what) => (format!("the server is at its limit of {what}; nothing was done, retry later"), vec![]),
            ApiError::Backlogged => (format!(
                    "this bot has too many jobs waiting; nothing was accepted, retry in {BACKLOG_RETRY_AFTER} s"
                ), vec![]),
            ApiError::BodyTimeout => ("the body did not arrive in time; nothing was accepted".to_string(), vec![]),
            ApiError::Internal => ("Herald failed on this request; whether it was accepted is unknown".to_string(), vec![]),
        }
    }
}

fn summary(errors: &[FieldError], fallback: &str) -> String {
    match errors {
        [] => fallback.to_string(),
        [one] if one.field.is_empty() => one.message.clone(),
        [one] => format!("{}: {}", one.field, one.message),
        [one, rest @ ..] => format!(
            "{}: {} (and {} more)",
            if one.field.is_empty() {
                "body"
            } else {
                &one.field
            },
            one.message,
            rest.len()
        ),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let extra: Option<(header::HeaderName, HeaderValue)> = match &self {
            ApiError::Unavailable(e) => {
                tracing::warn!(error = %e, "backend unavailable");
                Some((
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_AFTER),
                ))
            }
            ApiError::MethodNotAllowed { allow } => HeaderValue::from_str(allow)
                .ok()
                .map(|v| (header::ALLOW, v)),
            ApiError::RateLimited { wait } => Some((
                header::RETRY_AFTER,
                HeaderValue::from(crate::throttle::retry_after_secs(*wait)),
            )),
            ApiError::Overloaded(_) => Some((
                header::RETRY_AFTER,
                HeaderValue::from(UNAVAILABLE_RETRY_AFTER),
            )),
            ApiError::Backlogged => {
                Some((header::RETRY_AFTER, HeaderValue::from(BACKLOG_RETRY_AFTER)))
            }
            ApiError::Unauthorized => Some((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"herald-admin\""),
            )),
            _ => None,
        };
        // After these the connection is closed: it is what the server must shed.
        let close = matches!(self, ApiError::Overloaded(_) | ApiError::BodyTimeout);
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response();
        if let Some((name, value)) = extra {
            response.headers_mut().insert(name, value);
        }
        if close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
