//! A bot engine that answers with a redirect: the signed body is never sent on to where
//! the redirect points, and the delivery fails for good with reason `redirected`.

use herald_core::domain::DeliveryResult;
use herald_delivery::channels::engine::BotEngine;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A loopback server answering every connection with `answer`; counts connections.
async fn answering(answer: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 65536];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn a_redirect_is_a_permanent_failure_and_is_not_followed() {
    let ok = "HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_string();
    let (elsewhere, reached) = answering(ok).await;
    for status in [301, 302, 307, 308] {
        let redirect = format!(
            "HTTP/1.1 {status} Moved\r\nlocation: {elsewhere}/steal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let (engine, _) = answering(redirect).await;
        let http = herald_delivery::http_client(Duration::from_secs(5)).unwrap();
        let pacer = std::sync::Arc::new(herald_core::pace::Pacer::new());
        let result = BotEngine::new(http, &herald_delivery::DeliveryConfig::default(), &pacer)
            .show(&format!("{engine}/screen"), "key", b"{}".to_vec())
            .await;
        assert!(
            matches!(&result, DeliveryResult::Permanent { reason, .. } if reason == "redirected"),
            "{status}: {result:?}"
        );
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing followed a redirect"
    );
}
