//! `/v1/admin/requests`: an event's requests newest first, one request's status, cancel.

use super::super::extract::{Param, QueryOf, Shared};
use super::super::{Auth, Route};
use super::page_size;
use crate::admin::Cancellation;
use crate::ids::{EventId, RequestId};
use crate::problem::ApiError;
use crate::status::RequestStatus;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;

pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/v1/admin/requests",
            &["GET"],
            Auth::Admin,
            get(list_requests),
        ),
        Route::new(
            "/v1/admin/requests/{request_id}",
            &["GET"],
            Auth::Admin,
            get(show_request),
        ),
        Route::new(
            "/v1/admin/requests/{request_id}/cancel",
            &["POST"],
            Auth::Admin,
            post(cancel_request),
        ),
    ]
}

#[derive(Deserialize)]
struct RequestFilter {
    event_id: EventId,
    before: Option<RequestId>,
    limit: Option<usize>,
}

async fn list_requests(
    State(app): Shared,
    QueryOf(filter): QueryOf<RequestFilter>,
) -> Result<Response, ApiError> {
    let limit = page_size(filter.limit, 20, 100)?;
    let found = app
        .ports
        .admin
        .requests
        .recent_requests(&filter.event_id, filter.before.as_ref(), limit)
        .await?;
    let next = (found.len() == limit)
        .then(|| found.last().map(|p| p.record.id.clone()))
        .flatten();
    let mut requests: Vec<RequestStatus> = Vec::with_capacity(found.len());
    for progress in found {
        requests.push(crate::status::document(&app, progress).await?);
    }
    Ok(Json(serde_json::json!({ "requests": requests, "next_before": next })).into_response())
}

async fn show_request(
    State(app): Shared,
    Param(request_id): Param<RequestId>,
) -> Result<Response, ApiError> {
    let progress = app
        .ports
        .requests
        .progress(&request_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(crate::status::document(&app, progress).await?).into_response())
}

async fn cancel_request(
    State(app): Shared,
    Param(request_id): Param<RequestId>,
) -> Result<Response, ApiError> {
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
            show_request(State(app), Param(request_id)).await
        }
        Cancellation::NotFound => Err(ApiError::NotFound),
        Cancellation::Final(state) => Err(ApiError::Conflict(format!(
            "request {request_id} is {}; only a pending request can be cancelled",
            state.as_str()
        ))),
    }
}
