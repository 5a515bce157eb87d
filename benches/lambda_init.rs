//! Benchmark: Lambda cold-start work and size of the `api` and `worker` binaries against a
//! hello-world `lambda_http` function built with the same release profile.
//!
//! Init: each binary is started ROUNDS times (default 20) against a minimal Lambda Runtime
//! API stub on 127.0.0.1; the time from spawning the process to its first
//! `GET /2018-06-01/runtime/invocation/next` is its init (configuration, SDK clients,
//! logging — everything before it can take an event). Measured on this machine's native
//! build (`target/release`), medians compared. Size: the stripped arm64 `bootstrap` files
//! that `cargo lambda build --release --arm64` makes (`target/lambda/*/bootstrap`), when
//! present. Goals: init ≤ 1.5×, size ≤ 2× the baseline.
//!
//!     cargo build --release -p herald-api -p herald-worker -p hello-lambda
//!     cargo lambda build --release --arm64 -p herald-api -p herald-worker -p hello-lambda
//!     cargo bench --bench lambda_init

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{env_or, machine, ms, quantile, today};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn target() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Start `binary` against a Runtime API stub; how long until it asks for its first event.
async fn init_time(binary: &PathBuf) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("HERALD_USERS_TABLE", "users")
        .env("HERALD_EVENTS_TABLE", "events")
        .env("HERALD_REQUESTS_TABLE", "requests")
        .env("HERALD_QUEUE_URL", "http://127.0.0.1:1/queue")
        .env("HERALD_DLQ_URL", "http://127.0.0.1:1/dlq")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (build it first, see this file's header)",
                binary.display()
            )
        });
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(20), listener.accept())
        .await
        .expect("the function asks for an event")
        .unwrap();
    let mut buffer = [0u8; 1024];
    let read = socket.read(&mut buffer).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        String::from_utf8_lossy(&buffer[..read]).contains("/runtime/invocation/next"),
        "unexpected first call"
    );
    let _ = socket.shutdown().await;
    let _ = child.kill();
    let _ = child.wait();
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = env_or("ROUNDS", 20);
    println!("lambda init and size: {} — {}", machine(), today());
    // PROFILE=lambda-small measures the size experiment's native build instead.
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "release".into());
    let release = target().join(&profile);
    let mut medians = Vec::new();
    for name in ["hello", "api", "worker"] {
        let binary = release.join(name);
        init_time(&binary).await; // page cache warm
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            samples.push(init_time(&binary).await);
        }
        let median = quantile(&mut samples, 0.5);
        medians.push(median);
        let size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
        println!(
            "{name:6} init: median {} p90 {} (native {profile}, {rounds} starts; file {:.1} MB)",
            ms(median),
            ms(quantile(&mut samples, 0.9)),
            size as f64 / 1e6
        );
    }
    for (name, median) in ["api", "worker"].iter().zip(&medians[1..]) {
        println!(
            "{name} init ratio to hello-world: {:.2} (goal ≤ 1.5)",
            median.as_secs_f64() / medians[0].as_secs_f64()
        );
    }
    let size = |name: &str| {
        std::fs::metadata(target().join("lambda").join(name).join("bootstrap"))
            .ok()
            .map(|m| m.len())
    };
    match (size("hello"), size("api"), size("worker")) {
        (Some(hello), Some(api), Some(worker)) => println!(
            "arm64 bootstrap sizes: hello {:.1} MB, api {:.1} MB ({:.2}×), worker {:.1} MB ({:.2}×) (goal ≤ 2×)",
            hello as f64 / 1e6,
            api as f64 / 1e6,
            api as f64 / hello as f64,
            worker as f64 / 1e6,
            worker as f64 / hello as f64
        ),
        _ => println!("arm64 sizes: run `cargo lambda build --release --arm64 -p herald-api -p herald-worker -p hello-lambda` first"),
    }
}
