//! The HTTP API as one axum [`Router`], served by `herald serve` and by the `api` Lambda.
//!
//! Every route is a [`Route`] in a table — the public ones in `public`, the admin ones
//! per resource in [`admin`] — and declares who may call it ([`Auth`]). The Router is built
//! from the table and applies each declaration itself, so no route exists without one and
//! none is protected by where it happens to be mounted. The OpenAPI document is checked
//! against the same table.

pub mod admin;
pub mod extract;
mod public;

pub use extract::{caused_by_timeout, has_admin_token};

use crate::ports::App;
use crate::problem::ApiError;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use axum::Router;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone (`/healthz`).
    Public,
    /// A caller holding the event's secret, in the path or as a bearer token: the handler
    /// checks it against the event's stored hash, since only the event knows it.
    EventSecret,
    /// The admin token (`Authorization: Bearer …`): checked before the handler runs, for
    /// every method of the path (a wrong method without the token is 401, not 405).
    Admin,
}

/// One path of the API: the methods it answers, who may call it, and its handler.
pub struct Route {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    pub auth: Auth,
    handler: MethodRouter<Arc<App>>,
}

impl Route {
    pub fn new(
        path: &'static str,
        methods: &'static [&'static str],
        auth: Auth,
        handler: MethodRouter<Arc<App>>,
    ) -> Route {
        Route {
            path,
            methods,
            auth,
            handler,
        }
    }
}

/// Every route of the API: the Router is built from this list, and the OpenAPI document
/// is checked against it, so neither can drift from the other.
pub fn routes() -> Vec<Route> {
    public::routes()
        .into_iter()
        .chain(admin::routes())
        .collect()
}

/// The whole HTTP API over `app`'s ports.
pub fn router(app: Arc<App>) -> Router {
    router_with(app, Vec::new())
}

/// The API with routes of the runtime's own (`herald serve`'s `/metrics`), declared and
/// applied the same way.
pub fn router_with(app: Arc<App>, extra: Vec<Route>) -> Router {
    let mut router = Router::new();
    for route in routes().into_iter().chain(extra) {
        let mut allow: Vec<&str> = route.methods.to_vec();
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        let allow = allow.join(", ");
        let mut handler = route
            .handler
            .fallback(move || async move { ApiError::MethodNotAllowed { allow } });
        if route.auth == Auth::Admin {
            handler = handler.layer(axum::middleware::from_fn_with_state(
                app.clone(),
                extract::require_admin_token,
            ));
        }
        router = router.route(route.path, handler);
    }
    router
        .fallback(|| async { ApiError::NotFound })
        .with_state(app)
        // A bug must still answer problem+json, not drop the connection.
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            ApiError::Internal.into_response()
        }))
}
