//! docs/ARCHITECTURE.md's "add a channel" recipe, followed once with a channel that exists
//! only here (`echo`: POSTs `{to, text}` with a bearer token to the bot's URL). Its spec,
//! its sender and its fake live in this file; it is registered beside the built-in
//! channels, and from there the admin API validates and answers its connection, the store
//! keeps it, and the dispatcher routes `echo` users' messages to it — no other file knows
//! it.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{header, Request};
use herald_core::channels::{ChannelSpec, Channels, FieldKind, FieldSpec, Serves};
use herald_core::domain::{Bot, DeliveryResult};
use herald_core::message::MessageLimits;
use herald_core::ports::admin::UserAdmin;
use herald_core::ports::Delivery;
use herald_core::worker_pool::{drain, PoolOptions};
use herald_core::Config;
use herald_delivery::channels::{self, Channel, Content};
use herald_delivery::dispatch::Dispatcher;
use herald_delivery::DeliveryConfig;
use herald_sqlite::Sqlite;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

// ---- the channel module: its spec and its sender ----

const ECHO: ChannelSpec = ChannelSpec {
    name: "echo",
    title: "Echo",
    serves: Serves::Messages,
    platforms: &["echo"],
    fields: &[
        FieldSpec {
            name: "url",
            kind: FieldKind::HttpUrl,
            about: "Where messages are posted",
            needs: Some(("token", "messages are never posted without a token")),
        },
        FieldSpec {
            name: "token",
            kind: FieldKind::Secret,
            about: "The bearer token of the echo API",
            needs: None,
        },
    ],
    pace: None,
    limits: Some(MessageLimits {
        renders: &[],
        text_chars: 4096,
        buttons: 0,
        button_text_chars: 0,
    }),
};

struct Echo {
    http: reqwest::Client,
}

#[async_trait]
impl Channel for Echo {
    fn spec(&self) -> &'static ChannelSpec {
        &ECHO
    }

    async fn send(
        &self,
        bot: &Bot,
        delivery: &Delivery<'_>,
        content: Content<'_>,
    ) -> DeliveryResult {
        let (Some(url), Some(token), Content::Message(message)) = (
            bot.connections.get("echo", "url"),
            bot.connections.get("echo", "token"),
            content,
        ) else {
            unreachable!("the dispatcher routes only complete connections and messages here");
        };
        let sent = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&json!({"to": delivery.user.platform_id, "text": message.text}))
            .send()
            .await;
        match sent.map(|r| r.status().as_u16()) {
            Ok(200..=299) => DeliveryResult::Delivered { detail: None },
            Ok(429) | Err(_) => DeliveryResult::Retry {
                reason: "unavailable".into(),
                message: "echo did not take it".into(),
                after: None,
            },
            Ok(status) => DeliveryResult::Permanent {
                reason: "rejected".into(),
                message: format!("echo answered {status}"),
            },
        }
    }
}

// ---- its fake ----

#[derive(Clone, Default)]
struct FakeEcho {
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

impl FakeEcho {
    async fn start(&self) -> String {
        let received = self.received.clone();
        let app = axum::Router::new().route(
            "/send",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                    let received = received.clone();
                    async move {
                        let auth = headers
                            .get(header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        received.lock().unwrap().push((auth, body));
                        "ok"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/send", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

// ---- its test ----

async fn call(router: &axum::Router, method: &str, uri: &str, body: Option<Value>) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, "Bearer admin-token")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_registered_beside_the_others_is_validated_stored_and_delivered_to() {
    let fake = FakeEcho::default();
    let url = fake.start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("herald.db")).unwrap();

    // The registration: the built-in channels and this one.
    let registry: Channels = Box::leak(
        herald_delivery::CHANNELS
            .iter()
            .copied()
            .chain([&ECHO])
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let http = herald_delivery::http_client(std::time::Duration::from_secs(5)).unwrap();
    let pacer = Arc::new(herald_core::pace::Pacer::new());
    let mut senders = channels::build(&http, &DeliveryConfig::default(), &pacer);
    senders.push(Arc::new(Echo { http }));
    let dispatcher = Dispatcher::with_channels(Arc::new(store.clone()), senders);
    let config = Config {
        admin_token_hash: Some(herald_core::secret::hash("admin-token")),
        ..Config::default()
    };
    let app = Arc::new(herald_sqlite::app(
        &store,
        config,
        Arc::new(dispatcher),
        registry,
    ));
    let router = herald_core::http::router(app.clone());

    // The admin API knows its fields: what they need, and that the token is write-only.
    let (status, refused) = call(
        &router,
        "POST",
        "/v1/admin/bots",
        Some(json!({"id": "shop", "connections": {"echo": {"url": url}}})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused.to_string().contains("connections.echo.token"),
        "{refused}"
    );
    let (status, refused) = call(
        &router,
        "POST",
        "/v1/admin/bots",
        Some(json!({"id": "shop", "connections": {"echo": {"tokn": "x"}}})),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    let (status, bot) = call(
        &router,
        "POST",
        "/v1/admin/bots",
        Some(json!({"id": "shop", "connections": {"echo": {"url": url, "token": "ECHO-TOKEN"}}})),
    )
    .await;
    assert_eq!(status, 201, "{bot}");
    assert_eq!(
        bot["connections"]["echo"],
        json!({"url": url, "token_set": true})
    );
    assert!(!bot.to_string().contains("ECHO-TOKEN"), "{bot}");

    // A message event to its users reaches the fake, rendered, with the token.
    let (status, created) = call(
        &router,
        "POST",
        "/v1/admin/events",
        Some(json!({"bot_id": "shop", "name": "hello",
                    "action": {"type": "message", "template": "Hello {{ last_request.name }}"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let users: Vec<_> = ["e1", "e2"]
        .iter()
        .map(|id| herald_core::admin::NewUser {
            platform: "echo".into(),
            platform_id: (*id).into(),
            bm_id: None,
        })
        .collect();
    store
        .import_users(&"shop".parse().unwrap(), &users)
        .await
        .unwrap();
    let event_path = format!("/v1/events/{}", created["event"]["id"].as_str().unwrap());
    let request = Request::post(&event_path)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", created["secret"].as_str().unwrap()),
        )
        .body(Body::from(
            json!({"platform": "echo", "users": "everyone", "data": {"name": "Ada"}}).to_string(),
        ))
        .unwrap();
    let accepted = router.clone().oneshot(request).await.unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    drain(&app, &store, &PoolOptions::default()).await.unwrap();

    let mut received = fake.received.lock().unwrap().clone();
    received.sort_by_key(|(_, body)| body["to"].to_string());
    assert_eq!(
        received,
        vec![
            (
                "Bearer ECHO-TOKEN".to_string(),
                json!({"to": "e1", "text": "Hello Ada"})
            ),
            (
                "Bearer ECHO-TOKEN".to_string(),
                json!({"to": "e2", "text": "Hello Ada"})
            ),
        ]
    );
}
