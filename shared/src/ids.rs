//! Ids and platform names, each with one rule, parsed once where they come in — an event
//! request, an import line, an admin route — so that everything past that point holds a
//! value known to be valid, and a bot id cannot be passed where an event id is expected.
//!
//! - [`BotId`], [`EventId`], [`RequestId`]: names Herald or its operator chooses — 1 to
//!   128 of ASCII letters, digits, `-`, `_`, `.`, `:`.
//! - [`PlatformId`], [`BmId`]: a user's id on a messenger and in the bot engine's state,
//!   chosen by others — 1 to 128 characters, none a control character.
//! - [`Platform`]: a messenger as requests name it (`tg`, `vk`, …) — 1 to 32 of a-z, 0-9,
//!   `_`, `-` — except `any` (all platforms, in a request) and `bm` (state ids, in the
//!   admin API's user routes), which are reserved.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a text is not a valid id of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(pub String);

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// `text` if it follows this kind's rule.
            pub fn parse(text: impl Into<String>) -> Result<Self, InvalidId> {
                let text = text.into();
                $check(&text).map_err(InvalidId)?;
                Ok($name(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(text: String) -> Result<Self, InvalidId> {
                $name::parse(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> String {
                id.0.clone()
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(text: &str) -> Result<Self, InvalidId> {
                $name::parse(text)
            }
        }

        /// Read as the text it is (it cannot be changed through this).
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

id_type!(
    /// A bot, as its operator named it.
    BotId,
    check_name
);
id_type!(
    /// An event (Herald makes them: lowercase ULIDs).
    EventId,
    check_name
);
id_type!(
    /// An accepted event request (Herald makes them: lowercase ULIDs).
    RequestId,
    check_name
);
id_type!(
    /// A user's id on a messenger (a chat id, a phone number id, …).
    PlatformId,
    check_user_id
);
id_type!(
    /// A user's state id in the bot engine (`users_bm` in a request).
    BmId,
    check_user_id
);
id_type!(
    /// A messenger as requests name it.
    Platform,
    check_platform
);

/// A fresh sortable id (ULID), lower-case, monotonic within this process: what events,
/// requests and jobs are named by.
pub fn new_id() -> String {
    use std::sync::Mutex;
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
    id.to_string().to_ascii_lowercase()
}

impl EventId {
    /// A new event's id.
    pub fn generate() -> EventId {
        EventId(new_id())
    }
}

impl RequestId {
    /// A new request's id.
    pub fn generate() -> RequestId {
        RequestId(new_id())
    }
}

/// Longest id of any kind, in characters.
pub const MAX_ID_CHARS: usize = 128;

/// Names reserved from platforms: `any` means every platform in a request, `bm` a state
/// id in the admin API's `/users/{platform}/{id}` routes.
pub const RESERVED_PLATFORMS: [&str; 2] = ["any", "bm"];

fn check_name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= MAX_ID_CHARS
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 128 letters, digits or - _ . :".into())
    }
}

fn check_user_id(text: &str) -> Result<(), String> {
    let chars = text.chars().count();
    if chars == 0 {
        Err("must not be empty".into())
    } else if chars > MAX_ID_CHARS {
        Err(format!(
            "is {chars} characters; the limit is {MAX_ID_CHARS}"
        ))
    } else if text.chars().any(char::is_control) {
        Err("must not contain control characters".into())
    } else {
        Ok(())
    }
}

fn check_platform(text: &str) -> Result<(), String> {
    let name = (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if name && !RESERVED_PLATFORMS.contains(&text) {
        Ok(())
    } else {
        Err(format!(
            "must be a platform name such as \"tg\" (1-32 of a-z, 0-9, _ or -), not {}",
            RESERVED_PLATFORMS.map(|r| format!("{r:?}")).join(" or ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_keeps_its_one_rule() {
        for good in [
            "shop",
            "01m8trtwspshbcm5nxpe8kmr83",
            "a.b:c-d_e",
            &"x".repeat(128),
        ] {
            assert!(BotId::parse(good).is_ok(), "{good}");
            assert!(EventId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "ä", "a/b", &"x".repeat(129)] {
            assert!(BotId::parse(bad).is_err(), "{bad}");
            assert!(RequestId::parse(bad).is_err(), "{bad}");
        }
        for good in ["123456", "+49 30 1234", "Ann 🙂", &"ä".repeat(128)] {
            assert!(PlatformId::parse(good).is_ok(), "{good}");
            assert!(BmId::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            PlatformId::parse("").unwrap_err().to_string(),
            "must not be empty"
        );
        assert_eq!(
            BmId::parse("a\u{0089}").unwrap_err().to_string(),
            "must not contain control characters"
        );
        assert_eq!(
            PlatformId::parse("x".repeat(129)).unwrap_err().to_string(),
            "is 129 characters; the limit is 128"
        );
        for good in ["tg", "vk", "wa", "fb_2", "viber-x"] {
            assert!(Platform::parse(good).is_ok(), "{good}");
        }
        for bad in ["any", "bm", "Telegram", "t g", "", &"x".repeat(33)] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_strings_on_the_wire_and_checked_when_read() {
        let id = BotId::parse("shop").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"shop\"");
        assert_eq!(serde_json::from_str::<BotId>("\"shop\"").unwrap(), id);
        assert!(serde_json::from_str::<Platform>("\"any\"").is_err());
    }
}
