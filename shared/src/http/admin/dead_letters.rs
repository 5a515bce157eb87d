//! `/v1/admin/dead-letters`: list the jobs kept dead, redrive them, purge them.

use super::super::extract::{document, QueryOf, Shared};
use super::super::{Auth, Route};
use super::page_size;
use crate::admin::Selection;
use crate::problem::ApiError;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;

pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/v1/admin/dead-letters",
            &["GET"],
            Auth::Admin,
            get(list_dead_letters),
        ),
        Route::new(
            "/v1/admin/dead-letters/redrive",
            &["POST"],
            Auth::Admin,
            post(redrive),
        ),
        Route::new(
            "/v1/admin/dead-letters/purge",
            &["POST"],
            Auth::Admin,
            post(purge),
        ),
    ]
}

#[derive(Deserialize)]
struct DeadFilter {
    limit: Option<usize>,
}

async fn list_dead_letters(
    State(app): Shared,
    QueryOf(filter): QueryOf<DeadFilter>,
) -> Result<Response, ApiError> {
    let limit = page_size(filter.limit, 100, 1000)?;
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
