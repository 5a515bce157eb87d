//! The batch processor over the SQLite adapters where the embedded store's own mechanics
//! matter: expansion pages, leases and postponement, retention, shared request data,
//! corrupt rows. The rules both runtimes share (outcomes, monotonic `last_request`,
//! redelivery, retries, samples) are the behaviour suite's (`tests/behaviour.rs`).

mod support;

use herald_core::domain::{DeliveryResult, Job, JobKind, JobUser, RequestState, UserRef};
use herald_core::ids::RequestId;
use herald_core::intake::{self, Answer};
use herald_core::log_deliverer::LogDeliverer;
use herald_core::ports::{JobQueue, LeaseQueue, RequestLog};
use herald_core::processor;
use herald_core::status::RequestStatus;
use herald_core::Config;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::{blocked, quick_retries, Harness, ScriptedDeliverer};

/// Run the due jobs `attempts` times, each failing job's backoff skipped, with
/// `attempts` the most a job gets before it is kept as dead.
async fn run_jobs_to_their_last_attempt(h: &Harness, attempts: u32) {
    let options = herald_core::worker_pool::PoolOptions {
        max_job_attempts: attempts,
        ..Default::default()
    };
    for _ in 0..attempts {
        herald_core::worker_pool::drain(&h.app, &h.store, &options)
            .await
            .unwrap();
        h.sql()
            .execute("UPDATE jobs SET visible_at = 0", [])
            .unwrap();
    }
}

async fn accept(h: &Harness, event_id: &str, body: Value) -> RequestId {
    let event_id = herald_core::ids::EventId::parse(event_id).unwrap();
    let event = h.app.ports.events.event(&event_id).await.unwrap().unwrap();
    match intake::accept(&h.app, &event, body.to_string().as_bytes(), None).await {
        Ok(Answer::Accepted(a)) => a.request_id,
        Ok(Answer::DryRun(_) | Answer::Replay(_)) => panic!("not accepted"),
        Err(e) => panic!("refused: {e:?}"),
    }
}

async fn status(h: &Harness, request_id: &RequestId) -> RequestStatus {
    h.store.progress(request_id).await.unwrap().unwrap().into()
}

fn ids(range: std::ops::Range<u32>) -> impl Iterator<Item = String> {
    range.map(|i| i.to_string())
}

#[tokio::test]
async fn a_huge_retry_after_waits_no_longer_than_the_longest_backoff() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    deliverer.fail(
        "1",
        vec![DeliveryResult::Retry {
            reason: "rate_limited".into(),
            message: "Retry-After: 9999999999".into(),
            after: Some(Duration::from_secs(9_999_999_999)),
        }],
    );
    let h = Harness::with(Config::default(), deliverer.clone());
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..2)).await;
    accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1"]}),
    )
    .await;
    let before = herald_core::domain::now_ms();
    h.run_jobs().await;
    let visible_at: i64 = h
        .sql()
        .query_row(
            "SELECT visible_at FROM jobs WHERE state = 'ready'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let longest = Config::default().max_backoff.as_millis() as i64;
    assert!(
        visible_at <= herald_core::domain::now_ms() + longest && visible_at >= before,
        "the retry waits {} ms",
        visible_at - before
    );
}

/// A deliverer with a bug: it panics for every user.
struct Panicking;

#[async_trait::async_trait]
impl herald_core::ports::Deliverer for Panicking {
    async fn deliver(&self, _: &herald_core::ports::Delivery<'_>) -> DeliveryResult {
        panic!("a bug in a deliverer")
    }
}

#[tokio::test]
async fn a_job_that_panics_fails_alone_and_is_kept_as_dead() {
    let h = Harness::with(Config::default(), Arc::new(Panicking));
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..3)).await;
    accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1", "2"]}),
    )
    .await;
    run_jobs_to_their_last_attempt(&h, 2).await;
    let depth = h.store.queue_depth().await.unwrap();
    assert_eq!(
        (depth.ready, depth.dead),
        (0, 1),
        "retried, then kept as dead"
    );
    let error: String = h
        .sql()
        .query_row("SELECT last_error FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert!(error.contains("panicked"), "{error}");
}

