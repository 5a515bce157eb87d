//! The SDK's HTTPS client as the Lambdas build it: it trusts the CA bundle it is given (here
//! `SSL_CERT_FILE`, a test CA in `tests/tls/`) and nothing else. A local HTTPS server
//! answers as DynamoDB would; one with a certificate from that CA is reached, one with an
//! unrelated self-signed certificate is refused.

use herald_aws::{Aws, AwsSettings};
use http_body_util::Full;
use hyper::body::Bytes;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

/// An HTTPS server on 127.0.0.1 with `cert`/`key`, answering every request with an empty
/// DynamoDB `ListTables` result. Its port.
async fn https_server(cert: &str, key: &str) -> u16 {
    let certs = CertificateDer::pem_file_iter(fixture(cert))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture(key)).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return; // the client refused the certificate
                };
                let service = hyper::service::service_fn(|_request| async {
                    hyper::Response::builder()
                        .header("content-type", "application/x-amz-json-1.0")
                        .body(Full::new(Bytes::from_static(br#"{"TableNames":[]}"#)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

async fn client(port: u16) -> Aws {
    Aws::connect(AwsSettings {
        users_table: "users".into(),
        events_table: "events".into(),
        requests_table: "requests".into(),
        queue_url: "https://localhost:1/queue".into(),
        transactional_queue_url: None,
        dlq_url: "https://localhost:1/dlq".into(),
        user_shards: 16,
        region: Some("us-east-1".into()),
        dynamodb_endpoint: Some(format!("https://localhost:{port}")),
        sqs_endpoint: None,
        timeouts: Default::default(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_sdk_trusts_the_given_ca_bundle_and_nothing_else() {
    // This test binary's only test: nothing else reads the environment meanwhile.
    std::env::set_var("SSL_CERT_FILE", fixture("ca.pem"));
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");

    let trusted = client(https_server("server.pem", "server.key").await).await;
    let tables = trusted.dynamodb.list_tables().send().await;
    assert!(
        tables.is_ok(),
        "a server with a certificate from the bundle's CA is reached: {tables:?}"
    );

    let stranger = client(https_server("stranger.pem", "stranger.key").await).await;
    let refused = stranger.dynamodb.list_tables().send().await;
    assert!(
        refused.is_err(),
        "a certificate from outside the bundle is refused"
    );
}
