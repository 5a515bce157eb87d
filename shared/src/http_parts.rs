//! What the public and the admin routes share: the route table's entry, the application
//! state they are handed, and the parts of a request both read (the bearer token, the JSON
//! content type, a body read that timed out).

use crate::ports::App;
use crate::problem::ApiError;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::MethodRouter;
use std::sync::Arc;

pub(crate) type Shared = State<Arc<App>>;

/// One path of the API with the methods it answers.
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    pub(crate) handler: MethodRouter<Arc<App>>,
}

impl Route {
    pub(crate) fn new(
        path: &'static str,
        methods: &'static [&'static str],
        handler: MethodRouter<Arc<App>>,
    ) -> Route {
        Route {
            path,
            methods,
            handler,
        }
    }
}

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
