//! Lambda `api`: set up once, then serve the shared Router behind API Gateway (HTTP API
//! payload v2 and REST API v1 alike).

use herald_aws::{Aws, AwsSettings};
use herald_core::log_deliverer::LogDeliverer;
use herald_core::{Config, Limits};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let aws = Aws::connect(AwsSettings::from_env()?).await;
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
    let app = aws.app(config, Arc::new(LogDeliverer::default()));
    lambda_http::run(herald_core::router::router(Arc::new(app))).await
}
