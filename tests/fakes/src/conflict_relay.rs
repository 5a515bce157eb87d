//! An HTTP relay to DynamoDB Local whose transactions lose conflicts, as DynamoDB's do.
//!
//! DynamoDB cancels a `TransactWriteItems` that touches an item another transaction is
//! writing at that moment (`TransactionCanceledException`, reason `TransactionConflict`,
//! nothing applied). DynamoDB Local runs transactions one at a time and never does, so
//! code that must tell a conflict from a failed condition cannot be tested against it
//! alone. [`ConflictRelay`] relays every call to the emulator unchanged, except that one
//! `TransactWriteItems` call in `every` is answered with that cancellation instead, in the
//! wire format DynamoDB uses, without reaching the emulator.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The `X-Amz-Target` of a transaction.
const TRANSACT_WRITE: &str = "DynamoDB_20120810.TransactWriteItems";

/// A relay to one DynamoDB endpoint; see the module documentation.
pub struct ConflictRelay {
    /// `http://` and the relay's loopback address, for an SDK's endpoint.
    pub url: String,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    every: u64,
    transactions: AtomicU64,
    conflicts: AtomicU64,
}

#[derive(Clone)]
struct Relay {
    upstream: String,
    http: reqwest::Client,
    counts: Arc<Counts>,
}

impl ConflictRelay {
    /// Relay a free loopback port to `upstream` (`http://host:port`), answering the first
    /// `TransactWriteItems` call and then one in `every` with a conflict.
    pub async fn start(upstream: &str, every: u64) -> ConflictRelay {
        let counts = Arc::new(Counts {
            every: every.max(1),
            ..Counts::default()
        });
        let relay = Relay {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            counts: counts.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(relay_call).with_state(relay);
        tokio::spawn(async move { axum::serve(listener, app).await });
        ConflictRelay { url, counts }
    }

    /// Transactions answered with a conflict so far.
    pub fn conflicts(&self) -> u64 {
        self.counts.conflicts.load(Ordering::Relaxed)
    }
}

async fn relay_call(
    State(relay): State<Relay>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if target == TRANSACT_WRITE {
        let n = relay.counts.transactions.fetch_add(1, Ordering::Relaxed);
        if n % relay.counts.every == 0 {
            relay.counts.conflicts.fetch_add(1, Ordering::Relaxed);
            return conflict(&body);
        }
    }
    let mut forward = relay
        .http
        .request(method, format!("{}{uri}", relay.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let Ok(answer) = forward.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = answer.status();
    let mut out = HeaderMap::new();
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            out.insert(name, value.clone());
        }
    }
    let body = answer.bytes().await.unwrap_or_default();
    (status, out, body).into_response()
}

/// DynamoDB's answer to a transaction cancelled by a conflict on its first item: one
/// reason per item of the request.
fn conflict(request: &[u8]) -> Response {
    let items = serde_json::from_slice::<Value>(request)
        .ok()
        .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
        .unwrap_or(1)
        .max(1);
    let codes: Vec<&str> = std::iter::once("TransactionConflict")
        .chain(std::iter::repeat_n("None", items - 1))
        .collect();
    let reasons: Vec<Value> = codes
        .iter()
        .map(|&code| match code {
            "None" => json!({"Code": code}),
            _ => json!({"Code": code, "Message": "Transaction is ongoing for the item"}),
        })
        .collect();
    let body = json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
        "CancellationReasons": reasons,
    });
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}
