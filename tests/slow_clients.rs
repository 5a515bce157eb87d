//! Hostile and careless clients against the real `herald serve`: connections that send
//! nothing, headers a byte at a time, bodies that stall, more connections or requests
//! than the server's caps, a file limit lower than the connections asked for, and a
//! SIGTERM while such clients hang on. Every bound below is generous: these tests check
//! that the server closes, answers or stops, not how fast.

mod support;

use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use support::bots::create_event;
use support::{client, Event, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Well past every timeout the tests set.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Read until the server closes the connection; what it sent. Panics if it does not
/// close within [`CLOSED_WITHIN`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(CLOSED_WITHIN, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server left the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

/// Send a request's head a byte every 300 ms, for as long as the server takes it.
fn trickle(mut stream: TcpStream) -> tokio::task::JoinHandle<TcpStream> {
    tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: herald\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for byte in head.iter().cycle().take(200) {
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stream
    })
}

async fn healthy(server: &Server) -> bool {
    client()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

fn event(db: &Path) -> Event {
    create_event(db, "shop", &["--action", "screen", "--screen", "s"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_while_others_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let server = Server::start(
        &db,
        &[
            "--no-demo",
            "--header-timeout",
            "1",
            "--keep-alive-idle",
            "2",
        ],
    );
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(connect(&server).await);
    }
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(trickle(connect(&server).await));
    }
    assert!(healthy(&server).await, "answered beside them");
    // Answered once, then left idle on keep-alive.
    let mut kept_alive = connect(&server).await;
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await
        .unwrap();
    for stream in &mut idle {
        read_until_closed(stream).await;
    }
    let answered = read_until_closed(&mut kept_alive).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    for trickling in slow {
        let finished = tokio::time::timeout(CLOSED_WITHIN, trickling).await;
        assert!(finished.is_ok(), "a slow head was never cut off");
    }
    assert!(healthy(&server).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = event(&db);
    let server = Server::start(&db, &["--no-demo", "--body-timeout", "1"]);
    let mut stream = connect(&server).await;
    let head = format!(
        "POST /v1/events/{}/{} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"users\": ",
        event.id, event.secret
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("/problems/request-timeout"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_a_client_is_answered_503_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let server = Server::start(
        &db,
        &[
            "--no-demo",
            "--max-connections",
            "5",
            "--header-timeout",
            "60",
        ],
    );
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect(&server).await);
    }
    // Let the server take them in before the one over the cap comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut over = connect(&server).await;
    over.write_all(b"GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut over).await.to_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.contains("/problems/overloaded"), "{answer}");
    drop(held);
    let deadline = std::time::Instant::now() + CLOSED_WITHIN;
    while !healthy(&server).await {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_request_cap_a_request_is_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = event(&db);
    let server = Server::start(&db, &["--no-demo", "--max-requests", "2"]);
    // Two requests in flight: their bodies never come.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&server).await;
        let head = format!(
            "POST /v1/events/{}/{} HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{",
            event.id, event.secret
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let response = client()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["connection"], "close");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/overloaded");
    drop(stalled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_low_file_limit_connections_past_it_are_refused_not_left_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    // 256 files: the server allows 128 connections and keeps the rest for itself.
    let server = Server::start_with_file_limit(&db, &["--no-demo", "--header-timeout", "3"], 256);
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect(&server).await);
    }
    let refused = tokio::time::timeout(CLOSED_WITHIN, async {
        client()
            .get(server.url("/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    })
    .await;
    assert!(refused.is_ok(), "a request hung");
    // Answered 503 at the cap, served once the idle ones were closed, or — while every
    // refusal slot is taken by the idle flood — closed at once: never a hang.
    match refused.unwrap() {
        Ok(status) => assert!(matches!(status, 503 | 200), "answered {status}"),
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    drop(idle);
    let deadline = std::time::Instant::now() + CLOSED_WITHIN;
    while !healthy(&server).await {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_is_not_held_up_by_slow_or_idle_clients() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let server = Server::start(&db, &["--no-demo"]);
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(connect(&server).await);
    }
    let mut slow = Vec::new();
    for _ in 0..5 {
        slow.push(trickle(connect(&server).await));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // terminate() waits at most 30 s: far less than the slow clients would take.
    assert!(server.terminate().success());
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_64_kib_is_refused_431() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let server = Server::start(&db, &["--no-demo"]);
    let mut stream = connect(&server).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: herald\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.200}");
    assert!(healthy(&server).await);
}
