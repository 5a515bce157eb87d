//! Test support: an in-process harness on a temporary SQLite file, deliverers that count or
//! fail on demand, and a handle on the real `herald` binary for end-to-end tests.
#![allow(dead_code)]

pub mod bots;

use herald_core::admin::NewUser;
use herald_core::domain::Action;
use herald_core::log_deliverer::LogDeliverer;
use herald_core::ports::admin::UserAdmin;
use herald_core::ports::Deliverer;
use herald_core::worker_pool::{drain, PoolOptions};
use herald_core::{App, Config};
use herald_sqlite::events::CreatedEvent;
use herald_sqlite::Sqlite;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The embedded runtime in-process on a temporary database.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Sqlite,
    pub app: Arc<App>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(Config::default(), Arc::new(LogDeliverer::default()))
    }

    pub fn with(config: Config, deliverer: Arc<dyn Deliverer>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path().join("herald.db")).unwrap();
        let app = Arc::new(herald_sqlite::app(
            &store,
            config,
            deliverer,
            herald_delivery::CHANNELS,
        ));
        Harness { dir, store, app }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("herald.db")
    }

    pub async fn event(&self, bot: &str) -> CreatedEvent {
        let action = Action::Screen {
            screen_id: "welcome".into(),
        };
        self.store.new_event(bot, "test", action).await.unwrap()
    }

    /// Import `tg` users with these platform ids; bm_id is `bm-<id>`.
    pub async fn users(&self, bot: &str, platform: &str, ids: impl IntoIterator<Item = String>) {
        let users: Vec<NewUser> = ids
            .into_iter()
            .map(|id| NewUser {
                platform: platform.into(),
                bm_id: Some(format!("bm-{platform}-{id}")),
                platform_id: id,
            })
            .collect();
        self.store
            .import_users(&herald_core::ids::BotId::parse(bot).unwrap(), &users)
            .await
            .unwrap();
    }

    /// Run every job that is due, like the worker pool would.
    pub async fn run_jobs(&self) -> usize {
        drain(&self.app, &self.store, &PoolOptions::default())
            .await
            .unwrap()
    }

    pub async fn user(&self, bot: &str, bm_id: &str) -> serde_json::Value {
        self.store
            .user_json(bot, bm_id)
            .await
            .unwrap()
            .expect("user exists")
    }

    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_path()).unwrap()
    }
}

#[allow(unused_imports)]
pub use herald_fakes::deliverers::{blocked, transient, ScriptedDeliverer};

/// A fast-retry configuration for tests.
pub fn quick_retries() -> Config {
    Config {
        base_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        max_attempts: 3,
        ..Config::default()
    }
}

/// The real `herald` binary serving a database on a free port.
pub struct Server {
    child: Child,
    pub base: String,
    pub db: PathBuf,
    /// What the server printed on stdout before it was ready (the demo banner among it).
    pub banner: String,
}

/// The `http://` address a server printed in `line`.
pub fn url_in(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

pub fn herald() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herald"))
}

impl Server {
    pub fn start(db: &Path, extra: &[&str]) -> Server {
        Server::spawn(db, extra, "warn", Stdio::inherit())
    }

    /// Like [`Server::start`], with every log line (debug level, JSON) written to `log`.
    pub fn start_logging(db: &Path, extra: &[&str], log: &Path) -> Server {
        let file = std::fs::File::create(log).unwrap();
        let mut args = vec!["--log-format", "json"];
        args.extend_from_slice(extra);
        Server::spawn(db, &args, "debug", Stdio::from(file))
    }

    /// Like [`Server::start`], with the process's open-file limit (soft and hard) at `files`.
    pub fn start_with_file_limit(db: &Path, extra: &[&str], files: u32) -> Server {
        let mut command = Command::new("bash");
        command.args([
            "-c",
            &format!("ulimit -n {files} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_herald"),
        ]);
        Server::spawn_command(command, db, extra, "warn", Stdio::inherit())
    }

    fn spawn(db: &Path, extra: &[&str], level: &str, stderr: Stdio) -> Server {
        Server::spawn_command(herald(), db, extra, level, stderr)
    }

    fn spawn_command(
        mut command: Command,
        db: &Path,
        extra: &[&str],
        level: &str,
        stderr: Stdio,
    ) -> Server {
        let mut child = command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            .args(extra)
            .env("RUST_LOG", level)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("herald starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("herald prints its address").unwrap();
        let base = url_in(&first);
        let mut banner = first.clone();
        // The demo banner, if any, follows at once; read what is there without blocking on
        // a quiet server by handing the rest of stdout to a thread.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            base,
            db: db.to_path_buf(),
            banner: String::new(),
        };
        server.wait_healthy();
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            banner.push('\n');
            banner.push_str(&line);
        }
        server.banner = banner;
        server
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.base.trim_start_matches("http://")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("herald did not start listening");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in bytes (Linux: `VmRSS` of `/proc/PID/status`).
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Kill at once, as a crash would.
    pub fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Send SIGTERM to a child process.
    pub fn signal_term(child: &Child) {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        Server::signal_term(&self.child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "herald did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `herald` with these arguments; stdout parsed as JSON.
pub fn herald_json(args: &[&str]) -> serde_json::Value {
    let output = herald().args(args).output().unwrap();
    assert!(
        output.status.success(),
        "herald {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// An event as a CRM knows it: its id and secret.
pub struct Event {
    pub id: String,
    pub secret: String,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POST `body` to the event's URL (secret in the path); status and JSON answer.
pub async fn post(
    server: &Server,
    event: &Event,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = client()
        .post(server.url(&format!("/v1/events/{}/{}", event.id, event.secret)))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// POST `body`, expect 202, return the request id.
pub async fn accept(server: &Server, event: &Event, body: serde_json::Value) -> String {
    let (status, answer) = post(server, event, body).await;
    assert_eq!(status, 202, "{answer}");
    answer["request_id"].as_str().unwrap().to_string()
}

/// The status document, asked with the event's secret as a bearer token.
pub async fn status(server: &Server, event: &Event, request_id: &str) -> serde_json::Value {
    client()
        .get(server.url(&format!("/v1/requests/{request_id}")))
        .bearer_auth(&event.secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The server's `GET /metrics` text (Prometheus format), read with the admin token.
pub async fn metrics(server: &Server, admin_token: &str) -> String {
    client()
        .get(server.url("/metrics"))
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Poll the status until the request is done (at most three minutes).
pub async fn wait_done(server: &Server, event: &Event, request_id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = status(server, event, request_id).await;
        if s["state"] == "done" {
            return s;
        }
        assert!(Instant::now() < deadline, "request did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
