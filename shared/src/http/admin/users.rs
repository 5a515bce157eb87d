//! `/v1/admin/bots/{bot}/users`: streamed imports, and one user's state by platform id or
//! state id.

use super::super::extract::{Param, Shared};
use super::super::{Auth, Route};
use super::check_id;
use crate::domain::UserRef;
use crate::ids::BotId;
use crate::import;
use crate::problem::ApiError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;

pub(super) fn routes() -> Vec<Route> {
    vec![
        Route::new(
            "/v1/admin/bots/{bot_id}/users",
            &["POST"],
            Auth::Admin,
            post(import_users),
        ),
        Route::new(
            "/v1/admin/bots/{bot_id}/users/{platform}/{user_id}",
            &["GET", "DELETE"],
            Auth::Admin,
            get(show_user).delete(delete_user),
        ),
    ]
}

async fn import_users(
    State(app): Shared,
    Param(bot_id): Param<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bot_id = check_id("bot_id", &bot_id)?;
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

/// `{platform}/{id}`: a platform id, or with platform `bm` a state id; by the rules of
/// [`crate::ids`], and 404 when they refuse it (no such user can exist).
fn user_ref(platform: String, id: String) -> Result<UserRef, ApiError> {
    use crate::ids::{BmId, Platform, PlatformId};
    if platform == "bm" {
        let id = BmId::parse(id).map_err(|_| ApiError::NotFound)?;
        Ok(UserRef::Bm {
            id: id.into_string(),
        })
    } else {
        let platform = Platform::parse(platform).map_err(|_| ApiError::NotFound)?;
        let id = PlatformId::parse(id).map_err(|_| ApiError::NotFound)?;
        Ok(UserRef::Platform {
            platform: platform.into_string(),
            id: id.into_string(),
        })
    }
}

async fn show_user(
    State(app): Shared,
    Param((bot_id, platform, id)): Param<(BotId, String, String)>,
) -> Result<Response, ApiError> {
    let user = app
        .ports
        .admin
        .users
        .user_document(&bot_id, &user_ref(platform, id)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(user).into_response())
}

async fn delete_user(
    State(app): Shared,
    Param((bot_id, platform, id)): Param<(BotId, String, String)>,
) -> Result<Response, ApiError> {
    if app
        .ports
        .admin
        .users
        .delete_user(&bot_id, &user_ref(platform, id)?)
        .await?
    {
        tracing::info!(bot_id = %bot_id, "user deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound)
    }
}
