//! What routes take from a request, in one place: the application state, the bearer
//! token, the admin token (checked in constant time), path parameters (a mismatch is 404),
//! queries and JSON documents (415 / 413 / 400 / 422 as the contract says), the JSON
//! content type, and whether a body read timed out.

/// Largest admin JSON document (user imports are streamed and have no overall limit).
const MAX_ADMIN_BODY: usize = 1024 * 1024;

use crate::ports::App;
use crate::problem::ApiError;
use crate::request::RequestError;
use crate::secret;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::Response;
use std::sync::Arc;

pub(crate) type Shared = State<Arc<App>>;

pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
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

/// Whether reading a body failed because the server's body read timeout struck.
pub fn caused_by_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<crate::problem::BodyTimedOut>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Whether `headers` carry the admin token (`Authorization: Bearer …`), in constant time.
pub fn has_admin_token(config: &crate::Config, headers: &HeaderMap) -> bool {
    let presented = bearer(headers).unwrap_or_default();
    let stored = config.admin_token_hash;
    // Hash and compare even with no token configured, so every refusal takes as long.
    let matches = secret::verify(&presented, &stored.unwrap_or([0u8; 32]));
    matches && stored.is_some() && !presented.is_empty()
}

/// The caller holds the admin token; as an extractor, a request without it is refused
/// (401) before anything else is read.
pub struct AdminToken;

impl axum::extract::FromRequestParts<Arc<App>> for AdminToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        if has_admin_token(&app.config, &parts.headers) {
            Ok(AdminToken)
        } else {
            tracing::info!(path = %parts.uri.path(), status = 401, "admin request refused");
            Err(ApiError::Unauthorized)
        }
    }
}

/// What the route table puts in front of every [`Auth::Admin`](super::Auth::Admin) route.
pub(crate) async fn require_admin_token(
    _: AdminToken,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    next.run(request).await
}

/// The document of a PATCH: as [`document`], but a body is required (a change with no
/// body is a client's mistake, not "change nothing"): 422 without one.
pub(crate) async fn changes_document<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    read_document(headers, body, false).await
}

/// A JSON document of an admin request; an empty body reads as `{}`.
pub(crate) async fn document<T: serde::de::DeserializeOwned>(
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
            if caused_by_timeout(&e) {
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
        check_json_content_type(headers)?;
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

/// A path parameter, or parameters as a tuple; one that does not fit is 404 (the route
/// matched, the resource cannot exist).
pub(crate) struct Param<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Param<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Param(value))
            .map_err(|_| ApiError::NotFound)
    }
}

/// A query string; one that does not fit is 422 naming `query`.
pub(crate) struct QueryOf<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for QueryOf<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| QueryOf(value))
            .map_err(|e| ApiError::invalid(vec![("query".into(), e.body_text())]))
    }
}
