//! What the event URL answers before any job runs: the 202 and what it recorded, the
//! secret by path or bearer, 404s that tell nothing, a disabled event, field paths of a
//! 422, dry runs, and the status document behind the event's secret.

use crate::{runtime, users_on, Answer, Client, Event, Runtime};
use serde_json::{json, Value};

/// A runtime with event `shop` and two users on `tg`: 123456 and 2.
async fn shop<R: Runtime>() -> (Client<R>, Event) {
    let h = runtime::<R>().await;
    h.runtime
        .engine_users("shop", &users_on("tg", [123_456, 2]))
        .await;
    let event = h.event("shop", json!({})).await;
    (h, event)
}

/// An RFC 9457 problem with this status.
fn assert_problem(answer: &Answer, status: u16) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(answer.body["status"], status);
    assert!(answer.body["type"].is_string() && answer.body["title"].is_string());
    assert!(answer.body["detail"].is_string(), "{}", answer.body);
}

/// 202 with the request id, its status URL (and `Location`) and how many users it targets
/// (`null` for everyone until enumerated); recorded with its job before the answer.
pub async fn accepted_requests_answer_202_with_id_status_url_and_targeted<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let answer = h
        .post(
            &event,
            &[],
            &json!({"platform": "tg", "users": ["123456"], "data": {}}),
        )
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap();
    assert_eq!(answer.body["status_url"], format!("/v1/requests/{id}"));
    assert_eq!(
        answer.header("location"),
        Some(format!("/v1/requests/{id}").as_str())
    );
    assert_eq!(answer.body["targeted"], 1);
    assert_eq!(h.requests_of(&event).await.len(), 1, "recorded");
    assert_eq!(h.runtime.queued().await, 1, "its job enqueued");

    let everyone = h
        .post(
            &event,
            &[],
            &json!({"platform": "any", "users": "everyone", "data": {}}),
        )
        .await;
    assert_eq!(everyone.status, 202);
    assert_eq!(everyone.body["targeted"], Value::Null);
    let bm = h
        .post(&event, &[], &json!({"users_bm": ["bm-tg-2"], "data": {}}))
        .await;
    assert_eq!(bm.status, 202);
    assert_eq!(bm.body["targeted"], 1);
}

/// The secret as a bearer token works like the secret in the path; a wrong or missing
/// one is 404.
pub async fn a_bearer_secret_works_like_the_secret_in_the_path<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let path = format!("/v1/events/{}", event.id);
    let call = |bearer: Option<String>, body: Value| {
        let (h, path) = (&h, &path);
        async move {
            let mut headers = vec![("content-type", "application/json".to_string())];
            if let Some(bearer) = bearer {
                headers.push(("authorization", format!("Bearer {bearer}")));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            h.runtime
                .call("POST", path, &headers, Some(body.to_string()))
                .await
        }
    };
    let body = json!({"platform": "tg", "users": ["2"]});
    assert_eq!(call(Some(event.secret.clone()), body).await.status, 202);
    assert_problem(&call(Some("nope".into()), json!({})).await, 404);
    assert_problem(&call(None, json!({})).await, 404);
}

/// An unknown event and a wrong secret answer the same 404, and record nothing.
pub async fn an_unknown_event_and_a_wrong_secret_are_the_same_404<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let body = json!({"platform": "tg", "users": ["1"]});
    let wrong_secret = h
        .post_with_secret(&event.id, &"0".repeat(64), &[], &body)
        .await;
    let unknown_event = h
        .post_with_secret("01unknownevent", &event.secret, &[], &body)
        .await;
    assert_problem(&wrong_secret, 404);
    assert_problem(&unknown_event, 404);
    assert_eq!(
        wrong_secret.body, unknown_event.body,
        "the two cases must be indistinguishable"
    );
    assert!(h.requests_of(&event).await.is_empty());
    assert_eq!(h.runtime.queued().await, 0);
}

/// A disabled event answers 403 and records nothing; enabled again, it accepts.
pub async fn a_disabled_event_answers_403_and_does_nothing<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let path = format!("/v1/admin/events/{}", event.id);
    let (status, _) = h
        .admin("PATCH", &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, 200);
    let body = json!({"platform": "tg", "users": ["1"]});
    assert_problem(&h.post(&event, &[], &body).await, 403);
    assert!(h.requests_of(&event).await.is_empty());
    assert_eq!(h.runtime.queued().await, 0);
    h.admin("PATCH", &path, Some(json!({"enabled": true})))
        .await;
    assert_eq!(h.post(&event, &[], &body).await.status, 202);
}

