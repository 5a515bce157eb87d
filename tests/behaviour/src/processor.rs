//! The processor's rules as the queue drives them: monotonic `last_request`, redelivery,
//! retries to the attempt limit, permanent failures and the sample policy.

use crate::{runtime_with, users_on, Runtime};
use herald_fakes::deliverers::{blocked, transient, FailingByReason, ScriptedDeliverer};
use serde_json::json;
use std::sync::Arc;

/// A request delivered after a newer one (its job redelivered late) runs its action but
/// leaves the newer `last_request` in place.
pub async fn an_older_request_never_overwrites_a_newer_one<R: Runtime>() {
    let h = runtime_with::<R>(|_| {}, Arc::new(ScriptedDeliverer::default())).await;
    h.runtime.engine_users("bot", &users_on("tg", 1..2)).await;
    let event = h.event("bot", json!({})).await;
    let older = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["1"], "data": {"v": "old"}}),
        )
        .await;
    let late = h.runtime.take().await;
    assert_eq!(late.len(), 1, "the older request's job");
    let newer = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["1"], "data": {"v": "new"}}),
        )
        .await;
    assert!(older < newer, "request ids sort by time");
    let on_time = h.runtime.take().await;
    assert_eq!(on_time.len(), 1, "the newer request's job");
    h.runtime.work(on_time, true).await;
    h.runtime.work(late, true).await;
    let user = h.user("bot", "bm-tg-1").await;
    assert_eq!(user["last_request"], json!({"v": "new"}));
    assert_eq!(user["last_request_id"], newer.as_str());
    let s = h.status(&older).await;
    assert_eq!(
        (&s["state"], &s["delivered"]),
        (&json!("done"), &json!(1)),
        "the older event still ran its action: {s}"
    );
}

/// The same job run twice (at-least-once delivery) sends nobody twice and counts nobody
/// twice; the second run records nothing.
pub async fn a_redelivered_job_does_not_repeat_a_success_or_count_twice<R: Runtime>() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    let h = runtime_with::<R>(|_| {}, deliverer.clone()).await;
    h.runtime.engine_users("bot", &users_on("tg", 1..4)).await;
    let event = h.event("bot", json!({})).await;
    let id = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["1", "2", "3", "9"]}),
        )
        .await;
    let jobs = h.runtime.take().await;
    assert_eq!(jobs.len(), 1);
    h.runtime.work(jobs.clone(), true).await;
    let first = h.status(&id).await;
    h.runtime.work(jobs, false).await;
    let second = h.status(&id).await;
    assert_eq!(
        (&first["delivered"], &first["not_found"], &first["pending"]),
        (&json!(3), &json!(1), &json!(0)),
        "{first}"
    );
    assert_eq!(first, second, "counted once, nothing recorded again");
    assert_eq!(deliverer.total_calls(), 3, "each user sent to once");
}

/// A transient failure retries that user alone until it succeeds.
pub async fn retryable_failures_are_retried_alone_until_they_succeed<R: Runtime>() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    deliverer.fail("2", vec![transient(), transient()]);
    let h = runtime_with::<R>(|c| c.max_attempts = 3, deliverer.clone()).await;
    h.runtime.engine_users("bot", &users_on("tg", 1..4)).await;
    let event = h.event("bot", json!({})).await;
    let id = h
        .accept(&event, json!({"platform": "tg", "users": ["1", "2", "3"]}))
        .await;
    h.runtime.drain().await;
    assert_eq!(
        (
            deliverer.calls("1"),
            deliverer.calls("2"),
            deliverer.calls("3")
        ),
        (1, 3, 1)
    );
    let s = h.status(&id).await;
    assert_eq!(
        (&s["state"], &s["delivered"], &s["failed"]),
        (&json!("done"), &json!(3), &json!(0)),
        "{s}"
    );
}

/// Retries stop at `max_attempts`: the user is failed with the reason, and the job of
/// that user alone is kept as a dead letter for an operator.
pub async fn retries_stop_at_the_attempt_limit_and_the_job_is_dead_lettered<R: Runtime>() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    deliverer.fail("2", vec![transient(); 10]);
    let h = runtime_with::<R>(|c| c.max_attempts = 3, deliverer.clone()).await;
    h.runtime.engine_users("bot", &users_on("tg", 1..3)).await;
    let event = h.event("bot", json!({})).await;
    let id = h
        .accept(&event, json!({"platform": "tg", "users": ["1", "2"]}))
        .await;
    h.runtime.drain().await;
    assert_eq!(deliverer.calls("2"), 3, "max_attempts is 3");
    let s = h.status(&id).await;
    assert_eq!(
        (&s["state"], &s["delivered"], &s["failed"]),
        (&json!("done"), &json!(1), &json!(1)),
        "{s}"
    );
    assert_eq!(s["failed_by_reason"], json!({"unavailable": 1}));
    assert_eq!(s["errors"][0]["user"], "tg:2");
    assert_eq!(s["errors"][0]["reason"], "unavailable");
    let message = s["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("gave up after 3 attempts"), "{message}");
    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (
            &dead[0]["request_id"],
            &dead[0]["kind"],
            &dead[0]["users"],
            &dead[0]["attempts"]
        ),
        (&json!(id), &json!("deliver"), &json!(1), &json!(3)),
        "{dead:?}"
    );
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.contains("gave up after 3 attempts"), "{reason}");
}

