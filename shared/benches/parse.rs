//! Benchmark: parsing and validating event requests, against plain JSON parsing of the same
//! bytes (the least any server must do with them).
//!
//! Four bodies: the External Event document's first example with 10 users, 10,000 users
//! (the limit), 10,000 entries each with its own `data` patched over a `data` of nearly
//! 256 KiB (the worst case of per-user data: every merged size must be measured), and 10
//! users with 1 MiB of `data` (over the 256 KiB `data` limit, so it measures reading up
//! to the refusal — what a hostile client costs). Criterion reports
//! time and bytes/s for each; the ratio to `serde_json::from_slice::<Value>` is what
//! validation adds.
//!
//!     cargo bench -p herald-core --bench parse

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald_core::{request, Limits};
use serde_json::{json, Value};
use std::hint::black_box;

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let users = |n: usize| -> Vec<String> { (0..n).map(|i| (100_000 + i).to_string()).collect() };
    let big_data = "x".repeat(1024 * 1024 - 200);
    vec![
        (
            "10 users",
            json!({"platform": "tg", "users": users(10), "data": {"order": 42, "name": "Ann"}})
                .to_string()
                .into_bytes(),
        ),
        (
            "10000 users",
            json!({"platform": "tg", "users": users(10_000), "data": {}})
                .to_string()
                .into_bytes(),
        ),
        (
            // The worst case of per-user data: every entry's patch over `data` within a few
            // bytes of the 256 KiB limit, so that each merged size must be measured.
            "10000 patches over 256 KiB data",
            {
                let blob = "x".repeat(256 * 1024 - 24);
                let entries: Vec<Value> = users(10_000)
                    .into_iter()
                    .enumerate()
                    .map(|(i, id)| json!({"id": id, "data": {"n": i}}))
                    .collect();
                json!({"platform": "tg", "users": entries, "data": {"blob": blob, "n": 0}})
                    .to_string()
                    .into_bytes()
            },
        ),
        (
            "1 MiB data",
            json!({"platform": "tg", "users": users(10), "data": {"blob": big_data}})
                .to_string()
                .into_bytes(),
        ),
    ]
}

fn parse(c: &mut Criterion) {
    let limits = Limits {
        max_body_bytes: 2 * 1024 * 1024,
        ..Limits::default()
    };
    let mut group = c.benchmark_group("parse");
    for (name, body) in bodies() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("herald", name), &body, |b, body| {
            b.iter(|| {
                let _ = black_box(request::parse(black_box(body), &limits));
            })
        });
        group.bench_with_input(BenchmarkId::new("serde_json", name), &body, |b, body| {
            b.iter(|| black_box(serde_json::from_slice::<Value>(black_box(body)).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
