//! The HTTP calls the rules make, over any [`Runtime`]: event requests with the event's
//! secret, and admin calls with the admin token.

use crate::{Runtime, ADMIN_TOKEN};
use serde_json::{json, Value};

/// What a runtime answered one call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`null` when it is empty or not JSON).
    pub body: Value,
}

impl Answer {
    /// What an HTTP answer of the Router (in process or behind the Lambda adapter) says.
    pub async fn of(response: axum::response::Response) -> Answer {
        use http_body_util::BodyExt;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An event's id and the secret its URL carries.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub secret: String,
}

/// A runtime with the calls rules make on it.
pub struct Client<R: Runtime> {
    pub runtime: R,
}

impl<R: Runtime> Client<R> {
    /// An admin API call with the admin token: status and body.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        let answer = self
            .runtime
            .call(method, path, &headers, body.map(|b| b.to_string()))
            .await;
        (answer.status, answer.body)
    }

    /// An admin call with a raw body of this content type (user imports).
    pub async fn admin_raw(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", content_type),
        ];
        let answer = self
            .runtime
            .call("POST", path, &headers, Some(body.to_string()))
            .await;
        (answer.status, answer.body)
    }

    /// Create an event of `bot` showing a screen, with `extra` fields in its document.
    pub async fn event(&self, bot: &str, extra: Value) -> Event {
        let mut document = json!({
            "bot_id": bot, "name": "order-paid",
            "action": {"type": "screen", "screen_id": "thanks"},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            document[k] = v.clone();
        }
        let (status, created) = self.admin("POST", "/v1/admin/events", Some(document)).await;
        assert_eq!(status, 201, "{created}");
        Event {
            id: created["event"]["id"].as_str().unwrap().to_string(),
            secret: created["secret"].as_str().unwrap().to_string(),
        }
    }

    /// POST an event request to the event's URL, with extra headers.
    pub async fn post(&self, event: &Event, headers: &[(&str, &str)], body: &Value) -> Answer {
        self.post_with_secret(&event.id, &event.secret, headers, body)
            .await
    }

    pub async fn post_with_secret(
        &self,
        event_id: &str,
        secret: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        let path = format!("/v1/events/{event_id}/{secret}");
        self.runtime
            .call("POST", &path, &all, Some(body.to_string()))
            .await
    }

    /// POST an event request that must be accepted; its request id.
    pub async fn accept(&self, event: &Event, body: Value) -> String {
        let answer = self.post(event, &[], &body).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        answer.body["request_id"].as_str().unwrap().to_string()
    }

    /// A request's status document through the admin API.
    pub async fn status(&self, request_id: &str) -> Value {
        let (code, status) = self
            .admin("GET", &format!("/v1/admin/requests/{request_id}"), None)
            .await;
        assert_eq!(code, 200, "{status}");
        status
    }

    /// Cancel a request through the admin API: the answer's status and document.
    pub async fn cancel(&self, request_id: &str) -> (u16, Value) {
        self.admin(
            "POST",
            &format!("/v1/admin/requests/{request_id}/cancel"),
            None,
        )
        .await
    }

    /// One user's stored state through the admin API, by state id.
    pub async fn user(&self, bot: &str, bm_id: &str) -> Value {
        let (code, user) = self
            .admin(
                "GET",
                &format!("/v1/admin/bots/{bot}/users/bm/{bm_id}"),
                None,
            )
            .await;
        assert_eq!(code, 200, "{user}");
        user
    }

    /// The requests recorded for an event, newest first.
    pub async fn requests_of(&self, event: &Event) -> Vec<Value> {
        let (code, list) = self
            .admin(
                "GET",
                &format!("/v1/admin/requests?event_id={}", event.id),
                None,
            )
            .await;
        assert_eq!(code, 200, "{list}");
        list["requests"].as_array().unwrap().clone()
    }

    /// The dead letters, as the admin API lists them.
    pub async fn dead_letters(&self) -> Vec<Value> {
        let (code, dead) = self.admin("GET", "/v1/admin/dead-letters", None).await;
        assert_eq!(code, 200, "{dead}");
        dead["dead_letters"].as_array().unwrap().clone()
    }
}
