//! The `api` Lambda's wiring, shared by its binary and the emulator tests: the core's
//! Router over the AWS adapters.

use herald_aws::Aws;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::{Config, Limits};
use std::sync::Arc;

/// Configuration from the function's environment (`HERALD_MAX_USERS`), defaults otherwise.
pub fn config_from_env() -> Config {
    let mut config = Config::default();
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
    herald_core::router::router(Arc::new(aws.app(config, Arc::new(LogDeliverer::default()))))
}
