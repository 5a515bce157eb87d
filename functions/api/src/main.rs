//! Lambda `api`: set up once (configuration, SDK clients), then serve the shared Router
//! behind API Gateway (HTTP API payload v2 and REST API v1 alike).

use herald_aws::{Aws, AwsSettings};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let emf = herald_aws::emf::Emf::install();
    let aws = Aws::connect(AwsSettings::from_env()?).await?;
    let router = herald_api::router(&aws, herald_api::config_from_env()?);
    lambda_http::run(herald_api::with_metrics(router, emf)).await
}
