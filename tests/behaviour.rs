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
use herald_core::Config;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

mod support;

/// The Router over a [`support::Harness`] (a temporary SQLite file).
struct Embedded {
    harness: support::Harness,
    router: axum::Router,
}

#[async_trait]
impl Runtime for Embedded {
    type Job = Leased;

    fn defaults() -> Config {
        Config::default()
    }

    async fn start(config: Config, deliverer: Arc<dyn Deliverer>) -> Self {
        let harness = support::Harness::with(config, deliverer);
        let router = herald_core::http::router(harness.app.clone());
        Embedded { harness, router }
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
        Answer::of(response).await
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
        self.harness
            .store
            .import_users(&bot.parse().unwrap(), &new)
            .await
            .unwrap();
        self.harness
            .sql()
            .execute(
                "UPDATE users SET attributes = '{\"step\":\"cart\"}' WHERE bot_id = ?1",
                [bot],
            )
            .unwrap();
    }

    async fn engine_step(&self, bot: &str, bm_id: &str) -> Option<String> {
        let user = self.harness.store.user_json(bot, bm_id).await.unwrap()?;
        user["attributes"]["step"].as_str().map(String::from)
    }

    async fn user_count(&self, bot: &str) -> usize {
        self.harness
            .sql()
            .query_row("SELECT count(*) FROM users WHERE bot_id = ?1", [bot], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap() as usize
    }

    async fn take(&self) -> Vec<Leased> {
        let mut taken = Vec::new();
        while let Some(leased) = self
            .harness
            .store
            .lease(
                PoolOptions::default().lease,
                &herald_core::ports::LeaseFilter::default(),
            )
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
                worker_pool::run_leased(
                    &self.harness.app,
                    &self.harness.store,
                    &PoolOptions::default(),
                    leased,
                )
                .await;
            } else {
                herald_core::processor::process(&self.harness.app, &leased.job)
                    .await
                    .unwrap();
            }
        }
    }

    async fn drain(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            worker_pool::drain(
                &self.harness.app,
                &self.harness.store,
                &PoolOptions::default(),
            )
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
        self.harness.store.queue_depth().await.unwrap().ready as usize
    }
}

herald_behaviour::behaviour_suite!(Embedded);
