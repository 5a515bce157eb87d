//! End to end: the real `herald` binary on a free port with a temporary database, driven
//! over HTTP and through its CLI, as a CRM and an operator would.

mod support;

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{accept, client, herald, herald_json, post, status, wait_done, Event, Server};

fn create_event(db: &Path, bot: &str) -> Event {
    let created = herald_json(&[
        "events",
        "create",
        "--db",
        db.to_str().unwrap(),
        "--bot",
        bot,
        "--name",
        "order-paid",
        "--action",
        "screen",
        "--screen",
        "thanks",
    ]);
    let id = created["event"]["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(
        created["url_with_secret"],
        format!("/v1/events/{id}/{secret}")
    );
    assert_eq!(created["event"]["url"], format!("/v1/events/{id}"));
    Event { id, secret }
}

/// Import `count` users on `platform` with ids `<prefix><n>` through the CLI.
fn import(db: &Path, bot: &str, platform: &str, prefix: &str, count: usize) -> Value {
    let file = db.with_extension(format!("{platform}.{prefix}.jsonl"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    for n in 0..count {
        writeln!(
            out,
            "{}",
            json!({"platform": platform, "platform_id": format!("{prefix}{n}")})
        )
        .unwrap();
    }
    out.flush().unwrap();
    drop(out);
    herald_json(&[
        "users",
        "import",
        "--db",
        db.to_str().unwrap(),
        "--bot",
        bot,
        file.to_str().unwrap(),
    ])
}

/// The counts of an import report.
fn tally(report: &Value) -> Value {
    json!({
        "inserted": report["inserted"],
        "existing": report["existing"],
        "rejected": report["rejected"],
    })
}

fn user(db: &Path, bot: &str, platform: &str, platform_id: &str) -> Value {
    herald_json(&[
        "users",
        "show",
        "--db",
        db.to_str().unwrap(),
        "--bot",
        bot,
        "--platform",
        platform,
        "--platform-id",
        platform_id,
    ])
}

fn count_users_with_request(db: &Path, request_id: &str) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM users WHERE last_request_id = ?1",
            [request_id],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test]
async fn first_run_creates_a_demo_that_answers_the_three_documented_examples() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let server = Server::start(&db, &[]);
    let url = server
        .banner
        .split_whitespace()
        .find_map(|w| w.strip_prefix("HERALD_EVENT_URL="))
        .expect("the banner prints the demo event URL")
        .to_string();
    assert!(server.banner.contains("curl"), "{}", server.banner);
    let (event_id, secret) = url
        .rsplit_once("/v1/events/")
        .unwrap()
        .1
        .split_once('/')
        .unwrap();
    let event = Event {
        id: event_id.into(),
        secret: secret.into(),
    };
    let examples = [
        json!({"platform": "tg", "users": ["123456"], "data": {}}),
        json!({"platform": "any", "users": "everyone", "data": {}}),
        json!({"users_bm": ["5c517b7773515eaha3078e2f"], "data": {}}),
    ];
    let mut finals = Vec::new();
    for example in examples {
        let id = accept(&server, &event, example).await;
        finals.push(wait_done(&server, &event, &id).await);
    }
    assert_eq!(finals[0]["delivered"], 1);
    assert_eq!(finals[1]["delivered"], 4, "the demo has four users");
    assert_eq!(finals[2]["delivered"], 1);
    let demo_user = user(&db, "demo", "tg", "123456");
    assert_eq!(demo_user["last_request_id"], finals[2]["request_id"]);
    // A second start on the same database does not create another demo.
    drop(server);
    let again = Server::start(&db, &[]);
    assert!(
        !again.banner.contains("HERALD_EVENT_URL"),
        "{}",
        again.banner
    );
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test]
async fn explicit_single_bm_and_per_user_requests_reach_their_users() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop");
    import(&db, "shop", "tg", "", 300);
    let server = Server::start(&db, &["--no-demo"]);

    let ids: Vec<Value> = (0..250)
        .map(|n| {
            if n % 2 == 0 {
                json!(n)
            } else {
                json!(n.to_string())
            }
        })
        .collect();
    let mut with_unknown = ids.clone();
    with_unknown.push(json!("nobody"));
    with_unknown.push(json!(0)); // a duplicate
    let explicit = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": with_unknown, "data": {"sale": 1}}),
    )
    .await;
    let s = wait_done(&server, &event, &explicit).await;
    assert_eq!(
        (
            s["targeted"].as_u64(),
            s["delivered"].as_u64(),
            s["not_found"].as_u64()
        ),
        (Some(251), Some(250), Some(1))
    );
    assert_eq!(count_users_with_request(&db, &explicit), 250);

    let single = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": 299, "data": {"single": true}}),
    )
    .await;
    wait_done(&server, &event, &single).await;
    assert_eq!(
        user(&db, "shop", "tg", "299")["last_request"],
        json!({"single": true})
    );

    let bm_id = user(&db, "shop", "tg", "298")["bm_id"]
        .as_str()
        .unwrap()
        .to_string();
    let by_bm = accept(
        &server,
        &event,
        json!({"users_bm": [bm_id, "not-a-user"], "data": {"bm": 1}}),
    )
    .await;
    let s = wait_done(&server, &event, &by_bm).await;
    assert_eq!(
        (s["delivered"].as_u64(), s["not_found"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        user(&db, "shop", "tg", "298")["last_request"],
        json!({"bm": 1})
    );

    let personal = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": [{"id": "297", "data": {"name": "Ann"}}, "296"], "data": {"shop": "x"}}),
    )
    .await;
    wait_done(&server, &event, &personal).await;
    assert_eq!(
        user(&db, "shop", "tg", "297")["last_request"],
        json!({"shop": "x", "name": "Ann"})
    );
    assert_eq!(
        user(&db, "shop", "tg", "296")["last_request"],
        json!({"shop": "x"})
    );

    let (code, dry) = post(
        &server,
        &event,
        json!({"platform": "tg", "users": ["1", "2", "x"], "dry_run": true}),
    )
    .await;
    assert_eq!(
        (code, dry),
        (
            200,
            json!({"dry_run": true, "lane": "transactional", "targeted": 3, "found": 2})
        )
    );
    assert_eq!(
        user(&db, "shop", "tg", "1")["last_request_id"],
        explicit.as_str(),
        "dry run changed nothing"
    );

    // The CLI prints the same status document as the endpoint.
    let shown = herald_json(&["requests", "show", "--db", db.to_str().unwrap(), &explicit]);
    assert_eq!(shown, status(&server, &event, &explicit).await);
}

