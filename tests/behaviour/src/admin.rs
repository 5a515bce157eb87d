//! Rules an operator or a CRM meets around requests: secret rotation, idempotency keys,
//! an event's rate limit, dead letters and cancelling.

use crate::contract::seed_users;
use crate::{runtime, runtime_with, users_on, Event, Runtime};
use herald_fakes::deliverers::{transient, ScriptedDeliverer};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A rotated secret's predecessor works for the grace period asked, and not after it;
/// rotating with no grace stops the previous secrets at once.
pub async fn a_rotated_secret_works_during_its_grace_period_only<R: Runtime>() {
    let h = runtime::<R>().await;
    h.runtime.engine_users("shop", &seed_users()).await;
    let old = h.event("shop", json!({})).await;
    let body = json!({"platform": "tg", "users": ["123456"]});
    let rotate = |grace: u64| {
        let path = format!("/v1/admin/events/{}/rotate-secret", old.id);
        let h = &h;
        async move {
            let (status, rotated) = h
                .admin("POST", &path, Some(json!({"grace_seconds": grace})))
                .await;
            assert_eq!(status, 200, "{rotated}");
            rotated
        }
    };
    let works = |event: Event| {
        let (h, body) = (&h, body.clone());
        async move { h.post(&event, &[], &body).await.status }
    };
    let with = |secret: &Value| Event {
        id: old.id.clone(),
        secret: secret.as_str().unwrap().to_string(),
    };

    let rotated = rotate(3600).await;
    let new = with(&rotated["secret"]);
    assert_ne!(new.secret, old.secret);
    assert!(rotated["event"]["previous_secret_valid_until"].is_string());
    assert_eq!(works(new.clone()).await, 202);
    assert_eq!(works(old.clone()).await, 202, "within the grace period");

    // No grace: the one before stops at once, and so does the one before that.
    let newest = with(&rotate(0).await["secret"]);
    assert_eq!(works(new.clone()).await, 404);
    assert_eq!(works(old.clone()).await, 404);
    assert_eq!(works(newest.clone()).await, 202);

    // A short grace runs out (polled: no assertion on timing).
    let last = with(&rotate(1).await["secret"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while works(newest.clone()).await != 404 {
        assert!(
            Instant::now() < deadline,
            "the old secret never stopped working"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(works(last).await, 202);
}

/// One idempotency key on one event: concurrent duplicates all get the first answer, a
/// later one gets it replayed, another body is refused; one request is recorded and
/// delivered once. A malformed key is refused; another key is another request.
pub async fn an_idempotency_key_answers_its_first_answer_and_enqueues_once<R: Runtime>() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    let h = runtime_with::<R>(|_| {}, deliverer.clone()).await;
    h.runtime.engine_users("shop", &seed_users()).await;
    let event = h.event("shop", json!({})).await;
    let body = json!({"platform": "tg", "users": ["123456"], "data": {"n": 1}});
    let send = |key: &'static str, body: Value| {
        let (h, event) = (&h, &event);
        async move { h.post(event, &[("idempotency-key", key)], &body).await }
    };
    let answers = futures::future::join_all((0..6).map(|_| send("k-1", body.clone()))).await;
    let first = &answers[0].body;
    for answer in &answers {
        assert_eq!((answer.status, &answer.body), (202, first), "{answers:?}");
    }
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.header("idempotent-replayed").is_none())
            .count(),
        1,
        "one answer is the original, the rest replays: {answers:?}"
    );
    let again = send("k-1", body.clone()).await;
    assert_eq!((again.status, &again.body), (202, first));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let conflict = send("k-1", json!({"platform": "tg", "users": ["234567"]})).await;
    assert_eq!(
        (conflict.status, &conflict.body["type"]),
        (422, &json!("/problems/idempotency-conflict"))
    );
    let bad = send("not a valid key", body.clone()).await;
    assert_eq!(
        (bad.status, &bad.body["type"]),
        (400, &json!("/problems/bad-header"))
    );
    assert_eq!(h.requests_of(&event).await.len(), 1, "one request recorded");
    assert_eq!(h.runtime.queued().await, 1, "one job enqueued");
    let other = send("k-2", body).await;
    assert_eq!(other.status, 202);
    assert_ne!(other.body["request_id"], first["request_id"]);
    h.runtime.drain().await;
    let s = h.status(first["request_id"].as_str().unwrap()).await;
    assert_eq!(s["delivered"], 1);
    assert_eq!(
        deliverer.calls("123456"),
        2,
        "one send per request, two requests"
    );
}

