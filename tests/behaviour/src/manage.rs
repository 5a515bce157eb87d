//! Managing what requests need, through the admin API: bots and their connections, events
//! and their secrets, users imported and looked up, and who may do any of it.

use crate::{runtime, Runtime};
use serde_json::json;

/// Without the admin token — none, a wrong one, an empty one — every admin call is 401
/// with a challenge, and nothing changes.
pub async fn without_the_admin_token_nothing_is_answered_or_changed<R: Runtime>() {
    let h = runtime::<R>().await;
    for token in [None, Some("wrong-token-0123456789"), Some("")] {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(bearer.as_deref().map(|b| ("authorization", b)));
        let create = h
            .runtime
            .call(
                "POST",
                "/v1/admin/bots",
                &headers,
                Some(json!({"id": "sneaky"}).to_string()),
            )
            .await;
        assert_eq!(create.status, 401, "{token:?}: {}", create.body);
        assert_eq!(create.body["type"], "/problems/unauthorized");
        assert!(create.header("www-authenticate").is_some());
        for path in ["/v1/admin/bots", "/v1/admin/dead-letters"] {
            let get = h.runtime.call("GET", path, &headers, None).await;
            assert_eq!(get.status, 401, "{token:?} {path}");
        }
    }
    let (_, bots) = h.admin("GET", "/v1/admin/bots", None).await;
    assert_eq!(bots["bots"], json!([]), "nothing was created");
}

