//! Lambda `worker`: set up once, then hand every SQS batch to [`herald_worker::handle`].

use herald_aws::{Aws, AwsSettings};
use herald_delivery::dispatch::Dispatcher;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let emf = herald_aws::emf::Emf::install();
    let aws = Aws::connect(AwsSettings::from_env()?).await?;
    let settings = herald_aws::settings::shared_settings_from_env()?;
    let delivery = herald_worker::delivery_config(&settings);
    let deliverer = Arc::new(Dispatcher::with_pacer(
        Arc::new(aws.clone()),
        &delivery,
        herald_worker::pacer(&aws),
    )?);
    let app = aws.app(
        herald_worker::config_with(&settings),
        deliverer,
        herald_delivery::CHANNELS,
    );
    let timeout = delivery.timeout;
    let (app, aws, emf) = (&app, &aws, &emf);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| async move {
        let stop = herald_core::cutoff::Stop {
            deadline: herald_worker::start_deliveries_until(
                event.context.deadline,
                herald_core::domain::now_ms(),
                timeout,
            ),
            ..herald_core::cutoff::Stop::never()
        };
        let answer = herald_worker::handle_until(app, aws, event.payload, &stop).await;
        emf.flush();
        Ok::<_, Error>(answer)
    }))
    .await
}