/// Over an event's rate limit: 429 with the `Retry-After` of the next slot, nothing
/// recorded or enqueued; another event of the bot is not limited by it.
pub async fn over_an_events_rate_limit_is_429_with_retry_after_and_nothing_enqueued<R: Runtime>() {
    let h = runtime::<R>().await;
    h.runtime.engine_users("shop", &seed_users()).await;
    let limited = h
        .event(
            "shop",
            json!({"rate_limit": {"per_second": 0.25, "burst": 3}}),
        )
        .await;
    let body = json!({"platform": "tg", "users": ["123456"]});
    for _ in 0..3 {
        assert_eq!(h.post(&limited, &[], &body).await.status, 202);
    }
    let queued = h.runtime.queued().await;
    let refused = h.post(&limited, &[], &body).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["type"], "/problems/rate-limited");
    // One request per 4 s after a burst of 3: the next slot is 1 to 4 s away.
    let wait: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=4).contains(&wait), "Retry-After {wait}");
    assert_eq!(h.runtime.queued().await, queued, "nothing enqueued");
    assert_eq!(h.requests_of(&limited).await.len(), 3, "nothing recorded");
    let free = h.event("shop", json!({})).await;
    assert_eq!(h.post(&free, &[], &body).await.status, 202);
}

/// A user failing every attempt leaves a dead letter; listing it changes nothing, redrive
/// completes the request with exact counts, purge drops one for good.
#[allow(clippy::too_many_lines)] // one scenario, read best whole
pub async fn dead_letters_are_listed_redriven_to_completion_and_purged<R: Runtime>() {
    let deliverer = Arc::new(ScriptedDeliverer::default());
    deliverer.fail("234567", vec![transient(); 2]);
    let h = runtime_with::<R>(|c| c.max_attempts = 2, deliverer.clone()).await;
    h.runtime.engine_users("shop", &seed_users()).await;
    let event = h.event("shop", json!({})).await;
    let request_id = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["123456", "234567"]}),
        )
        .await;
    h.runtime.drain().await;
    let before = h.status(&request_id).await;
    assert_eq!(
        (&before["delivered"], &before["failed"]),
        (&json!(1), &json!(1)),
        "{before}"
    );
    let letters = h.dead_letters().await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(
        (&letters[0]["request_id"], &letters[0]["users"]),
        (&json!(request_id), &json!(1))
    );
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("unavailable"), "{reason}");
    assert_eq!(h.dead_letters().await.len(), 1, "listing leaves it there");

    // The platform is back (the script is spent): redrive, and the request completes.
    let (status, redriven) = h
        .admin(
            "POST",
            "/v1/admin/dead-letters/redrive",
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(
        (status, &redriven["redriven"]),
        (200, &json!(1)),
        "{redriven}"
    );
    let reopened = h.status(&request_id).await;
    assert_eq!(
        (&reopened["state"], &reopened["failed"]),
        (&json!("running"), &json!(0)),
        "{reopened}"
    );
    h.runtime.drain().await;
    let after = h.status(&request_id).await;
    assert_eq!(
        (
            &after["state"],
            &after["delivered"],
            &after["failed"],
            &after["failed_by_reason"]
        ),
        (&json!("done"), &json!(2), &json!(0), &json!({})),
        "{after}"
    );
    assert!(h.dead_letters().await.is_empty());
    assert_eq!(
        deliverer.calls("234567"),
        3,
        "two attempts, then the redrive"
    );

    // Purge: another failure, dropped for good.
    deliverer.fail("234567", vec![transient(); 2]);
    h.accept(&event, json!({"platform": "tg", "users": ["234567"]}))
        .await;
    h.runtime.drain().await;
    let id = h.dead_letters().await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, refused) = h
        .admin("POST", "/v1/admin/dead-letters/purge", Some(json!({})))
        .await;
    assert_eq!(status, 422, "purging needs ids or all: {refused}");
    let (_, purged) = h
        .admin(
            "POST",
            "/v1/admin/dead-letters/purge",
            Some(json!({"ids": [id]})),
        )
        .await;
    assert_eq!(purged["purged"], 1);
    assert!(h.dead_letters().await.is_empty());
}

/// A request cancelled before its jobs run: its jobs do nothing, every user is counted
/// cancelled, and no user's state is written.
pub async fn a_cancelled_request_counts_its_users_cancelled_and_writes_nobody<R: Runtime>() {
    let h = runtime::<R>().await;
    h.runtime
        .engine_users("shop", &users_on("tg", 0..250))
        .await;
    let event = h.event("shop", json!({})).await;
    let request_id = h
        .accept(&event, json!({"platform": "tg", "users": "everyone"}))
        .await;
    let (status, cancelled) = h.cancel(&request_id).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    h.runtime.drain().await;
    let after = h.status(&request_id).await;
    assert_eq!(
        (&after["state"], &after["delivered"], &after["pending"]),
        (&json!("cancelled"), &json!(0), &json!(0)),
        "{after}"
    );
    assert_eq!(h.user("shop", "bm-tg-7").await["last_request"], Value::Null);
    // Cancelling again is refused: the request is final.
    let (again, _) = h.cancel(&request_id).await;
    assert_eq!(again, 409);
}
