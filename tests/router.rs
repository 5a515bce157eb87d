//! The Router in-process over the SQLite adapters: the HTTP contract's framing (media
//! types, body limits, methods, WAL and group commit under accepts). The answers both
//! runtimes share (202s, 404s, 422s, dry runs, the status document) are the behaviour
//! suite's (`tests/behaviour.rs`).

mod support;

use herald_core::domain::{Outcome, RequestRecord, RequestState};
use herald_core::ids::{EventId, RequestId};
use herald_core::ports::{Expansion, RequestLog, RequestProgress};
use herald_core::StoreError;
use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::Harness;
use tower::ServiceExt;

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn call(h: &Harness, request: Request<Body>) -> Answer {
    let response = herald_core::http::router(h.app.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn post(uri: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn post_json(uri: &str, body: Value) -> Request<Body> {
    post(uri, body.to_string())
}

async fn setup() -> (Harness, String, String) {
    let h = Harness::new();
    let event = h.event("shop").await;
    h.users("shop", "tg", ["123456".to_string(), "2".to_string()])
        .await;
    let url = format!("/v1/events/{}/{}", event.event_id, event.secret);
    (h, url, event.secret)
}

fn assert_problem(answer: &Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(answer.body["status"], status.as_u16());
    assert!(answer.body["type"].is_string() && answer.body["title"].is_string());
    assert!(answer.body["detail"].is_string());
}

fn requests_count(h: &Harness) -> i64 {
    h.sql()
        .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
        .unwrap()
}

fn jobs_count(h: &Harness) -> i64 {
    h.sql()
        .query_row("SELECT count(*) FROM jobs", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn explicit_users_are_split_into_bounded_deliver_jobs() {
    let (h, url, _) = setup().await;
    let users: Vec<String> = (0..250).map(|i| i.to_string()).collect();
    let answer = call(
        &h,
        post_json(&url, json!({"platform": "tg", "users": users})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.body["targeted"], 250);
    assert_eq!(jobs_count(&h), 3, "100 + 100 + 50 users");
}

#[tokio::test]
async fn everyone_is_accepted_without_enumerating_users() {
    let (h, url, _) = setup().await;
    let answer = call(
        &h,
        post_json(&url, json!({"platform": "tg", "users": "everyone"})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    // One expand job per shard, no deliver jobs yet.
    let kinds: Vec<String> = h
        .sql()
        .prepare("SELECT DISTINCT kind FROM jobs")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(kinds, ["expand"]);
}

#[tokio::test]
async fn content_type_must_be_json_with_any_charset() {
    let (h, url, _) = setup().await;
    let body = json!({"platform": "tg", "users": ["1"]}).to_string();
    let none = Request::post(&url).body(Body::from(body.clone())).unwrap();
    assert_problem(&call(&h, none).await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let text = Request::post(&url)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(body.clone()))
        .unwrap();
    assert_problem(&call(&h, text).await, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let charset = Request::post(&url)
        .header(header::CONTENT_TYPE, "Application/JSON; charset=UTF-8")
        .body(Body::from(body))
        .unwrap();
    assert_eq!(call(&h, charset).await.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bodies_over_1_mib_are_413_declared_or_streamed() {
    let (h, url, _) = setup().await;
    let big = format!(
        "{{\"platform\":\"tg\",\"users\":[\"1\"],\"pad\":\"{}\"}}",
        "x".repeat(1024 * 1024)
    );
    let declared = call(&h, post(&url, big.clone())).await;
    assert_problem(&declared, StatusCode::PAYLOAD_TOO_LARGE);
    // No Content-Length: a streamed body is cut at the limit.
    let stream = chunked(big.into_bytes());
    let streamed = call(&h, post(&url, Body::from_stream(stream))).await;
    assert_problem(&streamed, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(requests_count(&h), 0);
}

/// A body of 64 KiB chunks without a declared length.
fn chunked(bytes: Vec<u8>) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    futures::stream::iter(chunks)
}

#[tokio::test]
async fn data_over_256_kib_is_413_naming_the_field() {
    let (h, url, _) = setup().await;
    let data = json!({"blob": "x".repeat(256 * 1024)});
    let answer = call(
        &h,
        post_json(
            &url,
            json!({"platform": "tg", "users": ["1"], "data": data}),
        ),
    )
    .await;
    assert_problem(&answer, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.body["errors"][0]["field"], "data");
}

#[tokio::test]
async fn malformed_json_is_400_with_line_and_column() {
    let (h, url, _) = setup().await;
    let answer = call(&h, post(&url, "{\"platform\": \"tg\",\n \"users\": [1,,]}")).await;
    assert_problem(&answer, StatusCode::BAD_REQUEST);
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(detail.contains("line 2, column 14"), "{detail}");
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_unknown_routes_404() {
    let (h, url, _) = setup().await;
    let get = call(&h, Request::get(&url).body(Body::empty()).unwrap()).await;
    assert_problem(&get, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers[header::ALLOW], "POST");
    let delete = call(
        &h,
        Request::delete("/v1/requests/x")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_problem(&delete, StatusCode::METHOD_NOT_ALLOWED);
    let unknown = call(&h, Request::get("/v2/nothing").body(Body::empty()).unwrap()).await;
    assert_problem(&unknown, StatusCode::NOT_FOUND);
}

/// The store's request log, counting the reads of whole request records.
struct CountingRecordReads {
    inner: std::sync::Arc<dyn RequestLog>,
    whole: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl RequestLog for CountingRecordReads {
    async fn progress(&self, id: &RequestId) -> Result<Option<RequestProgress>, StoreError> {
        self.whole.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.progress(id).await
    }
    async fn event_of(&self, id: &RequestId) -> Result<Option<EventId>, StoreError> {
        self.inner.event_of(id).await
    }
    async fn record(
        &self,
        id: &RequestId,
    ) -> Result<Option<(RequestRecord, RequestState)>, StoreError> {
        self.whole.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.record(id).await
    }
    async fn finished(
        &self,
        id: &RequestId,
        keys: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        self.inner.finished(id, keys).await
    }
    async fn record_outcomes(
        &self,
        id: &RequestId,
        o: &[(String, Outcome)],
    ) -> Result<(), StoreError> {
        self.inner.record_outcomes(id, o).await
    }
    async fn expansion(&self, id: &RequestId, shard: u32) -> Result<Expansion, StoreError> {
        self.inner.expansion(id, shard).await
    }
    async fn advance_expansion(
        &self,
        id: &RequestId,
        shard: u32,
        from: Option<&str>,
        to: Option<&str>,
        added: u64,
    ) -> Result<bool, StoreError> {
        self.inner
            .advance_expansion(id, shard, from, to, added)
            .await
    }
}

#[tokio::test]
async fn a_status_lookup_checks_the_secret_before_reading_the_record() {
    let (h, url, secret) = setup().await;
    let accepted = call(
        &h,
        post_json(
            &url,
            json!({"platform": "tg", "users": ["123456"], "data": {"big": "x".repeat(200_000)}}),
        ),
    )
    .await;
    let id = accepted.body["request_id"].as_str().unwrap().to_string();
    let counting = std::sync::Arc::new(CountingRecordReads {
        inner: h.app.ports.requests.clone(),
        whole: Default::default(),
    });
    let mut app = (*h.app).clone();
    app.ports.requests = counting.clone();
    let app = std::sync::Arc::new(app);
    let ask = |secret: String| {
        let router = herald_core::http::router(app.clone());
        let id = id.clone();
        async move {
            router
                .oneshot(
                    Request::get(format!("/v1/requests/{id}/{secret}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap()
                .status()
        }
    };
    for _ in 0..50 {
        assert_eq!(ask("wrong".into()).await, StatusCode::NOT_FOUND);
    }
    let reads = || counting.whole.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        reads(),
        0,
        "no record (with its data) read for a wrong secret"
    );
    assert_eq!(ask(secret).await, StatusCode::OK);
    assert_eq!(reads(), 1);
}

#[tokio::test]
async fn a_backend_failure_is_503_with_retry_after_and_nothing_accepted() {
    let (h, url, _) = setup().await;
    // Break the queue table so that the accept transaction fails after the request insert.
    h.sql().execute_batch("DROP TABLE jobs").unwrap();
    let answer = call(
        &h,
        post_json(&url, json!({"platform": "tg", "users": ["1"]})),
    )
    .await;
    assert_problem(&answer, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers[header::RETRY_AFTER], "1");
    assert_eq!(
        requests_count(&h),
        0,
        "the request must not be visible as accepted"
    );
}

#[tokio::test]
async fn health_answers_ok() {
    let (h, _, _) = setup().await;
    let answer = call(&h, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn urls_carry_the_public_base_url_when_one_is_set() {
    let config = herald_core::Config {
        public_base_url: Some("https://herald.example.com/".into()),
        ..herald_core::Config::default()
    };
    let h = Harness::with(
        config,
        std::sync::Arc::new(herald_core::log_deliverer::LogDeliverer::default()),
    );
    let event = h.event("shop").await;
    let url = format!("/v1/events/{}/{}", event.event_id, event.secret);
    let answer = call(
        &h,
        post_json(&url, json!({"platform": "tg", "users": ["1"]})),
    )
    .await;
    let id = answer.body["request_id"].as_str().unwrap();
    let expected = format!("https://herald.example.com/v1/requests/{id}");
    assert_eq!(answer.body["status_url"], expected.as_str());
    assert_eq!(answer.headers[header::LOCATION], expected.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_are_committed_together_each_with_its_own_answer() {
    let (h, url, _) = setup().await;
    let answers = futures::future::join_all((0..300).map(|i| {
        let h = &h;
        let url = url.clone();
        async move {
            let body = json!({"platform": "tg", "users": [i.to_string()], "data": {"i": i}});
            call(h, post_json(&url, body)).await
        }
    }))
    .await;
    let mut ids = std::collections::HashSet::new();
    for answer in &answers {
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        ids.insert(answer.body["request_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 300, "every accept got its own request");
    assert_eq!(requests_count(&h), 300);
    assert_eq!(jobs_count(&h), 300);
    // Each request holds its own data, and its job its own user.
    let payload: String = h
        .sql()
        .query_row(
            "SELECT jobs.payload FROM request_data JOIN jobs ON jobs.request_id = request_data.request_id
             WHERE json_extract(request_data.data, '$.i') = 123",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(payload.contains("\"123\""), "{payload}");
}

#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background_not_left_to_grow() {
    let h = Harness::new();
    let main_file = h.db_path();
    let before = std::fs::metadata(&main_file).unwrap().len();
    // Enough rows to fill many pages; commits never checkpoint by themselves.
    h.users("shop", "tg", (0..20_000).map(|i| i.to_string()))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if std::fs::metadata(&main_file).unwrap().len() > before + 100_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file never received the WAL's pages"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_wal_is_rewound_while_readers_come_and_go() {
    // Under steady reads a checkpoint can copy the whole log back, yet SQLite only rewinds
    // it when a writer finds no reader inside; with readers always there it grew without
    // end. Writes of 1 MiB each, 192 MiB in all, against readers that never pause.
    let h = Harness::new();
    let wal = h.dir.path().join("herald.db-wal");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two readers, each holding its snapshot for a moment: one is always inside the log.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (stop, path) = (stop.clone(), h.db_path());
            std::thread::spawn(move || {
                let mut conn = rusqlite::Connection::open(path).unwrap();
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let tx = conn.transaction().unwrap();
                    let _: i64 = tx
                        .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
                        .unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    tx.commit().unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut largest = 0;
    for i in 0..192 {
        h.store
            .transaction(move |tx| {
                tx.execute(
                    "INSERT OR REPLACE INTO settings (name, value) VALUES (?1, randomblob(1048576))",
                    [format!("filler-{}", i % 4)],
                )
            })
            .await
            .unwrap();
        if i % 8 == 7 {
            h.store.checkpoint().unwrap();
        }
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().unwrap() > 0, "the readers read");
    }
    eprintln!("largest WAL: {largest} bytes");
    // Frames are a page plus a 24-byte header; 8 MiB are written between checkpoints. A
    // rewind waits at most 20 ms for the readers to leave the log and is otherwise tried
    // again at the next checkpoint: on a loaded machine a few in a row find a reader still
    // inside (92 MiB was seen), so the bound allows four tries, 32 MiB — far below the
    // 192 MiB a WAL that is never rewound reaches.
    let limit = (herald_sqlite::WAL_RESTART_FRAMES as u64 * (4096 + 24)) + (32 << 20);
    assert!(
        largest < limit,
        "the WAL grew to {largest} bytes (limit {limit}) though 192 MiB went through it"
    );
}

#[tokio::test]
async fn a_wal_left_large_by_a_big_transaction_is_trimmed_when_rewound() {
    // One 96 MiB transaction makes a WAL larger than the 64 MiB the store keeps; once a
    // checkpoint has rewound it, the next commit trims the file (journal_size_limit).
    let h = Harness::new();
    let wal = h.dir.path().join("herald.db-wal");
    h.store
        .transaction(|tx| {
            for i in 0..96 {
                tx.execute(
                    "INSERT OR REPLACE INTO settings (name, value) VALUES (?1, randomblob(1048576))",
                    [format!("big-{i}")],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let large = std::fs::metadata(&wal).unwrap().len();
    assert!(
        large > 96 << 20,
        "the transaction went through the WAL: {large}"
    );
    // The background checkpointer may hold the checkpoint at that moment (under a loaded
    // machine): then the rewind waits for a next try, as it would in the store.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !h.store.checkpoint().unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL was never rewound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    h.store
        .transaction(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO settings (name, value) VALUES ('small', x'00')",
                [],
            )
        })
        .await
        .unwrap();
    let after = std::fs::metadata(&wal).unwrap().len();
    assert!(
        after <= 64 << 20,
        "the WAL kept {after} bytes after it was rewound"
    );
}

/// Every route declares who may call it, and the table applies it: each admin route
/// refuses every method without the admin token (401, before any handler or 405), and no
/// path under `/v1/admin` is declared anything but admin.
#[tokio::test]
async fn every_admin_route_refuses_every_method_without_the_admin_token() {
    use herald_core::http::Auth;
    let config = herald_core::Config {
        admin_token_hash: Some(herald_core::secret::hash("the-admin-token")),
        ..herald_core::Config::default()
    };
    let h = Harness::with(
        config,
        std::sync::Arc::new(herald_core::log_deliverer::LogDeliverer::default()),
    );
    let routes = herald_core::http::routes();
    assert!(routes.iter().any(|r| r.auth == Auth::Admin));
    for route in &routes {
        assert_eq!(
            route.path.starts_with("/v1/admin"),
            route.auth == Auth::Admin,
            "{} is declared {:?}",
            route.path,
            route.auth
        );
        if route.auth != Auth::Admin {
            continue;
        }
        let path = route
            .path
            .replace("{bot_id}", "shop")
            .replace("{event_id}", "e")
            .replace("{request_id}", "r")
            .replace("{platform}", "tg")
            .replace("{user_id}", "1");
        for method in ["GET", "POST", "PATCH", "DELETE", "PUT"] {
            for token in [
                None,
                Some("Bearer wrong-token"),
                Some("Bearer the-admin-token"),
            ] {
                let mut request = Request::builder()
                    .method(method)
                    .uri(&path)
                    .header(header::CONTENT_TYPE, "application/json");
                if let Some(token) = token {
                    request = request.header(header::AUTHORIZATION, token);
                }
                let answer = call(&h, request.body(Body::from("{}")).unwrap()).await;
                let right = token == Some("Bearer the-admin-token");
                assert_eq!(
                    answer.status == StatusCode::UNAUTHORIZED,
                    !right,
                    "{method} {path} with {token:?}: {}",
                    answer.status
                );
            }
        }
    }
}