/// An invalid request is 422 with the path of every bad field, and records nothing.
pub async fn invalid_requests_are_422_with_field_paths<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let answer = h
        .post(
            &event,
            &[],
            &json!({"platform": "tg", "users": ["1", "2", "", {"id": 4.5}]}),
        )
        .await;
    assert_problem(&answer, 422);
    let fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["users[2]", "users[3].id"]);
    assert!(h.requests_of(&event).await.is_empty());
}

/// A request runs in the lane it names, or by default `transactional` for an explicit
/// audience of at most 100 entries and `bulk` for `everyone` or more; the fast lane refuses
/// `everyone` and more than 1,000 entries (counted before de-duplication). The status
/// document and a dry run say the lane.
pub async fn a_request_runs_in_the_lane_it_names_or_its_audiences_default<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("u{i}")).collect() };
    let lane_of = |body: Value| {
        let (h, event) = (&h, &event);
        async move {
            let id = h.accept(event, body).await;
            h.status(&id).await["lane"].clone()
        }
    };
    for (body, lane) in [
        (
            json!({"platform": "tg", "users": ["123456"]}),
            "transactional",
        ),
        (
            json!({"platform": "tg", "users": ids(100)}),
            "transactional",
        ),
        (json!({"platform": "tg", "users": ids(101)}), "bulk"),
        (json!({"users_bm": ids(101)}), "bulk"),
        (json!({"platform": "tg", "users": "everyone"}), "bulk"),
        (
            json!({"platform": "tg", "users": ids(1), "lane": "bulk"}),
            "bulk",
        ),
        (
            json!({"platform": "tg", "users": ids(1000), "lane": "transactional"}),
            "transactional",
        ),
        (
            json!({"platform": "tg", "users": ids(5), "lane": null}),
            "transactional",
        ),
    ] {
        assert_eq!(lane_of(body.clone()).await, json!(lane), "{body}");
    }
    // 1,001 entries naming 1,000 users: the entries count.
    let mut repeated = ids(1000);
    repeated.push("u0".into());
    for body in [
        json!({"platform": "tg", "users": "everyone", "lane": "transactional"}),
        json!({"platform": "any", "users": "everyone", "lane": "transactional"}),
        json!({"platform": "tg", "users": ids(1001), "lane": "transactional"}),
        json!({"users_bm": ids(1001), "lane": "transactional"}),
        json!({"platform": "tg", "users": repeated, "lane": "transactional"}),
        json!({"platform": "tg", "users": ["1"], "lane": "fast"}),
        json!({"platform": "tg", "users": ["1"], "lane": "Transactional"}),
        json!({"platform": "tg", "users": ["1"], "lane": 1}),
    ] {
        let before = h.requests_of(&event).await.len();
        let answer = h.post(&event, &[], &body).await;
        assert_problem(&answer, 422);
        assert_eq!(answer.body["errors"][0]["field"], "lane", "{}", answer.body);
        assert_eq!(
            h.requests_of(&event).await.len(),
            before,
            "nothing recorded"
        );
    }
    let dry = h
        .post(
            &event,
            &[],
            &json!({"platform": "tg", "users": ["1"], "lane": "bulk", "dry_run": true}),
        )
        .await;
    assert_eq!(dry.body["lane"], "bulk", "{}", dry.body);
}

