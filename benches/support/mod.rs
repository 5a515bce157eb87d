//! What the benchmarks share: machine facts, percentiles, an embedded Herald in process.
#![allow(dead_code)]

use herald_core::admin::NewUser;
use herald_core::domain::Action;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::ports::admin::UserAdmin;
use herald_core::{App, Config};
use herald_sqlite::Sqlite;
use std::sync::Arc;
use std::time::Duration;

/// Cores and CPU model, printed with every figure.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{} cores, {cpu}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    )
}

/// Today (UTC), for the record.
pub fn today() -> String {
    herald_core::status::rfc3339(herald_core::domain::now_ms())[..10].to_string()
}

/// The `q`-quantile of samples, sorted in place (one definition, beside the lanes figures).
// Not every benchmark that includes this module uses it.
#[allow(unused_imports)]
pub use herald_fakes::lanes_report::quantile;

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// An environment variable as a number, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Herald's embedded runtime in process on a fresh database.
pub struct Embedded {
    pub dir: tempfile::TempDir,
    pub store: Sqlite,
    pub app: Arc<App>,
    /// The event's URL path, secret included.
    pub url: String,
}

impl Embedded {
    pub async fn new(bot: &str) -> Embedded {
        Embedded::with(bot, Config::default()).await
    }

    pub async fn with(bot: &str, config: Config) -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
        let app = Arc::new(herald_sqlite::app(
            &store,
            config,
            Arc::new(LogDeliverer::default()),
            herald_delivery::CHANNELS,
        ));
        let event = store
            .new_event(
                bot,
                "bench",
                Action::Screen {
                    screen_id: "s".into(),
                },
            )
            .await
            .unwrap();
        let url = format!("/v1/events/{}/{}", event.event_id, event.secret);
        Embedded {
            dir,
            store,
            app,
            url,
        }
    }

    /// Import `count` `tg` users with platform ids `0..count`.
    pub async fn users(&self, bot: &str, count: usize) {
        let mut batch = Vec::with_capacity(5000);
        for i in 0..count {
            batch.push(NewUser {
                platform: "tg".into(),
                platform_id: i.to_string(),
                bm_id: None,
            });
            if batch.len() == 5000 {
                self.store
                    .import_users(&herald_core::ids::BotId::parse(bot).unwrap(), &batch)
                    .await
                    .unwrap();
                batch.clear();
            }
        }
        if !batch.is_empty() {
            self.store
                .import_users(&herald_core::ids::BotId::parse(bot).unwrap(), &batch)
                .await
                .unwrap();
        }
    }
}