#[tokio::test]
async fn everyone_reaches_over_ten_thousand_users_on_one_platform_and_on_any() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "big");
    let report = import(&db, "big", "tg", "t", 10_500);
    assert_eq!(
        tally(&report),
        json!({"inserted": 10_500, "existing": 0, "rejected": 0})
    );
    import(&db, "big", "vk", "v", 1_500);
    import(&db, "someone-else", "tg", "t", 100);
    let server = Server::start(&db, &["--no-demo"]);

    let tg = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone", "data": {"wave": 1}}),
    )
    .await;
    let s = wait_done(&server, &event, &tg).await;
    assert_eq!(
        (
            s["targeted"].as_u64(),
            s["delivered"].as_u64(),
            s["pending"].as_u64()
        ),
        (Some(10_500), Some(10_500), Some(0))
    );
    assert_eq!(count_users_with_request(&db, &tg), 10_500);

    let any = accept(
        &server,
        &event,
        json!({"platform": "any", "users": "everyone", "data": {"wave": 2}}),
    )
    .await;
    let s = wait_done(&server, &event, &any).await;
    assert_eq!(
        (s["targeted"].as_u64(), s["delivered"].as_u64()),
        (Some(12_000), Some(12_000))
    );
    assert_eq!(count_users_with_request(&db, &any), 12_000);
    assert_eq!(
        user(&db, "big", "vk", "v7")["last_request"],
        json!({"wave": 2})
    );
    assert_eq!(
        user(&db, "someone-else", "tg", "t7")["last_request"],
        Value::Null
    );
}

#[tokio::test]
async fn reordered_requests_leave_the_newest_last_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop");
    import(&db, "shop", "tg", "", 3);
    // Accept both requests with no workers running, so the jobs wait in the queue.
    let server = Server::start(&db, &["--no-demo", "--workers", "0"]);
    let older = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": ["0", "1"], "data": {"v": "older"}}),
    )
    .await;
    let newer = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": ["1"], "data": {"v": "newer"}}),
    )
    .await;
    assert!(server.terminate().success());
    // Let the newer request's job run first.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute(
            "UPDATE jobs SET visible_at = visible_at + 1000 WHERE request_id = ?1",
            [&older],
        )
        .unwrap();
    let server = Server::start(&db, &["--no-demo", "--workers", "1"]);
    wait_done(&server, &event, &newer).await;
    wait_done(&server, &event, &older).await;
    assert_eq!(
        user(&db, "shop", "tg", "1")["last_request"],
        json!({"v": "newer"})
    );
    assert_eq!(
        user(&db, "shop", "tg", "0")["last_request"],
        json!({"v": "older"})
    );
}