/// An event may set the lane of its requests that name none: the admin API shows and
/// changes it (`null` removes it) and both stores keep it. It applies where that lane can
/// carry the audience: a broadcast of an event whose default is `transactional` stays
/// bulk, and a request that names a lane keeps it.
pub async fn an_events_default_lane_applies_where_it_fits<R: Runtime>() {
    let h = runtime::<R>().await;
    h.runtime
        .engine_users("shop", &users_on("tg", [1, 2]))
        .await;
    let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("u{i}")).collect() };
    let event = h.event("shop", json!({"lane": "bulk"})).await;
    let path = format!("/v1/admin/events/{}", event.id);
    let (_, shown) = h.admin("GET", &path, None).await;
    assert_eq!(shown["lane"], "bulk", "{shown}");
    let lane_of = |body: Value| {
        let (h, event) = (&h, &event);
        async move {
            let id = h.accept(event, body).await;
            h.status(&id).await["lane"].clone()
        }
    };
    assert_eq!(
        lane_of(json!({"platform": "tg", "users": ["1"]})).await,
        "bulk"
    );
    assert_eq!(
        lane_of(json!({"platform": "tg", "users": ["1"], "lane": "transactional"})).await,
        "transactional"
    );
    let (status, changed) = h
        .admin("PATCH", &path, Some(json!({"lane": "transactional"})))
        .await;
    assert_eq!(
        (status, &changed["lane"]),
        (200, &json!("transactional")),
        "{changed}"
    );
    assert_eq!(
        lane_of(json!({"platform": "tg", "users": ids(1000)})).await,
        "transactional"
    );
    assert_eq!(
        lane_of(json!({"platform": "tg", "users": ids(1001)})).await,
        "bulk"
    );
    assert_eq!(
        lane_of(json!({"platform": "tg", "users": "everyone"})).await,
        "bulk"
    );
    let (status, cleared) = h.admin("PATCH", &path, Some(json!({"lane": null}))).await;
    assert_eq!((status, &cleared["lane"]), (200, &Value::Null), "{cleared}");
    assert_eq!(
        lane_of(json!({"platform": "tg", "users": ids(101)})).await,
        "bulk"
    );
    assert_eq!(
        lane_of(json!({"platform": "tg", "users": ["1"]})).await,
        "transactional"
    );
    for bad in [json!("fast"), json!(1)] {
        let (status, refused) = h.admin("PATCH", &path, Some(json!({"lane": bad}))).await;
        assert_eq!(status, 422, "{refused}");
    }
    let (status, refused) = h
        .admin(
            "POST",
            "/v1/admin/events",
            Some(json!({"bot_id": "shop", "name": "x", "lane": "Bulk",
                        "action": {"type": "screen", "screen_id": "s"}})),
        )
        .await;
    assert_eq!(status, 422, "{refused}");
}

/// A dry run counts the audience (targeted after de-duplication, found among the
/// stored users) and records, enqueues and writes nothing.
pub async fn a_dry_run_counts_the_audience_and_changes_nothing<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let explicit = h
        .post(
            &event,
            &[],
            &json!({"platform": "tg", "users": ["123456", "2", "3", 2], "dry_run": true, "data": {"x": 1}}),
        )
        .await;
    assert_eq!(explicit.status, 200);
    assert_eq!(
        explicit.body,
        json!({"dry_run": true, "lane": "transactional", "targeted": 3, "found": 2})
    );
    let everyone = h
        .post(
            &event,
            &[],
            &json!({"platform": "tg", "users": "everyone", "dry_run": true}),
        )
        .await;
    assert_eq!(
        everyone.body,
        json!({"dry_run": true, "lane": "bulk", "targeted": 2, "found": 2})
    );
    let nobody = h
        .post(
            &event,
            &[],
            &json!({"platform": "vk", "users": "everyone", "dry_run": true}),
        )
        .await;
    assert_eq!(nobody.body["targeted"], 0);
    assert!(h.requests_of(&event).await.is_empty());
    assert_eq!(h.runtime.queued().await, 0);
    assert_eq!(h.user("shop", "bm-tg-2").await["last_request"], Value::Null);
}

