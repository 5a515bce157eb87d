//! How the CLI reaches the admin API: over HTTP (`--url`), or in this process on a local
//! database file (`--db`), through the very same Router.
//!
//! Both send a method, a path and a body and get a status and a body back, so every
//! subcommand is written once and operates a local file, a running `herald serve` and an
//! AWS deployment alike. In-process calls use a one-off admin token that never leaves
//! the process.

use anyhow::Context;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use clap::Args;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::{secret, Config};
use herald_sqlite::Sqlite;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

/// Where the admin API is: `--url` (with `--admin-token`) or a local `--db` file.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Base URL of a running Herald (e.g. http://127.0.0.1:8080 or the API Gateway URL).
    #[arg(long, env = "HERALD_URL", global = true)]
    url: Option<String>,
    /// Admin token for --url.
    #[arg(
        long,
        env = "HERALD_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    admin_token: Option<String>,
    /// Local database file, used when --url is not given.
    #[arg(long, env = "HERALD_DB", global = true, default_value = "herald.db")]
    db: PathBuf,
    /// Print readable tables and lines instead of JSON.
    #[arg(long, global = true)]
    pub human: bool,
}

/// An answer of the admin API.
pub struct Answer {
    pub status: StatusCode,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub enum Client {
    Http {
        http: reqwest::Client,
        base: String,
        token: String,
    },
    Local {
        router: Router,
        token: String,
    },
}

impl Client {
    pub fn new(target: &Target) -> anyhow::Result<Client> {
        if let Some(url) = &target.url {
            let token = target
                .admin_token
                .clone()
                .context("--url needs --admin-token (or HERALD_ADMIN_TOKEN)")?;
            let http = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(300))
                .build()?;
            return Ok(Client::Http {
                http,
                base: url.trim_end_matches('/').to_string(),
                token,
            });
        }
        let store =
            Sqlite::open(&target.db).with_context(|| format!("opening {}", target.db.display()))?;
        let token = secret::generate();
        let config = Config {
            admin_token_hash: Some(secret::hash(&token)),
            ..Config::default()
        };
        let app = herald_sqlite::app(
            &store,
            config,
            Arc::new(LogDeliverer::default()),
            herald_delivery::CHANNELS,
        );
        Ok(Client::Local {
            router: herald_core::http::router(Arc::new(app)),
            token,
        })
    }

    /// Send one admin request; `body` is JSON unless `content_type` says otherwise.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
    ) -> anyhow::Result<Answer> {
        match self {
            Client::Http { http, base, token } => {
                let mut request = http
                    .request(method, format!("{base}{path}"))
                    .bearer_auth(token);
                if let Some((bytes, content_type)) = body {
                    request = request
                        .header(header::CONTENT_TYPE, content_type)
                        .body(bytes);
                }
                let response = request
                    .send()
                    .await
                    .with_context(|| format!("calling {base}{path}"))?;
                Ok(Answer {
                    status: response.status(),
                    body: response.bytes().await?,
                })
            }
            Client::Local { router, token } => {
                let mut request = Request::builder()
                    .method(method)
                    .uri(path)
                    .header(header::AUTHORIZATION, format!("Bearer {token}"));
                let body = match body {
                    Some((bytes, content_type)) => {
                        request = request.header(header::CONTENT_TYPE, content_type);
                        Body::from(bytes)
                    }
                    None => Body::empty(),
                };
                let response = router.clone().oneshot(request.body(body)?).await?;
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
                Ok(Answer { status, body })
            }
        }
    }

    /// Send a JSON document.
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        document: &serde_json::Value,
    ) -> anyhow::Result<Answer> {
        let bytes = serde_json::to_vec(document)?;
        self.send(method, path, Some((bytes, "application/json")))
            .await
    }
}

/// A path segment, percent-encoded.
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
