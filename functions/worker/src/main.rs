//! Lambda `worker`: set up once, then hand every SQS batch to [`herald_worker::handle`].

use herald_aws::{Aws, AwsSettings};
use herald_core::log_deliverer::LogDeliverer;
use herald_core::Config;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let aws = Aws::connect(AwsSettings::from_env()?).await;
    let app = aws.app(Config::default(), Arc::new(LogDeliverer::default()));
    let (app, aws) = (&app, &aws);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        Ok::<_, Error>(herald_worker::handle(app, aws, event.payload).await)
    }))
    .await
}