/// The status document is answered behind the event's secret, by bearer or path, with
/// its counters; another event's secret, a wrong one or an unknown request is 404.
pub async fn the_status_document_needs_the_events_secret_by_bearer_or_path<R: Runtime>() {
    let (h, event) = shop::<R>().await;
    let other = h.event("shop", json!({})).await;
    let id = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["123456", "nobody"]}),
        )
        .await;
    h.runtime.drain().await;
    let get = |path: String, bearer: Option<&str>| {
        let h = &h;
        let bearer = bearer.map(|b| format!("Bearer {b}"));
        async move {
            let headers: Vec<(&str, &str)> = bearer
                .iter()
                .map(|b| ("authorization", b.as_str()))
                .collect();
            h.runtime.call("GET", &path, &headers, None).await
        }
    };
    let by_bearer = get(format!("/v1/requests/{id}"), Some(&event.secret)).await;
    assert_eq!(by_bearer.status, 200, "{}", by_bearer.body);
    let s = &by_bearer.body;
    assert_eq!(
        (
            &s["state"],
            &s["targeted"],
            &s["delivered"],
            &s["not_found"]
        ),
        (&json!("done"), &json!(2), &json!(1), &json!(1)),
        "{s}"
    );
    assert_eq!((&s["failed"], &s["pending"]), (&json!(0), &json!(0)));
    assert_eq!(s["deliveries"][0]["screen_id"], "thanks");
    let by_path = get(format!("/v1/requests/{id}/{}", event.secret), None).await;
    assert_eq!(by_path.body, by_bearer.body);
    for wrong in [other.secret.as_str(), "nope"] {
        assert_problem(&get(format!("/v1/requests/{id}/{wrong}"), None).await, 404);
    }
    // An unknown request and one whose id no request can have answer alike.
    for unknown in ["01none", "a%20b", &"r".repeat(129)] {
        assert_problem(
            &get(format!("/v1/requests/{unknown}/{}", event.secret), None).await,
            404,
        );
        assert_problem(
            &get(format!("/v1/requests/{unknown}"), Some(&event.secret)).await,
            404,
        );
    }
}

/// Where a problem's first field error points.
fn first_field(answer: &Answer) -> &str {
    answer.body["errors"][0]["field"]
        .as_str()
        .unwrap_or_default()
}

/// A `send_at` without an offset, or over 30 days ahead, is 422 at field `send_at`.
async fn refuses_a_bad_send_at<R: Runtime>(h: &Client<R>, event: &Event, now: i64) {
    use herald_core::status::rfc3339;
    for (send_at, why) in [
        ("2026-12-24T09:00:00".to_string(), "RFC 3339"),
        (rfc3339(now + 31 * 86_400_000), "30 days"),
    ] {
        let refused = h
            .post(
                event,
                &[],
                &json!({"platform": "tg", "users": "everyone", "send_at": send_at}),
            )
            .await;
        assert_problem(&refused, 422);
        assert_eq!(first_field(&refused), "send_at");
        assert!(refused.body.to_string().contains(why), "{}", refused.body);
    }
}

/// A bot `news` on Telegram at 10 messages a second, with a `message` event, and users
/// 11 to 15.
async fn news_bot<R: Runtime>() -> (Client<R>, Event) {
    let h = runtime::<R>().await;
    h.runtime
        .engine_users("news", &users_on("tg", [11, 12, 13, 14, 15]))
        .await;
    // The embedded store made the bot with its users; DynamoDB keeps bots apart.
    let telegram = json!({"telegram": {"token": "1:T", "rate": 10}});
    let (mut status, mut bot) = h
        .admin(
            "POST",
            "/v1/admin/bots",
            Some(json!({"id": "news", "connections": telegram})),
        )
        .await;
    if status == 409 {
        (status, bot) = h
            .admin(
                "PATCH",
                "/v1/admin/bots/news",
                Some(json!({"connections": telegram})),
            )
            .await;
    }
    assert!(status == 200 || status == 201, "{bot}");
    let message = h
        .event(
            "news",
            json!({"name": "digest", "action": {"type": "message", "template": "Hi"}}),
        )
        .await;
    (h, message)
}