#[tokio::test]
async fn a_requests_data_is_stored_once_however_many_users_it_reaches() {
    // One 205 KB request to 2,000 users once made the file 412 MB: a copy per user.
    let h = Harness::new();
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(0..2000)).await;
    let big = "x".repeat(205 * 1024);
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": "everyone", "data": {"blob": big}}),
    )
    .await;
    let own = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": [{"id": "7", "data": {"mine": true}}], "data": {"n": 1}}),
    )
    .await;
    h.run_jobs().await;
    assert_eq!(status(&h, &id).await.delivered, 2000);
    assert_eq!(status(&h, &own).await.delivered, 1);
    h.store.checkpoint().unwrap();
    let bytes = std::fs::metadata(h.db_path()).unwrap().len();
    assert!(bytes < 16 << 20, "the file is {bytes} bytes");
    // Users read as before: the request's data, or their own merged over it.
    let user = |platform_id: &str| {
        h.sql()
            .query_row(
                "SELECT bm_id FROM users WHERE platform_id = ?1",
                [platform_id],
                |r| r.get::<_, String>(0),
            )
            .unwrap()
    };
    let one = h.user("bot", &user("1")).await;
    assert_eq!(
        one["last_request"]["blob"].as_str().map(str::len),
        Some(205 * 1024)
    );
    assert_eq!(one["last_request_id"], id.as_str());
    let seven = h.user("bot", &user("7")).await;
    assert_eq!(seven["last_request"], json!({"n": 1, "mine": true}));
}

#[allow(clippy::too_many_lines)] // one scenario, read best whole
#[tokio::test]
async fn the_retention_sweep_deletes_what_is_old_but_never_data_a_user_still_holds() {
    let h = Harness::new();
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(0..3)).await;
    let pad = "x".repeat(100_000);
    // Old: user 0 still holds it. Older still: replaced on every user by `newer`.
    let held = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["0"], "data": {"held": pad}}),
    )
    .await;
    let replaced = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1", "2"], "data": {"old": pad}}),
    )
    .await;
    h.run_jobs().await;
    let newer = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1", "2"], "data": {"new": 1}}),
    )
    .await;
    // Finished and old, but user 2's last request: its data stays.
    let latest_of_2 = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["2"]}),
    )
    .await;
    h.run_jobs().await;
    let unfinished = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["0"]}),
    )
    .await;
    let month_ago = herald_core::domain::now_ms() - 31 * 24 * 3600 * 1000;
    h.sql()
        .execute(
            "UPDATE requests SET created_at = ?1, updated_at = ?1 WHERE id IN (?2, ?3, ?4, ?5)",
            rusqlite::params![
                month_ago,
                held.as_str(),
                replaced.as_str(),
                latest_of_2.as_str(),
                unfinished.as_str()
            ],
        )
        .unwrap();
    let swept = h
        .store
        .sweep(Duration::from_secs(30 * 24 * 3600))
        .await
        .unwrap();
    assert_eq!(swept.requests, 3, "{swept:?}");
    assert!(swept.outcomes >= 4, "{swept:?}");
    assert_eq!(swept.data, 1, "only data nobody refers to: {swept:?}");
    let exists = |table: &str, id: &str| -> bool {
        h.sql()
            .query_row(
                &format!(
                    "SELECT count(*) FROM {table} WHERE {} = ?1",
                    if table == "requests" {
                        "id"
                    } else {
                        "request_id"
                    }
                ),
                [id],
                |r| r.get::<_, i64>(0),
            )
            .unwrap()
            > 0
    };
    assert!(
        !exists("requests", &held) && exists("request_data", &held),
        "a user still holds it"
    );
    assert!(!exists("requests", &replaced) && !exists("request_data", &replaced));
    assert!(exists("requests", &newer), "young: kept");
    assert!(exists("requests", &unfinished), "unfinished: kept");
    assert!(!exists("requests", &latest_of_2) && exists("request_data", &latest_of_2));
    let user0 = h
        .sql()
        .query_row("SELECT bm_id FROM users WHERE platform_id = '0'", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    assert_eq!(
        h.user("bot", &user0).await["last_request"]["held"]
            .as_str()
            .map(str::len),
        Some(100_000),
        "the user reads the data as before"
    );
    assert!(swept.pages_freed > 0, "space was given back: {swept:?}");
    let free: i64 = h
        .sql()
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0);
}