/// Bots, events and users through the admin API, start to finish: what is refused, what
/// is never echoed, what a request then finds, and what deleting does.
#[allow(clippy::too_many_lines)] // one scenario, read best whole
pub async fn bots_events_and_users_are_managed_through_the_admin_api<R: Runtime>() {
    let h = runtime::<R>().await;
    // Bots: create, refuse a duplicate, list, update, never echo secrets.
    let (status, unsigned) = h
        .admin(
            "POST",
            "/v1/admin/bots",
            Some(json!({"id": "unsigned", "screen_url": "https://engine.example/screens"})),
        )
        .await;
    assert_eq!(
        status, 422,
        "a screen_url needs a signing_secret: {unsigned}"
    );
    let (status, bot) = h
        .admin(
            "POST",
            "/v1/admin/bots",
            Some(json!({"id": "shop", "telegram_token": "123:SECRET",
                        "screen_url": "https://engine.example/screens", "signing_secret": "first"})),
        )
        .await;
    assert_eq!(status, 201, "{bot}");
    assert_eq!(bot["telegram_token_set"], true);
    assert!(!bot.to_string().contains("SECRET"));
    let (status, _) = h
        .admin("POST", "/v1/admin/bots", Some(json!({"id": "shop"})))
        .await;
    assert_eq!(status, 409);
    let (status, bot) = h
        .admin(
            "PATCH",
            "/v1/admin/bots/shop",
            Some(json!({"telegram_token": "", "signing_secret": "k"})),
        )
        .await;
    assert_eq!(status, 200, "{bot}");
    assert_eq!(
        (&bot["telegram_token_set"], &bot["signing_secret_set"]),
        (&json!(false), &json!(true))
    );
    let (_, list) = h.admin("GET", "/v1/admin/bots", None).await;
    assert_eq!(list["bots"].as_array().unwrap().len(), 1, "{list}");

    // Events: created with a secret shown once, which then works on the public endpoint.
    let event = h.event("shop", json!({})).await;
    let (event_id, secret) = (event.id.clone(), event.secret.clone());
    let (status, shown) = h
        .admin("GET", &format!("/v1/admin/events/{event_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(!shown.to_string().contains(&secret));
    let (_, events) = h.admin("GET", "/v1/admin/events?bot_id=shop", None).await;
    assert_eq!(events["events"][0]["id"], event_id.as_str());
    let (status, _) = h.admin("DELETE", "/v1/admin/bots/shop", None).await;
    assert_eq!(status, 409, "a bot with events is not deleted");

    // Users: JSON lines and CSV, a re-run adds nothing.
    let lines = "{\"platform\":\"tg\",\"platform_id\":\"1\"}\n{\"platform\":\"tg\",\"platform_id\":2,\"bm_id\":\"b2\"}\nbad\n";
    let path = "/v1/admin/bots/shop/users";
    let (status, report) = h.admin_raw(path, "application/x-ndjson", lines).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (
            &report["inserted"],
            &report["rejected"],
            &report["errors"][0]["line"]
        ),
        (&json!(2), &json!(1), &json!(3))
    );
    let (_, again) = h.admin_raw(path, "application/x-ndjson", lines).await;
    assert_eq!(
        (&again["inserted"], &again["existing"]),
        (&json!(0), &json!(2))
    );
    let (_, csv) = h
        .admin_raw(path, "text/csv", "platform,platform_id\nvk,9\ntg,1\n")
        .await;
    assert_eq!(
        (&csv["inserted"], &csv["existing"]),
        (&json!(1), &json!(1)),
        "{csv}"
    );

    // A request reaches them; the user document shows last_request.
    let accepted = h
        .post(
            &event,
            &[],
            &json!({"platform": "tg", "users": ["1", "2"], "data": {"order": 7}}),
        )
        .await;
    let status = accepted.status;
    let accepted = accepted.body;
    assert_eq!(status, 202, "{accepted}");
    h.runtime.drain().await;
    let (status, user) = h.admin("GET", "/v1/admin/bots/shop/users/tg/2", None).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        (&user["bm_id"], &user["last_request"]),
        (&json!("b2"), &json!({"order": 7}))
    );
    let (status, _) = h
        .admin("GET", "/v1/admin/bots/shop/users/bm/b2", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = h
        .admin("DELETE", "/v1/admin/bots/shop/users/tg/2", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = h
        .admin("GET", "/v1/admin/bots/shop/users/bm/b2", None)
        .await;
    assert_eq!(status, 404);

    // Requests of the event, newest first.
    let (_, requests) = h
        .admin(
            "GET",
            &format!("/v1/admin/requests?event_id={event_id}"),
            None,
        )
        .await;
    assert_eq!(
        requests["requests"].as_array().unwrap().len(),
        1,
        "{requests}"
    );
    assert_eq!(requests["requests"][0]["state"], "done");
    // An id no event or request can have is refused, not looked up.
    for query in ["event_id=a%20b", &format!("event_id={event_id}&before=a/b")] {
        let (status, problem) = h
            .admin("GET", &format!("/v1/admin/requests?{query}"), None)
            .await;
        assert_eq!(status, 422, "{query}: {problem}");
    }
    let request_id = accepted["request_id"].as_str().unwrap();
    for impossible in ["a%20b", &"r".repeat(129)] {
        let (status, _) = h
            .admin("GET", &format!("/v1/admin/requests/{impossible}"), None)
            .await;
        assert_eq!(status, 404, "{impossible}");
    }
    let (status, _) = h.cancel(request_id).await;
    assert_eq!(status, 409, "a finished request is not cancelled");

    // Disable, enable, delete.
    let (_, off) = h
        .admin(
            "PATCH",
            &format!("/v1/admin/events/{event_id}"),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(off["enabled"], false);
    for blank in [" ", "\n", " \t\r"] {
        let (status, problem) = h
            .admin(
                "PATCH",
                &format!("/v1/admin/events/{event_id}"),
                Some(json!({"name": blank})),
            )
            .await;
        assert_eq!(status, 422, "a blank name {blank:?}: {problem}");
    }
    // Blank is ASCII white space, as openapi.yaml's pattern says: a template of U+0085
    // alone is text (schemathesis found it valid by the schema and refused).
    for (template, answer) in [(" \n", 422), ("\u{85}", 201)] {
        let (status, body) = h
            .admin(
                "POST",
                "/v1/admin/events",
                Some(json!({"bot_id": "shop", "name": "notice",
                            "action": {"type": "message", "template": template}})),
            )
            .await;
        assert_eq!(status, answer, "template {template:?}: {body}");
        if let Some(created) = body["event"]["id"].as_str() {
            let (status, _) = h
                .admin("DELETE", &format!("/v1/admin/events/{created}"), None)
                .await;
            assert_eq!(status, 204);
        }
    }
    let status = h
        .post(&event, &[], &json!({"platform": "tg", "users": ["1"]}))
        .await
        .status;
    assert_eq!(status, 403);
    let (status, _) = h
        .admin("DELETE", &format!("/v1/admin/events/{event_id}"), None)
        .await;
    assert_eq!(status, 204);
    let status = h
        .post(&event, &[], &json!({"platform": "tg", "users": ["1"]}))
        .await
        .status;
    assert_eq!(status, 404);
    let (status, _) = h.admin("DELETE", "/v1/admin/bots/shop", None).await;
    assert_eq!(status, 204);
}
