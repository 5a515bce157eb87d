//! The behaviour suite (`tests/behaviour`) on the embedded runtime: the shared Router
//! over a temporary SQLite file, jobs run by the core's worker pool code.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use herald_behaviour::{Answer, Runtime};
use herald_core::admin::NewUser;
use herald_core::ports::admin::UserAdmin;
use herald_core::ports::{Deliverer, LeaseQueue, Leased};
use herald_core::worker_pool::{self, PoolOptions};
use herald_core::{App, Config};
use herald_sqlite::Sqlite;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

struct Embedded {
    _dir: tempfile::TempDir,
    store: Sqlite,
    app: Arc<App>,
    router: axum::Router,
}

#[async_trait]
impl Runtime for Embedded {
    type Job = Leased;

    fn config() -> Config {
        Config {
            base_backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            ..Config::default()
        }
    }

    async fn start(config: Config, deliverer: Arc<dyn Deliverer>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
        let app = Arc::new(herald_sqlite::app(
            &store,
            config,
            deliverer,
            herald_delivery::CHANNELS,
        ));
        let router = herald_core::http::router(app.clone());
        Embedded {
            _dir: dir,
            store,
            app,
            router,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = body.map_or_else(Body::empty, Body::from);
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }

    async fn engine_users(&self, bot: &str, users: &[(String, String, String)]) {
        let new: Vec<NewUser> = users
            .iter()
            .map(|(platform, id, bm)| NewUser {
                platform: platform.clone(),
                platform_id: id.clone(),
                bm_id: Some(bm.clone()),
            })
            .collect();
        self.store
            .import_users(&bot.parse().unwrap(), &new)
            .await
            .unwrap();
        self.sql()
            .execute(
                "UPDATE users SET attributes = '{\"step\":\"cart\"}' WHERE bot_id = ?1",
                [bot],
            )
            .unwrap();
    }

    async fn engine_step(&self, bot: &str, bm_id: &str) -> Option<String> {
        let user = self.store.user_json(bot, bm_id).await.unwrap()?;
        user["attributes"]["step"].as_str().map(String::from)
    }

    async fn user_count(&self, bot: &str) -> usize {
        self.sql()
            .query_row("SELECT count(*) FROM users WHERE bot_id = ?1", [bot], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as usize
    }

    async fn take(&self) -> Vec<Leased> {
        let mut taken = Vec::new();
        while let Some(leased) = self
            .store
            .lease(PoolOptions::default().lease, &[])
            .await
            .unwrap()
        {
            taken.push(leased);
        }
        taken
    }

    async fn work(&self, jobs: Vec<Leased>, settle: bool) {
        for leased in jobs {
            if settle {
                worker_pool::run_leased(&self.app, &self.store, &PoolOptions::default(), leased)
                    .await;
            } else {
                herald_core::processor::process(&self.app, &leased.job)
                    .await
                    .unwrap();
            }
        }
    }

    async fn drain(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            worker_pool::drain(&self.app, &self.store, &PoolOptions::default())
                .await
                .unwrap();
            if self.queued().await == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the queue did not drain"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn queued(&self) -> usize {
        self.store.queue_depth().await.unwrap().ready as usize
    }
}

impl Embedded {
    fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self._dir.path().join("herald.db")).unwrap()
    }
}

herald_behaviour::behaviour_suite!(Embedded);