#[tokio::test]
async fn a_bot_over_its_backlog_is_refused_first_and_accepted_again_once_it_drains() {
    let config = Config {
        max_backlog_jobs: 3,
        ..Config::default()
    };
    let h = Harness::with(config, Arc::new(LogDeliverer::default()));
    let flooding = h.event("flood").await;
    let other = h.event("calm").await;
    h.users("flood", "tg", ids(0..1)).await;
    h.users("calm", "tg", ids(0..1)).await;
    let body = json!({"platform": "tg", "users": ["0"]}).to_string();
    let try_accept = |event_id: herald_core::ids::EventId| {
        let (h, body) = (&h, body.clone());
        async move {
            let event = h.app.ports.events.event(&event_id).await.unwrap().unwrap();
            // Past the backlog's count, which is kept for a moment.
            tokio::time::sleep(herald_sqlite::backlog::FRESH_FOR + Duration::from_millis(20)).await;
            intake::accept(&h.app, &event, body.as_bytes(), None).await
        }
    };
    for _ in 0..3 {
        assert!(try_accept(flooding.event_id.clone()).await.is_ok());
    }
    let refused = try_accept(flooding.event_id.clone()).await;
    let Err(refusal) = refused else {
        panic!("the fourth request waits for the backlog")
    };
    assert!(
        matches!(refusal, herald_core::problem::ApiError::Backlogged),
        "{refusal:?}"
    );
    let answer = axum::response::IntoResponse::into_response(refusal);
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "30", "as documented");
    assert!(
        try_accept(other.event_id.clone()).await.is_ok(),
        "other bots go on"
    );
    h.run_jobs().await;
    assert!(
        try_accept(flooding.event_id.clone()).await.is_ok(),
        "drained"
    );
}

#[tokio::test]
async fn everyone_pages_every_shard_and_targeted_becomes_final() {
    let config = Config {
        expand_page: 7,
        deliver_batch: 3,
        ..Config::default()
    };
    let h = Harness::with(config, Arc::new(LogDeliverer::default()));
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(0..50)).await;
    h.users("bot", "vk", ids(0..20)).await;
    h.users("other-bot", "tg", ids(100..130)).await;
    let tg = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": "everyone", "data": {"a": 1}}),
    )
    .await;
    let any = accept(
        &h,
        &event.event_id,
        json!({"platform": "any", "users": "everyone", "data": {"a": 2}}),
    )
    .await;
    assert_eq!(
        status(&h, &tg).await.targeted,
        None,
        "unknown until expanded"
    );
    h.run_jobs().await;
    let tg = status(&h, &tg).await;
    assert_eq!(
        (tg.targeted, tg.delivered, tg.state),
        (Some(50), 50, "done")
    );
    let any = status(&h, &any).await;
    assert_eq!(
        (any.targeted, any.delivered, any.state),
        (Some(70), 70, "done")
    );
    assert_eq!(
        h.user("bot", "bm-vk-3").await["last_request"],
        json!({"a": 2})
    );
    // Other bots' users are not part of this bot's everyone.
    assert_eq!(
        h.user("other-bot", "bm-tg-100").await["last_request"],
        Value::Null
    );
}

/// `everyone` accepted for a bot of 40 users, in pages of 5: the harness and request id.
async fn everyone_of_forty_in_pages_of_five() -> (Harness, RequestId) {
    let config = Config {
        expand_page: 5,
        ..Config::default()
    };
    let h = Harness::with(config, Arc::new(LogDeliverer::default()));
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(0..40)).await;
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": "everyone"}),
    )
    .await;
    (h, id)
}

/// The jobs on the queue now.
fn queued_jobs(h: &Harness) -> Vec<Job> {
    h.sql()
        .prepare("SELECT payload FROM jobs")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|p| serde_json::from_str(&p.unwrap()).unwrap())
        .collect()
}

#[tokio::test]
async fn a_redelivered_expand_page_is_skipped() {
    let (h, id) = everyone_of_forty_in_pages_of_five().await;
    let first_pages = queued_jobs(&h);
    h.run_jobs().await;
    // Every first page again, as a queue might redeliver them.
    for job in &first_pages {
        assert!(matches!(job.kind, JobKind::Expand { .. }));
        let report = processor::process(&h.app, job).await.unwrap();
        assert_eq!(report.enqueued, 0);
    }
    h.run_jobs().await;
    let s = status(&h, &id).await;
    assert_eq!((s.targeted, s.delivered), (Some(40), 40));
}

