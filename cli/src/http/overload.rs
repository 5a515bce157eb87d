//! What the server says past its caps: 503 with `Retry-After` and `Connection: close`,
//! counted in `herald_http_refused_total{cap}` and logged at most once a second.
//!
//! A connection past the connection cap is still accepted, its request's head read,
//! answered and closed (a client left in the listen backlog would only time out). Those answers are written by at most
//! [`ANSWERING`] tasks at once, each for at most [`ANSWER_FOR`]; past that a connection is
//! closed unanswered, so a flood cannot turn the refusals themselves into a pile.

use axum::response::{IntoResponse, Response};
use herald_core::log_budget::LogBudget;
use herald_core::problem::ApiError;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Refusals of connections written at once.
const ANSWERING: usize = 64;
/// How long a refused connection gets to take its answer…
const ANSWER_FOR: Duration = Duration::from_secs(1);
/// …of which at most this long to send its request's head (a client that sends nothing
/// is answered without it).
const HEAD_FOR: Duration = Duration::from_millis(250);

pub struct Refusals {
    answering: Arc<Semaphore>,
    logged: LogBudget,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            answering: Arc::new(Semaphore::new(ANSWERING)),
            logged: LogBudget::new(),
        }
    }
}

impl Refusals {
    /// Answer a request past the in-flight cap.
    pub fn refuse_request(&self) -> Response {
        self.count(
            "requests",
            "refused a request: requests in flight at their cap",
        );
        ApiError::Overloaded("requests in flight").into_response()
    }

    /// Answer and close a connection past the connection cap.
    pub fn refuse_connection(&self, mut stream: TcpStream) {
        self.count(
            "connections",
            "refused a connection: open connections at their cap",
        );
        let Ok(slot) = self.answering.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let answer = raw_overloaded("open connections").await;
            let _ = tokio::time::timeout(ANSWER_FOR, async {
                // Answer after the request's head (an answer before it is one that HTTP
                // clients refuse), then take what else the client sends until it closes:
                // closing with unread bytes would reset the connection and lose the answer.
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                let _ = tokio::time::timeout(HEAD_FOR, async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                })
                .await;
                stream.write_all(&answer).await?;
                stream.shutdown().await?;
                while stream.read(&mut buf).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
            drop(slot);
        });
    }

    /// Accepting failed (out of file descriptors, most often).
    pub fn accept_failed(&self, error: &std::io::Error) {
        metrics::counter!(herald_core::metrics::HTTP_REFUSED, "cap" => "files").increment(1);
        if let Some(more_since_last) = self.logged.take() {
            tracing::warn!(%error, more_since_last, "could not accept a connection");
        }
    }

    fn count(&self, cap: &'static str, line: &'static str) {
        metrics::counter!(herald_core::metrics::HTTP_REFUSED, "cap" => cap).increment(1);
        if let Some(more_since_last) = self.logged.take() {
            tracing::warn!(cap, more_since_last, "{line}");
        }
    }
}

/// The 503 of [`ApiError::Overloaded`] as bytes on the wire.
async fn raw_overloaded(what: &'static str) -> Vec<u8> {
    let (parts, body) = ApiError::Overloaded(what).into_response().into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let mut wire = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or_default()
    )
    .into_bytes();
    for (name, value) in &parts.headers {
        wire.extend_from_slice(name.as_str().as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value.as_bytes());
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    wire.extend_from_slice(&body);
    wire
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn past_the_refusals_being_written_a_connection_is_closed_unanswered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut clients = Vec::new();
        for _ in 0..ANSWERING + 6 {
            clients.push(TcpStream::connect(address).await.unwrap());
        }
        // All are refused before any client sends its head, so the first ANSWERING
        // refusals are still waiting for theirs when the rest arrive.
        let refusals = Refusals::default();
        for _ in 0..clients.len() {
            let (stream, _) = listener.accept().await.unwrap();
            refusals.refuse_connection(stream);
        }
        let mut answers = Vec::new();
        for mut client in clients {
            let _ = client
                .write_all(b"GET /v1/events/e HTTP/1.1\r\nHost: herald\r\n\r\n")
                .await;
            let mut read = Vec::new();
            let _ = client.read_to_end(&mut read).await;
            answers.push(String::from_utf8_lossy(&read).into_owned());
        }
        let answered: Vec<&String> = answers.iter().filter(|a| !a.is_empty()).collect();
        assert_eq!(answered.len(), ANSWERING, "{answers:?}");
        for answer in answered {
            let head = answer.to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 503"), "{answer}");
            assert!(head.contains("\r\nretry-after: 1\r\n"), "{answer}");
            assert!(head.contains("\r\nconnection: close\r\n"), "{answer}");
        }
        assert!(answers[ANSWERING..].iter().all(String::is_empty));
    }
}