/// Wait until the request has made some progress but is not finished.
async fn wait_partway(server: &Server, event: &Event, request_id: &str, at_least: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(server, event, request_id).await;
        if s["delivered"].as_u64().unwrap() >= at_least {
            assert_ne!(
                s["state"], "done",
                "finished before it could be interrupted: {s}"
            );
            return s;
        }
        assert!(Instant::now() < deadline, "no progress: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_crash_mid_fan_out_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "big");
    import(&db, "big", "tg", "", 10_000);
    let slow = ["--no-demo", "--simulate-delivery-ms", "20"];
    let server = Server::start(&db, &slow);
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone", "data": {"n": 1}}),
    )
    .await;
    let before = wait_partway(&server, &event, &id, 500).await;
    server.crash();

    let server = Server::start(&db, &["--no-demo"]);
    let s = wait_done(&server, &event, &id).await;
    assert!(before["delivered"].as_u64() < s["delivered"].as_u64());
    assert_eq!(
        (
            s["targeted"].as_u64(),
            s["delivered"].as_u64(),
            s["failed"].as_u64()
        ),
        (Some(10_000), Some(10_000), Some(0))
    );
    assert_eq!(count_users_with_request(&db, &id), 10_000);
    wait_for_empty_queue(&db).await;
}

/// Wait until every job has finished and been removed. A request can be done
/// while a duplicate page (one the crash left leased, now redelivered) is still
/// queued: it is skipped as a repeat when it next comes up (an early page after its wait).
async fn wait_for_empty_queue(db: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<(String, String, i64)> = {
            let conn = rusqlite::Connection::open(db).unwrap();
            let mut query = conn
                .prepare("SELECT kind, state, attempts FROM jobs")
                .unwrap();
            query
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline && left.iter().all(|(_, state, _)| state == "ready"),
            "every job finishes and is removed; left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_stops_accepting_finishes_in_flight_jobs_and_the_rest_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "big");
    import(&db, "big", "tg", "", 3_000);
    let server = Server::start(&db, &["--no-demo", "--simulate-delivery-ms", "20"]);
    let base = server.base.clone();
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    wait_partway(&server, &event, &id, 200).await;
    let exit = server.terminate();
    assert!(exit.success(), "clean exit: {exit:?}");
    assert!(
        client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
    let leased: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM jobs WHERE leased = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(leased, 0, "in-flight jobs were finished or released");

    let server = Server::start(&db, &["--no-demo"]);
    let s = wait_done(&server, &event, &id).await;
    assert_eq!(
        (s["targeted"].as_u64(), s["delivered"].as_u64()),
        (Some(3_000), Some(3_000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worst_case_per_user_data_does_not_stall_the_server() {
    // Every entry's patch lands over data a few bytes under the 256 KiB limit, so each
    // merged size must be measured: once that meant a copy of the data per entry (two such
    // requests stalled /healthz for 26 s). The bound below is generous, not a timing.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop");
    let server = Server::start(&db, &["--no-demo", "--workers", "0"]);
    let blob = "x".repeat(256 * 1024 - 24);
    let entries: Vec<Value> = (0..10_000)
        .map(|i| json!({"id": (100_000 + i).to_string(), "data": {"n": i}}))
        .collect();
    let body = json!({"platform": "tg", "users": entries, "data": {"blob": blob, "n": 0}});
    let posts: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url(&format!("/v1/events/{}/{}", event.id, event.secret));
            let body = body.clone();
            tokio::spawn(async move {
                client()
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let health = client()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(health.is_ok_and(|r| r.status() == 200), "health answered");
    for post in posts {
        assert_eq!(post.await.unwrap(), 202);
    }
}

/// A small tmpfs of this test's own, unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    /// None where this process may not mount (not root, no mount namespace).
    fn mount(dir: &Path, megabytes: u32) -> Option<SmallDisk> {
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

async fn ready(server: &Server) -> u16 {
    client()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Poll readiness until it answers `want` (readiness is reused for a second).
async fn wait_ready(server: &Server, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready(server).await != want {
        assert!(Instant::now() < deadline, "readiness never answered {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_store_through_a_full_disk_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(dir.path(), 8) else {
        eprintln!("skipped: this process cannot mount a tmpfs");
        return;
    };
    let db = disk.0.join("herald.db");
    let event = create_event(&db, "shop");
    let server = Server::start(&db, &["--no-demo", "--min-free-disk-mb", "2"]);
    wait_ready(&server, 200).await;
    // Fill the disk.
    let filler = disk.0.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    wait_ready(&server, 503).await;
    let body = json!({"platform": "tg", "users": ["1"], "data": {"pad": "x".repeat(100_000)}});
    let (status, _) = post(&server, &event, body.clone()).await;
    assert_eq!(status, 503, "an accept is refused while the disk is full");
    assert_eq!(
        client()
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the process still answers"
    );
    std::fs::remove_file(&filler).unwrap();
    wait_ready(&server, 200).await;
    let (status, answer) = post(&server, &event, body).await;
    assert_eq!(status, 202, "{answer}");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_are_counted_and_logged_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop");
    let log = dir.path().join("log.jsonl");
    let token = "e2e-admin-token-0123456789";
    let server = Server::start_logging(&db, &["--no-demo", "--admin-token", token], &log);
    let wrong = Event {
        id: event.id.clone(),
        secret: "not-the-secret".into(),
    };
    for _ in 0..50 {
        let (status, _) = post(&server, &wrong, json!({"platform": "tg", "users": ["1"]})).await;
        assert_eq!(status, 404);
    }
    let scraped = support::metrics(&server, token).await;
    assert!(
        scraped.contains("herald_auth_refused_total{route=\"event\"} 50"),
        "{scraped}"
    );
    drop(server);
    let lines = std::fs::read_to_string(&log).unwrap();
    let refusals = lines
        .lines()
        .filter(|l| l.contains("unknown event or wrong secret"))
        .count();
    assert!(
        (1..=5).contains(&refusals),
        "{refusals} log lines for 50 refusals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_admin_token_goes_to_a_private_file_not_to_stdout() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let server = Server::start(&db, &["--no-demo"]);
    let file = dir.path().join("herald.db.admin-token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        server.banner.contains("herald.db.admin-token"),
        "{}",
        server.banner
    );
    assert!(!server.banner.contains(&token), "the token is not printed");
    assert!(support::metrics(&server, &token).await.contains("herald_"));
    drop(server);
    // Read from a file given to the server.
    let given = dir.path().join("token");
    std::fs::write(&given, "from-a-file-0123456789\n").unwrap();
    let server = Server::start(
        &db,
        &["--no-demo", "--admin-token-file", given.to_str().unwrap()],
    );
    assert!(support::metrics(&server, "from-a-file-0123456789")
        .await
        .contains("herald_"));
}

#[test]
fn a_client_that_stops_at_a_broken_pipe_still_reads_the_413() {
    // Python's urllib sends the whole body before it reads the answer, and gives up on a
    // broken pipe: the server must read (and drop) the body before answering 413.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop");
    let server = Server::start(&db, &["--no-demo"]);
    let url = server.url(&format!("/v1/events/{}/{}", event.id, event.secret));
    let script = r#"
import sys, urllib.request, urllib.error
for mib in (3, 20):
    body = b'{"platform": "tg", "users": ["1"], "data": {"pad": "' + b'x' * (mib << 20) + b'"}}'
    request = urllib.request.Request(sys.argv[1], data=body, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30)
        print(mib, "accepted")
    except urllib.error.HTTPError as e:
        print(mib, e.code, e.headers.get("Content-Type"))
    except Exception as e:
        print(mib, "failed:", repr(e))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script, &url])
        .output()
        .expect("python3 runs");
    let answer = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        answer.trim(),
        "3 413 application/problem+json\n20 413 application/problem+json",
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_server_works_is_whole_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "big");
    import(&db, "big", "tg", "", 3_000);
    let server = Server::start(&db, &["--no-demo", "--simulate-delivery-ms", "5"]);
    let id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": "everyone", "data": {"n": 1}}),
    )
    .await;
    wait_partway(&server, &event, &id, 100).await;
    let copy = dir.path().join("copy.db");
    let made = herald_json(&[
        "db",
        "backup",
        "--db",
        db.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert!(made["bytes"].as_u64().unwrap() > 0, "{made}");
    let refused = herald()
        .args([
            "db",
            "backup",
            "--db",
            db.to_str().unwrap(),
            copy.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "never written over a file");
    {
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let users: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 3_000);
    }
    // Restore: stop, put the copy in place, start; the request goes on to the end.
    assert!(server.terminate().success());
    for companion in ["herald.db-wal", "herald.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(companion));
    }
    std::fs::rename(&copy, &db).unwrap();
    let server = Server::start(&db, &["--no-demo"]);
    let s = wait_done(&server, &event, &id).await;
    assert_eq!(s["targeted"], 3_000, "{s}");
    assert_eq!(s["delivered"], 3_000, "{s}");
}

#[tokio::test]
async fn json_logs_carry_request_ids_but_never_data_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop");
    import(&db, "shop", "tg", "", 2);
    let log = dir.path().join("log.jsonl");
    let server = Server::start_logging(&db, &["--no-demo"], &log);
    let body =
        json!({"platform": "tg", "users": ["0", "1"], "data": {"card": "SENTINEL-4111-1111"}});
    let request_id = accept(&server, &event, body).await;
    wait_done(&server, &event, &request_id).await;
    assert!(server.terminate().success());

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
        .collect();
    assert!(lines.iter().any(
        |l| l["request_id"] == request_id.as_str() && l["message"] == "event request accepted"
    ));
    assert!(lines
        .iter()
        .any(|l| l["request_id"] == request_id.as_str() && l["message"] == "job done"));
    assert!(
        !text.contains("SENTINEL-4111-1111"),
        "request data leaked into logs"
    );
    assert!(!text.contains(&event.secret), "the secret leaked into logs");
}

#[test]
fn importing_the_same_users_again_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    assert_eq!(
        tally(&import(&db, "shop", "tg", "", 1_000)),
        json!({"inserted": 1000, "existing": 0, "rejected": 0})
    );
    assert_eq!(
        tally(&import(&db, "shop", "tg", "", 1_000)),
        json!({"inserted": 0, "existing": 1000, "rejected": 0})
    );
}

#[test]
fn import_reports_bad_lines_and_keeps_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let file = dir.path().join("users.jsonl");
    std::fs::write(
        &file,
        "{\"platform\":\"tg\",\"platform_id\":\"1\"}\nnot json\n{\"platform\":\"tg\",\"platform_id\":2,\"bm_id\":\"b2\"}\n{\"platform\":\"tg\"}\n",
    )
    .unwrap();
    let output = herald()
        .args([
            "users",
            "import",
            "--db",
            db.to_str().unwrap(),
            "--bot",
            "shop",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        tally(&report),
        json!({"inserted": 2, "existing": 0, "rejected": 2})
    );
    let lines: Vec<&Value> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["line"])
        .collect();
    assert_eq!(lines, [&json!(2), &json!(4)], "{report}");
    assert_eq!(user(&db, "shop", "tg", "2")["bm_id"], "b2");
    // A generated bm_id is 24 hex characters.
    let generated = user(&db, "shop", "tg", "1")["bm_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        generated.len() == 24 && generated.chars().all(|c| c.is_ascii_hexdigit()),
        "{generated}"
    );
}

#[test]
fn import_reads_standard_input_given_a_dash() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let mut child = herald()
        .args([
            "users",
            "import",
            "--db",
            db.to_str().unwrap(),
            "--bot",
            "shop",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"platform\":\"tg\",\"platform_id\":\"7\"}\n{\"platform\":\"vk\",\"platform_id\":8}\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        tally(&report),
        json!({"inserted": 2, "existing": 0, "rejected": 0})
    );
    assert_eq!(user(&db, "shop", "vk", "8")["platform_id"], "8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_sweep_runs_on_its_schedule_and_keeps_what_users_show() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    let event = create_event(&db, "shop");
    import(&db, "shop", "tg", "", 3);
    // Out-of-range settings are refused before anything starts.
    for bad in [
        ["--retention-days", "-1"],
        ["--retention-days", "NaN"],
        ["--retention-sweep-every", "0"],
    ] {
        let output = herald()
            .args(["serve", "--no-demo", "--db", db.to_str().unwrap()])
            .args(bad)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad:?}");
    }
    // Requests kept about a second and a half, swept every second.
    let server = Server::start(
        &db,
        &[
            "--no-demo",
            "--retention-days",
            "0.00002",
            "--retention-sweep-every",
            "1",
        ],
    );
    let request_id = accept(
        &server,
        &event,
        json!({"platform": "tg", "users": ["1"], "data": {"sale": 7}}),
    )
    .await;
    wait_done(&server, &event, &request_id).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let response = client()
            .get(server.url(&format!("/v1/requests/{request_id}")))
            .bearer_auth(&event.secret)
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the finished request was never swept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The request is gone; the data its user's state shows is not.
    drop(server);
    let shown = user(&db, "shop", "tg", "1");
    assert_eq!(shown["last_request"], json!({"sale": 7}), "{shown}");
    assert_eq!(shown["last_request_id"], request_id.as_str());
}