/// A page's job is on the queue before the page that enqueued it records the new cursor,
/// and an idle worker can take it in between: it must wait, not be taken for a repeat.
#[tokio::test]
async fn a_page_that_runs_before_the_page_before_it_advanced_waits_for_it() {
    let (h, id) = everyone_of_forty_in_pages_of_five().await;
    let first = queued_jobs(&h).remove(0);
    let JobKind::Expand { shard, .. } = first.kind else {
        panic!("an expansion job first")
    };
    processor::process(&h.app, &first).await.unwrap();
    let recorded: String = h
        .sql()
        .query_row(
            "SELECT cursor FROM expansions WHERE request_id = ?1 AND shard = ?2",
            rusqlite::params![id.as_str(), shard],
            |r| r.get(0),
        )
        .unwrap();
    let next = queued_jobs(&h)
        .into_iter()
        .find(|job| matches!(&job.kind, JobKind::Expand { cursor: Some(c), .. } if *c == recorded))
        .expect("the next page is enqueued");
    // As if the first page's cursor had not been recorded yet.
    h.sql()
        .execute(
            "UPDATE expansions SET cursor = NULL WHERE request_id = ?1 AND shard = ?2",
            rusqlite::params![id.as_str(), shard],
        )
        .unwrap();
    let early = processor::process(&h.app, &next).await.unwrap();
    let wait = early.run_again_after.expect("it waits");
    assert!(wait < Duration::from_secs(1), "briefly at first: {wait:?}");
    assert_eq!(early.enqueued, 0);
    // Had it waited ten minutes (its predecessor's job dead), it would look again every
    // 30 s, not every few milliseconds.
    let ten_minutes_ago =
        ulid::Ulid::from_parts((herald_core::domain::now_ms() - 600_000) as u64, 1);
    let long_waiting = Job {
        id: ten_minutes_ago.to_string().to_lowercase(),
        ..next.clone()
    };
    let late = processor::process(&h.app, &long_waiting).await.unwrap();
    assert_eq!(late.run_again_after, Some(Duration::from_secs(30)));
    // The first page's cursor lands; the waiting page then runs.
    h.sql()
        .execute(
            "UPDATE expansions SET cursor = ?3 WHERE request_id = ?1 AND shard = ?2",
            rusqlite::params![id.as_str(), shard, recorded],
        )
        .unwrap();
    let on_time = processor::process(&h.app, &next).await.unwrap();
    assert_eq!(on_time.run_again_after, None);
    assert!(on_time.enqueued > 0, "the page is expanded: {on_time:?}");
    h.run_jobs().await;
    let s = status(&h, &id).await;
    assert_eq!((s.targeted, s.delivered, s.state), (Some(40), 40, "done"));
}

#[tokio::test]
async fn jobs_of_a_request_still_being_accepted_wait_and_of_an_aborted_one_do_nothing() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    let h = Harness::with(Config::default(), deliverer.clone());
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..2)).await;
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1"]}),
    )
    .await;
    let job = Job::deliver(
        &id,
        herald_core::lane::Lane::Transactional,
        0,
        vec![JobUser {
            user: UserRef::Platform {
                platform: "tg".into(),
                id: "1".into(),
            },
            patch: None,
        }],
    );
    h.store
        .set_request_state(&id, RequestState::Accepting)
        .await
        .unwrap();
    let waiting = processor::process(&h.app, &job).await.unwrap();
    assert!(waiting.run_again_after.is_some());
    assert_eq!(deliverer.total_calls(), 0);
    // Accepted while the job looks again in process: it runs then, not a queue delay
    // later.
    let (store, request) = (h.store.clone(), id.clone());
    let accepting_ends = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        store
            .set_request_state(&request, RequestState::Accepted)
            .await
            .unwrap();
    });
    let ran = processor::process(&h.app, &job).await.unwrap();
    accepting_ends.await.unwrap();
    assert_eq!((ran.run_again_after, ran.delivered), (None, 1), "{ran:?}");
    h.store
        .set_request_state(&id, RequestState::Aborted)
        .await
        .unwrap();
    let aborted = processor::process(&h.app, &job).await.unwrap();
    assert_eq!(aborted.delivered, 0);
    assert_eq!(
        deliverer.total_calls(),
        1,
        "only the accepted run delivered"
    );
}