/// A permanent failure is final at once: one call, the user failed and marked blocked,
/// and `last_request` stored all the same.
pub async fn permanent_failures_are_final_at_once_and_last_request_is_stored<R: Runtime>() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    deliverer.fail("1", vec![blocked()]);
    let h = runtime_with::<R>(|c| c.max_attempts = 3, deliverer.clone()).await;
    h.runtime.engine_users("bot", &users_on("tg", 1..2)).await;
    let event = h.event("bot", json!({})).await;
    let id = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["1"], "data": {"a": 1}}),
        )
        .await;
    h.runtime.drain().await;
    assert_eq!(deliverer.calls("1"), 1);
    let s = h.status(&id).await;
    assert_eq!(
        (&s["state"], &s["failed"], &s["errors"][0]["reason"]),
        (&json!("done"), &json!(1), &json!("blocked")),
        "{s}"
    );
    let user = h.user("bot", "bm-tg-1").await;
    assert_eq!(user["last_request_id"], id.as_str());
    assert_eq!(user["last_request"], json!({"a": 1}));
    assert_eq!(user["blocked"], true, "{user}");
    assert!(h.dead_letters().await.is_empty(), "nothing to redrive");
}

/// The core's sample policy: 40 users failing over 8 reasons, in deliver jobs of 3, keep
/// 20 error samples, at most 5 of a reason.
pub async fn error_samples_keep_at_most_twenty_and_five_of_a_reason<R: Runtime>() {
    let h = runtime_with::<R>(
        |c| c.deliver_batch = 3,
        Arc::new(FailingByReason { reasons: 8 }),
    )
    .await;
    h.runtime.engine_users("bot", &users_on("tg", 0..40)).await;
    let event = h.event("bot", json!({})).await;
    let id = h
        .accept(&event, json!({"platform": "tg", "users": "everyone"}))
        .await;
    h.runtime.drain().await;
    let s = h.status(&id).await;
    assert_eq!(s["failed"], 40, "{s}");
    let samples = s["errors"].as_array().unwrap();
    assert_eq!(samples.len(), 20, "{s}");
    for reason in 0..8 {
        let of = samples
            .iter()
            .filter(|e| e["reason"] == format!("r{reason}"))
            .count();
        assert!(of <= 5, "{of} samples of r{reason}: {s}");
    }
}

/// `everyone` pages through every user of the bot on the platform asked — past ten
/// thousand, over every shard — and on `any` through all of them, each user once, and no
/// user of another bot.
pub async fn everyone_reaches_over_ten_thousand_users_on_one_platform_and_on_any<R: Runtime>() {
    let h = runtime_with::<R>(|_| {}, Arc::new(ScriptedDeliverer::default())).await;
    h.runtime
        .engine_users("big", &users_on("tg", 0..10_000))
        .await;
    h.runtime.engine_users("big", &users_on("vk", 0..500)).await;
    h.runtime
        .engine_users("someone-else", &users_on("tg", 0..10))
        .await;
    let event = h.event("big", json!({})).await;
    let everyone = |platform: &'static str, expected: u64| {
        let (h, event) = (&h, &event);
        async move {
            let id = h
                .accept(
                    event,
                    json!({"platform": platform, "users": "everyone", "data": {"wave": platform}}),
                )
                .await;
            h.runtime.drain().await;
            let s = h.status(&id).await;
            assert_eq!(
                (&s["state"], &s["targeted"], &s["delivered"], &s["pending"]),
                (
                    &json!("done"),
                    &json!(expected),
                    &json!(expected),
                    &json!(0)
                ),
                "{platform}: {s}"
            );
        }
    };
    everyone("tg", 10_000).await;
    assert_eq!(
        h.user("big", "bm-tg-9999").await["last_request"],
        json!({"wave": "tg"})
    );
    assert!(h.user("big", "bm-vk-1").await["last_request"].is_null());
    everyone("any", 10_500).await;
    assert_eq!(
        h.user("big", "bm-vk-1").await["last_request"],
        json!({"wave": "any"})
    );
    assert_eq!(
        h.user("big", "bm-tg-0").await["last_request"],
        json!({"wave": "any"})
    );
    assert!(h.user("someone-else", "bm-tg-1").await["last_request"].is_null());
}
