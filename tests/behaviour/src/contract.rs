//! The External Event contract as a CRM sees it: the seed document's three requests, per
//! user data, and what a request does to the users' state (and to nothing else).

use crate::{runtime, users_on, Runtime};
use serde_json::json;

/// Users of the seed document: two on Telegram (one of them the `users_bm` example's state
/// id), one on VK.
pub(crate) fn seed_users() -> Vec<(String, String, String)> {
    [
        ("tg", "123456", "5c517b7773515eaha3078e2f"),
        ("tg", "234567", "bm-234567"),
        ("vk", "456789", "bm-456789"),
    ]
    .map(|(p, i, b)| (p.to_string(), i.to_string(), b.to_string()))
    .to_vec()
}

/// Explicit platform ids, `everyone` on `any`, and state ids each reach the users they
/// name, and leave their `data` as `last_request`.
pub async fn the_seed_documents_requests_reach_their_users<R: Runtime>() {
    let h = runtime::<R>().await;
    h.runtime.engine_users("shop", &seed_users()).await;
    let event = h.event("shop", json!({})).await;

    let explicit = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["123456"], "data": {"wave": "explicit"}}),
        )
        .await;
    h.runtime.drain().await;
    let s = h.status(&explicit).await;
    assert_eq!(
        (&s["state"], &s["targeted"], &s["delivered"]),
        (&json!("done"), &json!(1), &json!(1)),
        "{s}"
    );
    assert_eq!(
        h.user("shop", "bm-234567").await["last_request"],
        json!(null),
        "a user not named is not touched"
    );

    let everyone = h
        .accept(
            &event,
            json!({"platform": "any", "users": "everyone", "data": {"wave": "any"}}),
        )
        .await;
    h.runtime.drain().await;
    let s = h.status(&everyone).await;
    assert_eq!(
        (&s["state"], &s["targeted"], &s["delivered"]),
        (&json!("done"), &json!(3), &json!(3)),
        "{s}"
    );
    for (_, _, bm) in seed_users() {
        assert_eq!(
            h.user("shop", &bm).await["last_request"],
            json!({"wave": "any"})
        );
    }

    let by_state_id = h
        .accept(
            &event,
            json!({"users_bm": ["5c517b7773515eaha3078e2f"], "data": {"wave": "bm"}}),
        )
        .await;
    h.runtime.drain().await;
    assert_eq!(h.status(&by_state_id).await["delivered"], 1);
    assert_eq!(
        h.user("shop", "5c517b7773515eaha3078e2f").await["last_request"],
        json!({"wave": "bm"})
    );
    assert_eq!(
        h.user("shop", "bm-456789").await["last_request"],
        json!({"wave": "any"})
    );
}

/// A user's own `data` is merged over the request's (RFC 7396); the others get the
/// request's alone.
pub async fn per_user_data_is_merged_over_the_request_data<R: Runtime>() {
    let h = runtime::<R>().await;
    h.runtime.engine_users("bot", &users_on("tg", 1..3)).await;
    let event = h.event("bot", json!({})).await;
    h.accept(
        &event,
        json!({"platform": "tg", "users": [{"id": "1", "data": {"name": "Ann", "order": {"total": 5}}}, "2"],
               "data": {"order": {"id": 9}, "shop": "x"}}),
    )
    .await;
    h.runtime.drain().await;
    assert_eq!(
        h.user("bot", "bm-tg-1").await["last_request"],
        json!({"order": {"id": 9, "total": 5}, "shop": "x", "name": "Ann"})
    );
    assert_eq!(
        h.user("bot", "bm-tg-2").await["last_request"],
        json!({"order": {"id": 9}, "shop": "x"})
    );
}

/// Unknown ids are counted `not_found` and never created; the users found get
/// `last_request` with its stamps, and the attributes the engine wrote stay as they were.
pub async fn unknown_users_are_not_found_and_engine_attributes_survive<R: Runtime>() {
    let h = runtime::<R>().await;
    h.runtime.engine_users("bot", &users_on("tg", 1..3)).await;
    let event = h.event("bot", json!({})).await;
    let id = h
        .accept(
            &event,
            json!({"platform": "tg", "users": ["1", 2, "404", "405"], "data": {"order": {"id": 7}}}),
        )
        .await;
    h.runtime.drain().await;
    let s = h.status(&id).await;
    assert_eq!(
        (&s["state"], &s["delivered"], &s["not_found"]),
        (&json!("done"), &json!(2), &json!(2)),
        "{s}"
    );
    assert_eq!(h.runtime.user_count("bot").await, 2, "no user was created");
    for bm in ["bm-tg-1", "bm-tg-2"] {
        let user = h.user("bot", bm).await;
        assert_eq!(user["last_request"], json!({"order": {"id": 7}}));
        assert_eq!(user["last_request_id"], id.as_str());
        assert_eq!(user["last_event_id"], event.id.as_str());
        assert!(user["last_request_at"].as_i64().unwrap() > 0, "{user}");
        assert_eq!(
            h.runtime.engine_step("bot", bm).await.as_deref(),
            Some("cart")
        );
    }
}