#[tokio::test]
async fn a_job_that_keeps_failing_on_the_store_is_kept_dead() {
    let h = Harness::new();
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..2)).await;
    accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1"]}),
    )
    .await;
    // A job for a request whose outcomes table is gone fails on every attempt.
    h.sql().execute_batch("DROP TABLE outcomes").unwrap();
    run_jobs_to_their_last_attempt(&h, 2).await;
    let depth = h.store.queue_depth().await.unwrap();
    assert_eq!((depth.ready, depth.dead), (0, 1));
    let error: String = h
        .sql()
        .query_row("SELECT last_error FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert!(error.contains("outcomes"), "{error}");
    // Enqueueing still works for other jobs.
    h.store
        .enqueue(vec![], std::time::Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_postponed_job_does_not_use_up_an_attempt() {
    let h = Harness::new();
    let event = h.event("bot").await;
    accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1"]}),
    )
    .await;
    let lease = std::time::Duration::from_secs(60);
    let first = h
        .store
        .lease(lease, &herald_core::ports::LeaseFilter::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.attempts, 1);
    h.store
        .postpone(&first.job.id, std::time::Duration::ZERO)
        .await
        .unwrap();
    let again = h
        .store
        .lease(lease, &herald_core::ports::LeaseFilter::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.job.id.as_str(), again.attempts),
        (first.job.id.as_str(), 1)
    );
}

#[tokio::test]
async fn the_log_deliverer_records_the_rendered_message_and_fails_a_missing_value() {
    let h = Harness::new();
    let action = herald_core::domain::Action::Message(herald_core::message::Message::text(
        "Hi {{ last_request.name }}",
    ));
    let event = h.store.new_event("bot", "greet", action).await.unwrap();
    h.users("bot", "tg", ids(1..3)).await;
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": [{"id": "1", "data": {"name": "Ann"}}, "2"]}),
    )
    .await;
    h.run_jobs().await;
    let s = status(&h, &id).await;
    assert_eq!((s.delivered, s.failed), (1, 1));
    assert_eq!(s.deliveries[0]["text"], "Hi Ann");
    assert_eq!(s.errors[0].reason, "template");
}

#[tokio::test]
async fn error_samples_keep_a_few_of_each_reason_and_deliveries_a_few_in_all() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    for i in 1..=8 {
        deliverer.fail(&i.to_string(), vec![blocked()]);
        deliverer.fail(
            &(i + 8).to_string(),
            vec![herald_core::domain::DeliveryResult::Permanent {
                reason: "chat_not_found".into(),
                message: "Bad Request: chat not found".into(),
            }],
        );
    }
    let h = Harness::with(quick_retries(), deliverer);
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..31)).await;
    let users: Vec<String> = ids(1..31).collect();
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": users}),
    )
    .await;
    h.run_jobs().await;
    let s = status(&h, &id).await;
    assert_eq!((s.failed, s.delivered), (16, 14));
    assert_eq!(s.failed_by_reason.get("blocked"), Some(&8));
    assert_eq!(s.failed_by_reason.get("chat_not_found"), Some(&8));
    let of = |reason: &str| s.errors.iter().filter(|e| e.reason == reason).count();
    assert_eq!(
        (of("blocked"), of("chat_not_found")),
        (5, 5),
        "five of each, so every reason shows"
    );

    let logged = Harness::new();
    let event = logged.event("bot").await;
    logged.users("bot", "tg", ids(1..11)).await;
    let users: Vec<String> = ids(1..11).collect();
    let id = accept(
        &logged,
        &event.event_id,
        json!({"platform": "tg", "users": users}),
    )
    .await;
    logged.run_jobs().await;
    let s = status(&logged, &id).await;
    assert_eq!((s.delivered, s.deliveries.len()), (10, 5));
}

#[tokio::test]
async fn jobs_of_a_request_left_accepting_for_minutes_are_dropped() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    let h = Harness::with(Config::default(), deliverer.clone());
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..2)).await;
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1"]}),
    )
    .await;
    // The accept call that recorded it never came back (the client was answered 503).
    h.store
        .set_request_state(&id, RequestState::Accepting)
        .await
        .unwrap();
    h.sql()
        .execute(
            "UPDATE requests SET record = json_set(record, '$.created_at', 0) WHERE id = ?1",
            [id.as_str()],
        )
        .unwrap();
    let payload: String = h
        .sql()
        .query_row("SELECT payload FROM jobs", [], |r| r.get(0))
        .unwrap();
    let job: Job = serde_json::from_str(&payload).unwrap();
    let report = processor::process(&h.app, &job).await.unwrap();
    assert_eq!(report.run_again_after, None, "dropped, not waited for");
    assert_eq!(deliverer.total_calls(), 0);
}

