//! The `api` Lambda's wiring, shared by its binary and the emulator tests: the core's
//! Router over the AWS adapters.

use herald_aws::emf::Emf;
use herald_aws::Aws;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::{Config, Limits};
use std::sync::Arc;

/// Configuration from the function's environment (`HERALD_MAX_USERS`,
/// `HERALD_ADMIN_TOKEN_SHA256`, `HERALD_PUBLIC_URL`), defaults otherwise.
pub fn config_from_env() -> Config {
    let mut config = Config {
        admin_token_hash: std::env::var("HERALD_ADMIN_TOKEN_SHA256")
            .ok()
            .and_then(|hex| herald_core::secret::parse_hash(&hex)),
        public_base_url: std::env::var("HERALD_PUBLIC_URL")
            .ok()
            .filter(|url| !url.is_empty()),
        ..Config::default()
    };
    if let Some(max_users) = std::env::var("HERALD_MAX_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.limits = Limits {
            max_users,
            ..Limits::default()
        };
    }
    config
}

/// The HTTP API over `aws`.
pub fn router(aws: &Aws, config: Config) -> axum::Router {
    herald_core::http::router(Arc::new(aws.app(
        config,
        Arc::new(LogDeliverer::default()),
        herald_delivery::CHANNELS,
    )))
}

/// `router`, writing the metrics of each request as EMF lines once it is answered.
pub fn with_metrics(router: axum::Router, emf: Emf) -> axum::Router {
    router.layer(axum::middleware::map_response(
        move |response: axum::response::Response| {
            emf.flush();
            async move { response }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_sets_the_admin_token_hash_public_url_and_user_limit() {
        let hash = hex::encode(herald_core::secret::hash("the-admin-token"));
        std::env::set_var("HERALD_ADMIN_TOKEN_SHA256", &hash);
        std::env::set_var("HERALD_PUBLIC_URL", "https://herald.example.com");
        std::env::set_var("HERALD_MAX_USERS", "50");
        let config = config_from_env();
        assert_eq!(
            config.admin_token_hash,
            Some(herald_core::secret::hash("the-admin-token"))
        );
        assert_eq!(config.url("/x"), "https://herald.example.com/x");
        assert_eq!(config.limits.max_users, 50);
        // A malformed hash leaves the admin API closed rather than open.
        std::env::set_var("HERALD_ADMIN_TOKEN_SHA256", "not-hex");
        assert_eq!(config_from_env().admin_token_hash, None);
    }
}
