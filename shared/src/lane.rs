//! Delivery lanes: every request runs in one, `transactional` (a few users, waited for by
//! a person: an order confirmation, a code) or `bulk` (a broadcast). The rule that picks a
//! request's lane lives here, once, for the contract and both runtimes.
//!
//! - A request may name its lane (`"lane": "transactional"` or `"bulk"`).
//! - Otherwise an explicit audience of at most [`TRANSACTIONAL_BY_DEFAULT`] users is
//!   transactional, and `everyone` or a longer list is bulk: a fixed rule, tied to no
//!   setting, so that a CRM knows its lane from the request alone.
//! - `transactional` on `everyone` or on more than [`TRANSACTIONAL_AT_MOST`] explicit users
//!   is refused: a broadcast in the fast lane would defeat it.

use serde::{Deserialize, Serialize};

/// Explicit audiences up to this many users are transactional unless they say otherwise.
pub const TRANSACTIONAL_BY_DEFAULT: usize = 100;

/// The most explicit users a request may send in the transactional lane.
pub const TRANSACTIONAL_AT_MOST: usize = 1_000;

/// Which lane a request's deliveries run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Transactional,
    /// Also what a request recorded before lanes existed reads as.
    #[default]
    Bulk,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Transactional => "transactional",
            Lane::Bulk => "bulk",
        }
    }

    /// A lane as a request names it.
    pub fn parse(text: &str) -> Option<Lane> {
        match text {
            "transactional" => Some(Lane::Transactional),
            "bulk" => Some(Lane::Bulk),
            _ => None,
        }
    }

    /// The lane of a request that names none: `explicit` is the number of users an explicit
    /// audience names, None for `everyone`.
    pub fn by_default(explicit: Option<usize>) -> Lane {
        match explicit {
            Some(users) if users <= TRANSACTIONAL_BY_DEFAULT => Lane::Transactional,
            _ => Lane::Bulk,
        }
    }

    /// Why `lane` cannot carry an audience of `explicit` users (None: `everyone`), if it
    /// cannot.
    pub fn refusal(self, explicit: Option<usize>) -> Option<String> {
        match (self, explicit) {
            (Lane::Bulk, _) => None,
            (Lane::Transactional, None) => Some(
                "\"transactional\" is for a few users; \"everyone\" runs in the \"bulk\" lane"
                    .into(),
            ),
            (Lane::Transactional, Some(users)) if users > TRANSACTIONAL_AT_MOST => Some(format!(
                "\"transactional\" takes at most {TRANSACTIONAL_AT_MOST} users; this request names {users}"
            )),
            (Lane::Transactional, Some(_)) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_explicit_users_are_transactional_and_the_rest_bulk() {
        assert_eq!(Lane::by_default(Some(1)), Lane::Transactional);
        assert_eq!(Lane::by_default(Some(100)), Lane::Transactional);
        assert_eq!(Lane::by_default(Some(101)), Lane::Bulk);
        assert_eq!(Lane::by_default(None), Lane::Bulk);
    }

    #[test]
    fn the_fast_lane_refuses_broadcasts() {
        assert!(Lane::Transactional.refusal(Some(1_000)).is_none());
        assert!(Lane::Transactional
            .refusal(Some(1_001))
            .unwrap()
            .contains("at most 1000"));
        assert!(Lane::Transactional.refusal(None).is_some());
        assert!(Lane::Bulk.refusal(None).is_none());
        assert!(Lane::Bulk.refusal(Some(1)).is_none());
    }

    #[test]
    fn lanes_are_named_as_the_contract_names_them() {
        for lane in [Lane::Transactional, Lane::Bulk] {
            assert_eq!(Lane::parse(lane.as_str()), Some(lane));
            assert_eq!(
                serde_json::to_value(lane).unwrap(),
                serde_json::json!(lane.as_str())
            );
        }
        assert_eq!(Lane::parse("Transactional"), None);
    }
}