#[tokio::test]
async fn a_job_out_of_time_hands_the_users_it_did_not_reach_to_a_new_job() {
    let deliverer = Arc::new(ScriptedDeliverer {
        each: Duration::from_millis(40),
        ..ScriptedDeliverer::default()
    });
    let config = Config {
        job_time_budget: Duration::from_millis(100),
        delivery_concurrency: 1,
        ..Config::default()
    };
    let h = Harness::with(config, deliverer.clone());
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(0..10)).await;
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": (0..10).map(|i| i.to_string()).collect::<Vec<_>>()}),
    )
    .await;
    // One job of ten users at 40 ms each would take 400 ms; the budget of 100 ms lets a
    // job start three or so, and each next job takes over the rest.
    let jobs = h.run_jobs().await;
    assert!(jobs >= 3, "the users went on in new jobs: {jobs} jobs ran");
    let calls = deliverer.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 10, "every user reached: {calls:?}");
    assert!(
        calls.values().all(|&n| n == 1),
        "nobody delivered twice: {calls:?}"
    );
    let s = status(&h, &id).await;
    assert_eq!((s.state, s.delivered, s.pending), ("done", 10, 0));
}

/// A job whose request record cannot be read goes to the dead letters on its first
/// attempt, with its reason, instead of being retried like a busy store until its attempts
/// run out; other jobs run on.
#[tokio::test]
async fn a_job_meeting_a_corrupt_record_is_dead_at_once_with_its_reason() {
    let h = Harness::new();
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..3)).await;
    let broken = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1"]}),
    )
    .await;
    h.sql()
        .execute(
            "UPDATE requests SET record = '{\"not\": \"a record\"}' WHERE id = ?1",
            [broken.as_str()],
        )
        .unwrap();
    let fine = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["2"]}),
    )
    .await;
    h.run_jobs().await;
    let (attempts, error): (u32, String) = h
        .sql()
        .query_row(
            "SELECT attempts, last_error FROM jobs WHERE request_id = ?1 AND state = 'dead'",
            [broken.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(attempts, 1, "not retried");
    assert!(error.starts_with("corrupt record"), "{error}");
    assert!(
        !error.contains("a record"),
        "stored contents stay out of the reason: {error}"
    );
    assert_eq!(status(&h, &fine).await.delivered, 1);
}

#[tokio::test]
async fn a_scheduled_requests_job_waits_in_the_queue_and_one_come_up_early_is_put_back() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    let h = Harness::with(Config::default(), deliverer.clone());
    let event = h.event("bot").await;
    h.users("bot", "tg", ids(1..3)).await;
    let in_a_day = herald_core::domain::now_ms() + 86_400_000;
    let id = accept(
        &h,
        &event.event_id,
        json!({"platform": "tg", "users": ["1", "2"],
               "send_at": herald_core::status::rfc3339(in_a_day)}),
    )
    .await;
    // Queued to become visible at send_at, and counted so (not as a job long overdue).
    let visible_at: i64 = h
        .sql()
        .query_row("SELECT min(visible_at) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert!(
        (in_a_day..in_a_day + 60_000).contains(&visible_at),
        "visible at send_at, never before: {visible_at} against {in_a_day}"
    );
    assert_eq!(h.store.queue_depth().await.unwrap().oldest_ready_ms, 0);
    h.run_jobs().await;
    assert_eq!(deliverer.total_calls(), 0);
    // A job that comes up early (a queue that cannot wait a day) is put back for at most
    // fifteen minutes at a time, having done nothing.
    let (record, _) = h.store.record(&id).await.unwrap().unwrap();
    let JobKind::Deliver { users } = serde_json::from_str::<Job>(
        &h.sql()
            .query_row("SELECT payload FROM jobs", [], |r| r.get::<_, String>(0))
            .unwrap(),
    )
    .unwrap()
    .kind
    else {
        panic!("a deliver job")
    };
    let early = Job::deliver(&id, record.lane, 0, users);
    let report = processor::process(&h.app, &early).await.unwrap();
    assert_eq!(
        report.run_again_after,
        Some(herald_core::schedule::RECHECK_AT_MOST)
    );
    assert_eq!((report.delivered, deliverer.total_calls()), (0, 0));
    let s = status(&h, &id).await;
    assert_eq!((s.state, s.pending), ("scheduled", 2));
}