/// A request that has not started gives an ETA from its start (`send_at`, or now) and its
/// users at the bot's rate on the channel that sends them (a scheduled `everyone`: the
/// bot's users as they are now); a screen, with no pace of its own, gives none before its
/// first outcome.
pub async fn a_request_not_started_yet_has_an_eta_from_its_start_and_the_bots_rate<R: Runtime>() {
    use herald_core::status::rfc3339;
    let (h, message) = news_bot::<R>().await;
    let send_at_ms = (herald_core::domain::now_ms() / 1000 + 3_600) * 1000;
    let send_at = rfc3339(send_at_ms);
    let users = json!(["11", "12", "13", "14", "15"]);
    let scheduled = h
        .accept(
            &message,
            json!({"platform": "tg", "users": users, "send_at": send_at}),
        )
        .await;
    let s = h.status(&scheduled).await;
    // Five users at 10 a second in windows of 1.05 s: 525 ms after its send_at.
    assert_eq!(
        (&s["state"], &s["eta"]),
        (&json!("scheduled"), &json!(rfc3339(send_at_ms + 525))),
        "{s}"
    );
    let (_, shown) = h
        .admin("GET", &format!("/v1/admin/requests/{scheduled}"), None)
        .await;
    assert_eq!(shown["eta"], s["eta"], "the admin API answers the same");
    // The bot's paid broadcasts raise its rate, and the ETA with it, unless it sets its own.
    let (status, _) = h
        .admin(
            "PATCH",
            "/v1/admin/bots/news",
            Some(json!({"connections": {"telegram": {"rate": "", "paid_broadcast": true}}})),
        )
        .await;
    assert_eq!(status, 200);
    let s = h.status(&scheduled).await;
    assert_eq!(
        s["eta"],
        json!(rfc3339(send_at_ms + 6)),
        "5 users at 1,000 a second: {s}"
    );
    // `everyone` is read only at its send_at: until then its ETA counts the bot's users as
    // they are now, the five of them (at 1,000 a second).
    let broadcast = h
        .accept(
            &message,
            json!({"platform": "tg", "users": "everyone", "send_at": send_at}),
        )
        .await;
    let s = h.status(&broadcast).await;
    assert_eq!(
        (&s["targeted"], &s["eta"]),
        (&Value::Null, &json!(rfc3339(send_at_ms + 6))),
        "{s}"
    );
    // A screen is not paced: no ETA before its first outcome.
    let screen = h.event("news", json!({"name": "screen"})).await;
    let shown = h
        .accept(
            &screen,
            json!({"platform": "tg", "users": users, "send_at": send_at}),
        )
        .await;
    assert_eq!(h.status(&shown).await["eta"], Value::Null);
}

/// A bulk request's ETA starts after the users still pending in the bot's bulk requests
/// accepted before it (not behind a transactional one), until they are final.
pub async fn a_broadcasts_eta_counts_the_bulk_work_ahead_of_it<R: Runtime>() {
    let (h, message) = news_bot::<R>().await;
    let ids =
        |from: u32, n: u32| json!((from..from + n).map(|i| i.to_string()).collect::<Vec<_>>());
    let first = h
        .accept(
            &message,
            json!({"platform": "tg", "users": ids(1_000, 150)}),
        )
        .await;
    let order = h
        .accept(&message, json!({"platform": "tg", "users": ["11"]}))
        .await;
    let second = h
        .accept(
            &message,
            json!({"platform": "tg", "users": ids(2_000, 120)}),
        )
        .await;
    let asked = herald_core::domain::now_ms();
    let s = h.status(&second).await;
    let answered = herald_core::domain::now_ms();
    assert_eq!(s["lane"], "bulk");
    // 150 users ahead and its own 120, at 10 a second in windows of 1.05 s: 28.35 s.
    assert_eta_within(&s, asked + 28_350, answered + 28_350);
    let asked = herald_core::domain::now_ms();
    let s = h.status(&order).await;
    assert_eta_within(&s, asked + 105, herald_core::domain::now_ms() + 105);
    let (status, _) = h.cancel(&first).await;
    assert_eq!(status, 200);
    let asked = herald_core::domain::now_ms();
    let s = h.status(&second).await;
    assert_eta_within(&s, asked + 12_600, herald_core::domain::now_ms() + 12_600);
}

/// The status document `s` gives an ETA from `from_ms` to `to_ms`.
fn assert_eta_within(s: &Value, from_ms: i64, to_ms: i64) {
    use herald_core::status::rfc3339;
    let eta = s["eta"].as_str().unwrap_or_default().to_string();
    assert!(
        rfc3339(from_ms) <= eta && eta <= rfc3339(to_ms),
        "eta {eta} not within {} and {}: {s}",
        rfc3339(from_ms),
        rfc3339(to_ms)
    );
}

