//! The admin API's documents: what operators change and inspect, in any runtime.
//!
//! The admin ports ([`crate::ports::admin`]) take and answer these types, and
//! [`crate::http::admin`] serves them under `/v1/admin`. They never carry a bot token, a
//! signing secret or an event secret's hash — those are write-only (a bot answers only
//! whether each is set).

use crate::domain::{RateLimit, RequestState};
use crate::lane::Lane;
use serde::{Deserialize, Deserializer, Serialize};

/// Changes to an event: absent fields stay as they are; `"rate_limit": null` removes
/// the limit and `"lane": null` the default lane (a `null` name or `enabled` is refused).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventChanges {
    #[serde(default, deserialize_with = "present")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    pub rate_limit: Option<Option<RateLimit>>,
    #[serde(default, deserialize_with = "present")]
    pub lane: Option<Option<Lane>>,
}

/// A field that was given, for `#[serde(default, deserialize_with = "present")]`: absent
/// is None, given is Some. With `T = Option<_>` it tells `null` (Some(None)) from absent;
/// with any other `T` a `null` is refused as the wrong type, not read as absent.
pub(crate) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// One user to import.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewUser {
    pub platform: String,
    #[serde(deserialize_with = "string_or_integer")]
    pub platform_id: String,
    /// The bot engine's state id; derived from the platform id when absent, so that
    /// importing the same user twice finds the first one.
    #[serde(default)]
    pub bm_id: Option<String>,
}

impl NewUser {
    /// Why this user cannot be imported, if it cannot.
    pub fn problem(&self) -> Option<String> {
        use crate::ids::{BmId, Platform, PlatformId};
        let (platform, platform_id) = (
            Platform::parse(self.platform.as_str()),
            PlatformId::parse(self.platform_id.as_str()),
        );
        let bm_id = self.bm_id.as_deref().map(BmId::parse).transpose();
        match (platform, platform_id, bm_id) {
            (Err(e), _, _) => Some(format!("platform {e}")),
            (_, Err(e), _) => Some(format!("platform_id {e}")),
            (_, _, Err(e)) => Some(format!("bm_id {e}")),
            _ => None,
        }
    }

    /// The state id this user gets: the given one, or one derived from platform and
    /// platform id (24 hex characters, like the ids bot engines use).
    pub fn state_id(&self) -> String {
        match &self.bm_id {
            Some(id) => id.clone(),
            None => {
                let digest = crate::secret::hash(&format!(
                    "herald-user\u{0}{}\u{0}{}",
                    self.platform, self.platform_id
                ));
                hex::encode(&digest[..12])
            }
        }
    }
}

fn string_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "platform_id must be a string or an integer, not {other}"
        ))),
    }
}

/// What importing a batch of users did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Users added.
    pub inserted: u64,
    /// Already present (same platform id or same bm_id): left unchanged.
    pub existing: u64,
}

/// A job kept dead: its users exhausted their attempts, or it could not be processed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The job id (what redrive and purge take).
    pub id: String,
    pub request_id: String,
    pub kind: &'static str,
    /// Users in the job (deliver jobs).
    pub users: usize,
    pub attempts: u32,
    pub reason: String,
    /// RFC 3339, when the job was given up on (when known).
    pub died_at: Option<String>,
}

/// What deleting something did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    NotFound,
    /// It is still in use; the message says by what.
    InUse(String),
}

/// A request's cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancellation {
    Cancelled,
    NotFound,
    /// Not pending any more: it is in this state.
    Final(RequestState),
}

/// Dead jobs to act on: all, or those with these ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    All,
    Ids(Vec<String>),
}

impl Selection {
    pub fn includes(&self, id: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids.iter().any(|i| i == id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_rate_limit_is_told_from_an_absent_one() {
        let absent: EventChanges = serde_json::from_str(r#"{"enabled":false}"#).unwrap();
        assert_eq!(absent.rate_limit, None);
        let null: EventChanges = serde_json::from_str(r#"{"rate_limit":null}"#).unwrap();
        assert_eq!(null.rate_limit, Some(None));
        let set: EventChanges =
            serde_json::from_str(r#"{"rate_limit":{"per_second":2,"burst":5}}"#).unwrap();
        assert_eq!(
            set.rate_limit,
            Some(Some(RateLimit {
                per_second: 2.0,
                burst: 5
            }))
        );
    }

    #[test]
    fn derived_state_ids_are_stable_per_platform_user() {
        let user = |platform: &str, id: &str| NewUser {
            platform: platform.into(),
            platform_id: id.into(),
            bm_id: None,
        };
        assert_eq!(user("tg", "1").state_id(), user("tg", "1").state_id());
        assert_ne!(user("tg", "1").state_id(), user("vk", "1").state_id());
        assert_eq!(user("tg", "1").state_id().len(), 24);
    }
}
