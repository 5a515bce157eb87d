//! `openapi.yaml` is the contract as a document: it names exactly the routes the Router
//! serves, every example in it is valid against its schema, and what the Router really
//! answers is valid too.

mod support;

use axum::body::Body;
use axum::http::Request;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::{secret, Config};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use support::Harness;
use tower::ServiceExt;

const ADMIN: &str = "openapi-admin-token-0123456789";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml");
    serde_yaml_ng::from_str(&text).expect("openapi.yaml parses")
}

/// A validator for a `#/components/...` reference, resolved inside the document.
fn validator(doc: &Value, reference: &str) -> jsonschema::Validator {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": reference,
        "components": doc["components"],
    });
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{reference}: {e}"))
}

fn schema_ref(doc: &Value, schema: &Value) -> Value {
    // Inline schemas are validated with the components alongside, like references.
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "allOf": [schema],
        "components": doc["components"],
    })
}

fn check(doc: &Value, schema: &Value, instance: &Value, what: &str) {
    let validator = jsonschema::validator_for(&schema_ref(doc, schema))
        .unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: {instance} is not valid: {errors:?}"
    );
}

/// Follow a `$ref` inside the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("{reference} not found")),
            )
        }
        None => value,
    }
}

#[test]
fn the_document_names_exactly_the_routes_the_router_serves() {
    let doc = document();
    let mut documented = BTreeSet::new();
    let mut serve_only = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                let entry = (method.to_uppercase(), path.clone());
                if item["x-herald-runtime"] == "serve" {
                    serve_only.insert(entry);
                } else {
                    documented.insert(entry);
                }
            }
        }
    }
    let served: BTreeSet<(String, String)> = herald_core::http::routes()
        .iter()
        .flat_map(|route| {
            route
                .methods
                .iter()
                .map(|m| (m.to_string(), route.path.to_string()))
        })
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(missing.is_empty(), "served but not documented: {missing:?}");
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    // `herald serve` adds /metrics and /readyz outside the shared Router.
    assert_eq!(
        serve_only.into_iter().collect::<Vec<_>>(),
        [
            ("GET".to_string(), "/metrics".to_string()),
            ("GET".to_string(), "/readyz".to_string())
        ]
    );
}

