//! Herald's AWS adapters: every port on DynamoDB and SQS.
//!
//! [`Aws`] holds the SDK clients and table/queue names, built once per Lambda instance by
//! [`Aws::connect`]. It implements the event directory ([`events`]), the user store
//! ([`users`]), the request log ([`requests`]), the job queue ([`sqs`]), the intake
//! ([`intake`]), whose two-phase accept makes a request visible only once all its jobs are
//! on the queue, the operators' changes ([`admin`]), shared rate limits ([`throttle`]) and
//! each bot's send budget shared by the worker instances ([`budget`]). [`Aws::app`] wires
//! them into the core's [`App`]. The key design of each
//! table is described in `template.yaml` and in the module that owns it.
//!
//! # Layout
//!
//! - set-up: this file ([`Aws::connect`], [`Aws::app`]), [`settings`] (the `HERALD_*`
//!   names the functions read), [`local`] (tables and queues from `template.yaml`, for
//!   emulators);
//! - one module per port: [`events`], [`users`], [`requests`], [`intake`], [`sqs`],
//!   [`throttle`], [`budget`], [`admin`];
//! - [`job_runs`]: one run of a job at a time, though SQS may deliver it twice at once;
//! - [`open_requests`]: each bot's open bulk requests, the work ahead an ETA counts;
//! - [`emf`]: metrics as CloudWatch EMF lines.

pub mod admin;
pub mod budget;
pub mod emf;
pub mod events;
pub mod intake;
pub mod job_runs;
#[cfg(feature = "local")]
pub mod local;
pub mod open_requests;
pub mod requests;
pub mod settings;
pub mod sqs;
mod tat;
pub mod throttle;
pub mod users;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use herald_core::channels::Channels;
use herald_core::ports::Deliverer;
use herald_core::{App, Config, Ports, StoreError};
pub use settings::{AwsSettings, CallTimeouts};
use std::collections::HashMap;
use std::sync::Arc;

/// DynamoDB and SQS clients with the names of Herald's tables and queue.
#[derive(Clone)]
pub struct Aws {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub settings: AwsSettings,
}

impl Aws {
    /// Load the AWS configuration (region, credentials; endpoint override for emulators)
    /// once and build both clients, every call bounded by the settings' timeouts. A TLS
    /// set-up that fails is an error, never a silent default.
    pub async fn connect(settings: AwsSettings) -> Result<Aws, String> {
        use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider, TlsContext};
        let tls = TlsContext::builder()
            .with_trust_store(trust_store())
            .build()
            .map_err(|e| format!("the TLS set-up for DynamoDB and SQS failed: {e}"))?;
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .tls_context(tls)
            .build_https();
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(settings.timeouts.connect)
            .operation_attempt_timeout(settings.timeouts.attempt)
            .operation_timeout(settings.timeouts.operation)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https)
            .timeout_config(timeouts);
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared);
        if let Some(endpoint) = &settings.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(endpoint);
        }
        let mut sqs = aws_sdk_sqs::config::Builder::from(&shared);
        if let Some(endpoint) = &settings.sqs_endpoint {
            sqs = sqs.endpoint_url(endpoint);
        }
        Ok(Aws {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            settings,
        })
    }

    /// The core's [`App`] over these adapters (rate limits and chat times shared through
    /// DynamoDB), bots' connections checked against `channels`.
    pub fn app(&self, config: Config, deliverer: Arc<dyn Deliverer>, channels: Channels) -> App {
        let shared = Arc::new(self.clone());
        let mut ports = Ports::all(shared.clone(), shared.clone());
        // Several instances message one bot's users: each chat's time is kept on the user.
        ports.chat_claims = Some(shared);
        App::new(config, ports, deliverer, channels)
    }
}

/// Where systems keep their one file of every trusted CA: Amazon Linux (the Lambda
/// runtime), then Debian and Ubuntu.
const CA_BUNDLES: [&str; 2] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
];

/// The CAs the SDK's TLS client trusts: the system's bundle file (`SSL_CERT_FILE` if set,
/// else the first of [`CA_BUNDLES`] present), read once at init. Left to itself the client
/// reads that file and then every file of the system's certificate directories too — 292
/// more on a Debian machine, doubling the functions' init time (BENCHMARKS.md, 5). With
/// no bundle file found it falls back to exactly that.
fn trust_store() -> aws_smithy_http_client::tls::TrustStore {
    use aws_smithy_http_client::tls::TrustStore;
    let chosen = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    chosen
        .into_iter()
        .chain(CA_BUNDLES.iter().map(std::path::PathBuf::from))
        .find_map(|path| std::fs::read(path).ok())
        .map(|pem| TrustStore::empty().with_pem_certificate(pem))
        .unwrap_or_default()
}

impl Aws {
    /// Every item of `table` with these keys (strongly consistent, `projection` only), in
    /// `BatchGetItem` calls of 100 keys, retrying unprocessed keys.
    pub(crate) async fn batch_get(
        &self,
        table: &str,
        keys: Vec<Item>,
        projection: &str,
    ) -> Result<Vec<Item>, StoreError> {
        self.batch_get_named(table, keys, projection, &[]).await
    }

    /// [`Aws::batch_get`] with a projection that names attributes by placeholders
    /// (`#state`: reserved words), `names` giving them.
    pub(crate) async fn batch_get_named(
        &self,
        table: &str,
        keys: Vec<Item>,
        projection: &str,
        names: &[(&str, &str)],
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut builder = KeysAndAttributes::builder()
                .set_keys(Some(chunk.to_vec()))
                .projection_expression(projection)
                .consistent_read(true);
            for (placeholder, name) in names {
                builder = builder.expression_attribute_names(*placeholder, *name);
            }
            let mut request = builder.build().map_err(StoreError::new)?;
            loop {
                let out = self
                    .dynamodb
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(store_error)?;
                found.extend(
                    out.responses()
                        .and_then(|r| r.get(table))
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
                match out.unprocessed_keys().and_then(|u| u.get(table)) {
                    Some(rest) if !rest.keys().is_empty() => request = rest.clone(),
                    _ => break,
                }
            }
        }
        Ok(found)
    }
}

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Any SDK failure, with its whole context, as a retryable [`StoreError`].
/// Whether a DynamoDB call failed only because its condition did not hold.
pub(crate) fn condition_failed<E: aws_sdk_dynamodb::error::ProvideErrorMetadata>(
    e: &aws_sdk_dynamodb::error::SdkError<E>,
) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|code| code == "ConditionalCheckFailedException")
}

pub(crate) fn store_error<E: std::error::Error + 'static>(e: E) -> StoreError {
    StoreError::new(aws_sdk_dynamodb::error::DisplayErrorContext(e))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A string attribute of `item`, or "".
pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("")
}

/// A number attribute of `item`, or 0.
pub(crate) fn get_n(item: &Item, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