/// The bulk requests ahead of a broadcast that are final are taken off its bot's list as
/// its ETA reads it, however many there are: an open one behind 60 cancelled ones counts;
/// one scheduled after the broadcast's start does not.
pub async fn a_broadcasts_eta_reads_past_bulk_requests_already_final<R: Runtime>() {
    let (h, message) = news_bot::<R>().await;
    let one = |i: u32| json!({"platform": "tg", "users": [i.to_string()], "lane": "bulk"});
    let mut cancelled = Vec::new();
    for i in 0..60 {
        cancelled.push(h.accept(&message, one(3_000 + i)).await);
    }
    let open = h
        .accept(&message, json!({"platform": "tg", "users": (4_000..4_200).map(|i| i.to_string()).collect::<Vec<_>>()}))
        .await;
    // Scheduled for tomorrow: not ahead of a broadcast sent now.
    let tomorrow = herald_core::status::rfc3339(herald_core::domain::now_ms() + 86_400_000);
    let later = json!({"platform": "tg", "users": (6_000..6_300).map(|i| i.to_string()).collect::<Vec<_>>(), "send_at": tomorrow});
    assert_eq!(
        h.status(&h.accept(&message, later).await).await["lane"],
        "bulk"
    );
    let broadcast = h.accept(&message, one(5_000)).await;
    for request in &cancelled {
        let (status, _) = h.cancel(request).await;
        assert_eq!(status, 200);
    }
    // 200 users ahead and its own one at 10 a second: 21.105 s.
    let asked = herald_core::domain::now_ms();
    let s = h.status(&broadcast).await;
    assert_eta_within(&s, asked + 21_105, herald_core::domain::now_ms() + 21_105);
    assert_eq!(h.status(&open).await["lane"], "bulk");
}

/// A request with `send_at` is accepted at once and sent then: until then it is
/// `scheduled`, no job of it can be taken and no user is written; `everyone` is read at
/// `send_at` (users added meanwhile get it); it can be cancelled until then; a dry run
/// counts its audience now. A time without an offset, or over 30 days ahead, is 422.
pub async fn a_scheduled_request_is_sent_at_its_time_and_can_be_cancelled_before<R: Runtime>() {
    use herald_core::status::rfc3339;
    let (h, event) = shop::<R>().await;
    let now = herald_core::domain::now_ms();
    refuses_a_bad_send_at(&h, &event, now).await;
    // Far enough ahead that nothing can come up while the test looks.
    let send_at = rfc3339(now + 6_000);
    let dry = h
        .post(
            &event,
            &[],
            &json!({"platform": "tg", "users": "everyone", "send_at": send_at, "dry_run": true}),
        )
        .await;
    assert_eq!((dry.status, &dry.body["targeted"]), (200, &json!(2)));
    assert_eq!(dry.body["send_at"], json!(send_at));
    let everyone = h
        .accept(
            &event,
            json!({"platform": "tg", "users": "everyone", "send_at": send_at, "data": {"n": 1}}),
        )
        .await;
    let cancelled = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["2", "123456"], "send_at": send_at, "data": {"n": 2}}),
        )
        .await;
    let waiting = h.status(&everyone).await;
    assert_eq!(
        (
            &waiting["state"],
            &waiting["send_at"],
            &waiting["delivered"]
        ),
        (&json!("scheduled"), &json!(send_at), &json!(0)),
        "{waiting}"
    );
    assert!(
        h.runtime.take().await.is_empty(),
        "no job of a scheduled request is visible before its time"
    );
    assert_eq!(h.user("shop", "bm-tg-2").await["last_request"], Value::Null);
    h.runtime
        .engine_users("shop", &users_on("tg", [7, 8]))
        .await;
    let (status, _) = h.cancel(&cancelled).await;
    assert_eq!(status, 200);
    h.runtime.drain().await;
    let sent = h.status(&everyone).await;
    assert_eq!(
        (&sent["state"], &sent["delivered"], &sent["targeted"]),
        (&json!("done"), &json!(4), &json!(4)),
        "everyone read at send_at includes the users added meanwhile: {sent}"
    );
    let dropped = h.status(&cancelled).await;
    assert_eq!(
        (
            &dropped["state"],
            &dropped["cancelled"],
            &dropped["delivered"]
        ),
        (&json!("cancelled"), &json!(2), &json!(0)),
        "{dropped}"
    );
    assert_eq!(
        h.user("shop", "bm-tg-2").await["last_request"],
        json!({"n": 1})
    );
}