#[test]
fn every_example_is_valid_and_the_schemas_refuse_invalid_bodies() {
    let doc = document();
    let mut checked = 0;
    let mut visit = |media: &Value, what: String| {
        let Some(schema) = media.get("schema") else {
            return;
        };
        for (name, example) in media["examples"].as_object().into_iter().flatten() {
            check(
                &doc,
                schema,
                &example["value"],
                &format!("{what} example {name}"),
            );
            checked += 1;
        }
    };
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let what = format!("{} {path}", method.to_uppercase());
            if let Some(body) = operation.get("requestBody") {
                for (kind, media) in resolve(&doc, body)["content"].as_object().unwrap() {
                    visit(media, format!("{what} request {kind}"));
                }
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                let response = resolve(&doc, response);
                for (kind, media) in response["content"].as_object().into_iter().flatten() {
                    visit(media, format!("{what} {status} {kind}"));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} examples checked");

    // The seed document's three requests are among the examples.
    let examples = &doc["components"]["requestBodies"]["EventRequest"]["content"]
        ["application/json"]["examples"];
    assert_eq!(
        examples["explicitUsers"]["value"],
        json!({"platform": "tg", "users": ["123456"], "data": {}})
    );
    assert_eq!(
        examples["everyone"]["value"],
        json!({"platform": "any", "users": "everyone", "data": {}})
    );
    assert_eq!(
        examples["stateIds"]["value"],
        json!({"users_bm": ["5c517b7773515eaha3078e2f"], "data": {}})
    );

    // The schemas are not vacuous.
    let request = validator(&doc, "#/components/schemas/EventRequest");
    for bad in [
        json!({"users": ["1"]}),
        json!({"platform": "tg", "users": ["1"], "users_bm": ["b"]}),
        json!({"platform": "tg", "users": []}),
        json!({"platform": "tg", "users": [1.5]}),
        // The server refuses control characters in ids (C0, DEL and C1).
        json!({"users_bm": ["a\u{0089}"]}),
        json!({"users_bm": [{"id": "\u{0007}"}]}),
        json!({"users_bm": [{"id": ""}]}),
        json!({"platform": "Telegram", "users": ["1"]}),
        json!({"platform": "any", "users": ["1"]}),
        json!({"platform": "bm", "users": ["1"]}),
        // The fast lane refuses broadcasts, as the server does.
        json!({"platform": "tg", "users": "everyone", "lane": "transactional"}),
        json!({"platform": "tg", "users": vec!["1"; 1001], "lane": "transactional"}),
        json!({"users_bm": vec!["b"; 1001], "lane": "transactional"}),
        json!({"platform": "tg", "users": ["1"], "lane": "fast"}),
    ] {
        assert!(!request.is_valid(&bad), "{bad} passed");
    }
    for good in [
        json!({"platform": "tg", "users": vec!["1"; 1000], "lane": "transactional"}),
        json!({"platform": "tg", "users": "everyone", "lane": "bulk"}),
    ] {
        assert!(request.is_valid(&good), "{good} refused");
    }
    let which = validator(&doc, "#/components/schemas/Which");
    assert!(!which.is_valid(&json!({})));
    assert!(!which.is_valid(&json!({"ids": ["a"], "all": true})));
}

#[test]
fn the_bot_schemas_refuse_what_the_server_refuses() {
    let doc = document();
    // A bot's connections: canonical or flat, a screen URL never without its secret, a
    // field never given both ways.
    let create = validator(&doc, "#/components/schemas/BotCreate");
    let url = "https://engine.example/s";
    for good in [
        json!({"id": "b", "connections": {"engine": {"url": url, "signing_secret": "k"}}}),
        json!({"id": "b", "connections": {"engine": {"url": url}}, "signing_secret": "k"}),
        json!({"id": "b", "screen_url": url, "signing_secret": "k"}),
        json!({"id": "b", "connections": {"telegram": {"token": "1:T"}}}),
    ] {
        assert!(create.is_valid(&good), "{good} refused");
    }
    for bad in [
        json!({"id": "b", "connections": {"engine": {"url": url}}}),
        json!({"id": "b", "screen_url": url, "connections": {"engine": {"signing_secret": ""}}}),
        json!({"id": "b", "screen_url": url, "signing_secret": "k",
               "connections": {"engine": {"url": url}}}),
        json!({"id": "b", "connections": {"vk": {"token": "t"}}}),
    ] {
        assert!(!create.is_valid(&bad), "{bad} passed");
    }
    let changes = validator(&doc, "#/components/schemas/BotChanges");
    assert!(
        !changes.is_valid(&json!({"connections": {"engine": {"url": url, "signing_secret": ""}}}))
    );
    assert!(changes.is_valid(&json!({"connections": {"engine": {"url": url}}})));
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {ADMIN}"));
    let body = match body {
        Some(body) => {
            request = request.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let response = router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test]
async fn what_the_router_answers_matches_the_document() {
    let doc = document();
    let config = Config {
        admin_token_hash: Some(secret::hash(ADMIN)),
        ..Config::default()
    };
    let h = Harness::with(config, Arc::new(LogDeliverer::default()));
    h.users("shop", "tg", ["123456".to_string()]).await;
    let router = herald_core::http::router(h.app.clone());
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});

    let (status, bot) = call(
        &router,
        "POST",
        "/v1/admin/bots",
        Some(json!({"id": "other"})),
    )
    .await;
    assert_eq!(status, 201);
    check(&doc, &schema("Bot"), &bot, "created bot");
    let (_, created) = call(
        &router,
        "POST",
        "/v1/admin/events",
        Some(
            json!({"bot_id": "shop", "name": "n", "action": {"type": "screen", "screen_id": "s"}}),
        ),
    )
    .await;
    check(&doc, &schema("EventWithSecret"), &created, "created event");
    let event_url = created["url_with_secret"].as_str().unwrap().to_string();

    let examples = &doc["components"]["requestBodies"]["EventRequest"]["content"]
        ["application/json"]["examples"];
    let mut request_id = String::new();
    for name in ["explicitUsers", "everyone", "stateIds"] {
        let (status, accepted) = call(
            &router,
            "POST",
            &event_url,
            Some(examples[name]["value"].clone()),
        )
        .await;
        assert_eq!(status, 202, "{name}: {accepted}");
        check(&doc, &schema("Accepted"), &accepted, name);
        request_id = accepted["request_id"].as_str().unwrap().to_string();
    }
    let (_, refused) = call(&router, "POST", &event_url, Some(json!({"users": ["1"]}))).await;
    check(&doc, &schema("Problem"), &refused, "422");
    let (_, status) = call(
        &router,
        "GET",
        &format!("/v1/admin/requests/{request_id}"),
        None,
    )
    .await;
    check(&doc, &schema("RequestStatus"), &status, "status");
    h.run_jobs().await;
    let (_, user) = call(&router, "GET", "/v1/admin/bots/shop/users/tg/123456", None).await;
    check(&doc, &schema("User"), &user, "user");
    let event_id = created["event"]["id"].as_str().unwrap();
    let (_, list) = call(
        &router,
        "GET",
        &format!("/v1/admin/requests?event_id={event_id}"),
        None,
    )
    .await;
    for request in list["requests"].as_array().unwrap() {
        check(&doc, &schema("RequestStatus"), request, "listed request");
    }
    let (_, events) = call(&router, "GET", "/v1/admin/events", None).await;
    check(&doc, &schema("Event"), &events["events"][0], "listed event");
    let (_, unauthorized) = {
        let response = router
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/v1/admin/bots")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        ((), serde_json::from_slice::<Value>(&bytes).unwrap())
    };
    check(&doc, &schema("Problem"), &unauthorized, "401");
}

/// The document's connection schemas list exactly the registered channels and their
/// fields: a channel added to the registry and not to `openapi.yaml` fails here.
#[test]
fn the_connection_schemas_match_the_channel_registry() {
    use herald_core::channels::FieldKind;
    use std::collections::BTreeSet;
    let doc = document();
    let keys = |schema: &Value| -> BTreeSet<String> {
        schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let shown = &doc["components"]["schemas"]["ConnectionsShown"];
    let changes = &doc["components"]["schemas"]["ConnectionChanges"];
    let channels: BTreeSet<String> = herald_delivery::CHANNELS
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    assert_eq!(keys(shown), channels, "ConnectionsShown");
    assert_eq!(keys(changes), channels, "ConnectionChanges");
    let required: BTreeSet<String> = shown["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(required, channels, "every channel is answered");
    for spec in herald_delivery::CHANNELS {
        let given: BTreeSet<String> = spec.fields.iter().map(|f| f.name.to_string()).collect();
        assert_eq!(
            keys(&changes["properties"][spec.name]),
            given,
            "{}",
            spec.name
        );
        let answered: BTreeSet<String> = spec
            .fields
            .iter()
            .map(|f| match f.kind {
                FieldKind::Secret => format!("{}_set", f.name),
                _ => f.name.to_string(),
            })
            .collect();
        assert_eq!(
            keys(&shown["properties"][spec.name]),
            answered,
            "{}",
            spec.name
        );
        for field in spec.fields {
            let schema = &changes["properties"][spec.name]["properties"][field.name];
            let name = format!("{}.{}", spec.name, field.name);
            match field.kind {
                FieldKind::Number { min, max } => {
                    let number = &schema["oneOf"][0];
                    assert_eq!(
                        (&number["minimum"], &number["maximum"]),
                        (&json!(min), &json!(max)),
                        "{name}"
                    );
                }
                FieldKind::Switch => {
                    assert_eq!(schema["oneOf"][0]["type"], "boolean", "{name}");
                }
                _ => assert_eq!(schema["maxLength"], 2048, "{name}"),
            }
        }
    }
}
