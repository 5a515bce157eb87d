//! A corpus of bad input against the real `herald serve` over HTTP: malformed and truncated
//! JSON, a wrong type at every field, huge and deep values, invalid UTF-8, duplicate keys,
//! wrong methods and content types, odd headers and path tricks, on the public routes and
//! the admin routes. Every answer is 2xx or 4xx (4xx as problem+json), never a 5xx, never
//! a dropped connection; afterwards the server's memory is within 50 MB of where it was
//! and it is still ready.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::bots::create_event;
use support::Server;

const ADMIN_TOKEN: &str = "bad-input-admin-token-0123456789";

/// One request of the corpus.
struct Case {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn case(method: Method, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        method,
        path: path.to_string(),
        headers: vec![("content-type".into(), content_type.into())],
        body: body.into(),
    }
}

fn admin(mut c: Case) -> Case {
    c.headers
        .push(("authorization".into(), format!("Bearer {ADMIN_TOKEN}")));
    c
}

/// Values of every JSON type, and some extremes.
fn odd_values() -> Vec<Value> {
    let mut deep = json!(1);
    for _ in 0..200 {
        deep = json!([deep]);
    }
    vec![
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(3846.0),
        json!(1e308),
        json!(u64::MAX),
        json!(""),
        json!("x".repeat(100_000)),
        json!("\u{0000}\u{001f}"),
        json!([]),
        json!([null]),
        json!({}),
        json!({"id": null}),
        deep,
    ]
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
fn corpus(event_url: &str, bearer_url: &str, secret: &str) -> Vec<Case> {
    let json_type = "application/json";
    let mut cases = Vec::new();
    let malformed: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"}".to_vec(),
        b"[".to_vec(),
        b"{\"platform\"".to_vec(),
        b"{\"platform\": \"tg\", \"users\": [\"1\"".to_vec(),
        b"{\"platform\": \"tg\",}".to_vec(),
        b"{'platform': 'tg'}".to_vec(),
        b"null".to_vec(),
        b"true".to_vec(),
        b"42".to_vec(),
        b"\"string\"".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"{\"a\": NaN}".to_vec(),
        b"{\"a\": Infinity}".to_vec(),
        b"{\"a\": 01}".to_vec(),
        b"{\"a\": 1e99999}".to_vec(),
        b"{\"a\": \"\\ud800\"}".to_vec(),
        b"{\"a\": \"\\u00\"}".to_vec(),
        b"{\"a\": \"unterminated}".to_vec(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"\xff\xfe{}".to_vec(),
        b"{\"platform\": \"\xff\xfe\"}".to_vec(),
        b"{\"users\": [\"\xc3\x28\"]}".to_vec(),
        b"{\"data\": {\"k\": \"\xed\xa0\x80\"}}".to_vec(),
        vec![0u8; 64],
        b"{}{}".to_vec(),
        b"{} trailing".to_vec(),
        "{".repeat(100_000).into_bytes(),
        "[".repeat(100_000).into_bytes(),
        format!(
            "{{\"data\": {}}}",
            "{\"a\":".repeat(5000) + "1" + &"}".repeat(5000)
        )
        .into_bytes(),
        b"{\"platform\": \"tg\", \"platform\": \"vk\", \"users\": [\"1\"]}".to_vec(),
        b"{\"users\": [\"1\"], \"users\": \"everyone\", \"platform\": \"tg\"}".to_vec(),
        b"{\"data\": {\"a\": 1, \"a\": 2}, \"platform\": \"tg\", \"users\": [\"1\"]}".to_vec(),
        b"{\"platform\": \"tg\", \"users\": [{\"id\": \"1\", \"id\": \"2\"}]}".to_vec(),
    ];
    for body in &malformed {
        cases.push(case(Method::POST, event_url, json_type, body.clone()));
        let mut bearer = case(Method::POST, bearer_url, json_type, body.clone());
        bearer
            .headers
            .push(("authorization".into(), format!("Bearer {secret}")));
        cases.push(bearer);
        cases.push(admin(case(
            Method::POST,
            "/v1/admin/bots",
            json_type,
            body.clone(),
        )));
    }
    // A wrong type at every field of the event request, and of a user entry.
    let valid = json!({"platform": "tg", "users": ["1"], "data": {"n": 1}});
    for field in ["platform", "users", "users_bm", "data", "dry_run"] {
        for value in odd_values() {
            let mut body = valid.clone();
            if field == "users_bm" {
                body.as_object_mut().unwrap().remove("users");
            }
            body[field] = value;
            cases.push(case(Method::POST, event_url, json_type, body.to_string()));
        }
    }
    for value in odd_values() {
        for entry in [
            json!({"id": value.clone()}),
            json!({"id": "1", "data": value.clone()}),
        ] {
            let body = json!({"platform": "tg", "users": [entry]});
            cases.push(case(Method::POST, event_url, json_type, body.to_string()));
        }
    }
    // Admin documents with a wrong type at each field.
    for value in odd_values() {
        for (method, path, field) in [
            (Method::POST, "/v1/admin/bots", "id"),
            (Method::POST, "/v1/admin/bots", "screen_url"),
            (Method::PATCH, "/v1/admin/bots/shop", "telegram_token"),
            (Method::POST, "/v1/admin/events", "bot_id"),
            (Method::POST, "/v1/admin/events", "action"),
            (Method::POST, "/v1/admin/events", "rate_limit"),
        ] {
            let mut body = json!({"id": "b", "bot_id": "shop", "name": "n",
                                  "action": {"type": "screen", "screen_id": "s"}});
            body[field] = value.clone();
            cases.push(admin(case(method, path, json_type, body.to_string())));
        }
    }
    // Wrong methods on every route.
    for path in [
        event_url,
        bearer_url,
        "/v1/requests/01none",
        "/healthz",
        "/readyz",
        "/v1/admin/bots",
        "/v1/admin/events",
        "/v1/admin/requests",
        "/v1/admin/dead-letters",
    ] {
        for method in [
            Method::GET,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ] {
            cases.push(admin(case(method, path, json_type, "{}")));
        }
    }
    // Content types.
    let body = valid.to_string();
    for content_type in [
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin1",
        "application/JSON",
        "application/problem+json",
        "application/jsonx",
        "*/*",
        "application/json\u{0}",
    ] {
        cases.push(case(Method::POST, event_url, content_type, body.clone()));
    }
    // Odd headers.
    for (name, value) in [
        ("authorization", String::new()),
        ("authorization", "Bearer".into()),
        ("authorization", "Basic dXNlcjpwYXNz".into()),
        ("authorization", format!("Bearer {}", "x".repeat(30_000))),
        ("idempotency-key", String::new()),
        ("idempotency-key", "x".repeat(300)),
        ("idempotency-key", "key with spaces".into()),
        ("idempotency-key", "ключ".into()),
        ("content-length", "abc".into()),
        ("transfer-encoding", "gzip".into()),
        ("content-encoding", "gzip".into()),
        ("x-forwarded-for", "1.2.3.4, ::1".into()),
        ("host", "".into()),
    ] {
        let mut c = case(Method::POST, bearer_url, json_type, body.clone());
        c.headers.push((name.into(), value));
        cases.push(c);
    }
    // Path tricks.
    for path in [
        "/v1/events/",
        "/v1/events//",
        "/v1/events/x/y/z",
        "/v1/events/../admin/bots",
        "/v1/events/%2e%2e/admin/bots",
        "/v1/events/a%2Fb/c",
        "/v1/events/%00/%00",
        "/V1/ADMIN/BOTS",
        "/v1/admin%2Fbots",
        "/v1/admin/bots/..%2F..%2Fetc%2Fpasswd",
        "//v1/admin/bots",
        "/v1/admin/bots/%ff",
        "/v1/requests/%ff%fe",
        "/v1/requests/x/y/z",
        "/v1/admin/requests?limit=-1",
        "/v1/admin/requests?limit=99999999999999999999",
        "/v1/admin/requests?event_id=%00&limit=0",
        "/v1/admin/dead-letters?limit=abc",
        "/v1/admin/bots/shop/users/tg/%ff",
        "/metrics?x=%zz",
    ] {
        cases.push(case(Method::POST, path, json_type, body.clone()));
        cases.push(admin(case(Method::GET, path, json_type, "")));
    }
    let long = format!("/v1/events/{}/{}", "a".repeat(4000), "b".repeat(4000));
    cases.push(case(Method::POST, &long, json_type, body.clone()));
    // Imports with bad lines and bad types.
    for (content_type, text) in [
        ("application/x-ndjson", "{\n"),
        (
            "application/x-ndjson",
            "{\"platform\": 1, \"platform_id\": []}\n",
        ),
        (
            "application/x-ndjson",
            "\u{feff}{\"platform\":\"tg\",\"platform_id\":\"1\"}\n",
        ),
        ("application/x-ndjson", "\u{0}\u{0}\u{0}\n"),
        ("text/csv", "platform\n"),
        ("text/csv", "platform,platform_id\n\"unterminated,1\n"),
        ("text/csv", ""),
        ("application/json", "[]"),
    ] {
        cases.push(admin(case(
            Method::POST,
            "/v1/admin/bots/shop/users",
            content_type,
            text,
        )));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_4xx_never_5xx_and_costs_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop", &["--action", "screen", "--screen", "s"]);
    let server = Server::start(&db, &["--no-demo", "--admin-token", ADMIN_TOKEN]);
    let event_url = format!("/v1/events/{}/{}", event.id, event.secret);
    let bearer_url = format!("/v1/events/{}", event.id);
    let cases = corpus(&event_url, &bearer_url, &event.secret);
    assert!(cases.len() >= 300, "{} cases", cases.len());
    let client = reqwest::Client::new();
    // Warm up (allocator arenas, caches) before the baseline.
    for c in cases.iter().take(20) {
        let _ = send(&client, &server, c).await;
    }
    let before = server.resident_bytes();
    let mut failures = Vec::new();
    for round in 0..2 {
        for (i, c) in cases.iter().enumerate() {
            match send(&client, &server, c).await {
                Ok((status, _)) if status >= 500 => {
                    failures.push(format!("#{i} {} {}: {status}", c.method, c.path))
                }
                Ok((status, content_type))
                    if (400..500).contains(&status)
                        && c.method != Method::HEAD
                        && status != 431
                        && !content_type.starts_with("application/problem+json") =>
                {
                    failures.push(format!(
                        "#{i} {} {}: {status} as {content_type}",
                        c.method, c.path
                    ))
                }
                Ok(_) => {}
                Err(e) => failures.push(format!("#{i} round {round} {} {}: {e}", c.method, c.path)),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let after = server.resident_bytes();
    println!(
        "{} cases twice; resident {before} → {after} bytes",
        cases.len()
    );
    assert!(
        after < before + 50 * 1024 * 1024,
        "resident memory grew from {before} to {after} bytes"
    );
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

async fn send(
    client: &reqwest::Client,
    server: &Server,
    c: &Case,
) -> Result<(u16, String), reqwest::Error> {
    let mut request = client.request(c.method.clone(), server.url(&c.path));
    for (name, value) in &c.headers {
        if let Ok(value) = reqwest::header::HeaderValue::from_bytes(value.as_bytes()) {
            request = request.header(name.as_str(), value);
        }
    }
    let response = request.body(c.body.clone()).send().await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    response.bytes().await?;
    Ok((status, content_type))
}
