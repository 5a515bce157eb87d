//! Delivery channels as data: what a channel is called, what it serves and which
//! credentials it needs, and a bot's connections — one map keyed by channel.
//!
//! A channel module (in the delivery adapters) declares a [`ChannelSpec`]; the runtime
//! hands the list of them ([`Channels`]) to the [`App`](crate::App). Everything that
//! names a credential takes it from there: the admin API validates [`BotChanges`] against
//! it and answers a [`BotSummary`] built from it, the stores keep [`Connections`] as one
//! opaque map, and `openapi.yaml` is checked against it by a test. The flat fields of the
//! first admin API (`telegram_token`, `screen_url`, `signing_secret`) are aliases, fixed
//! in [`LEGACY_FIELDS`]: still accepted, still answered, never added to.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Which kind of action a channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// `message` actions: a rendered template sent on the user's messenger.
    Messages,
    /// `screen` actions: a webhook to the bot engine.
    Screens,
}

/// What a field's value must look like. Credentials (secrets, URLs, text) must all be set
/// for a channel to be used; settings (numbers, switches) are optional, with the channel's
/// default when unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A token or key: write-only, answered only as set / not set.
    Secret,
    /// An `http://` or `https://` URL, answered as it is.
    HttpUrl,
    /// Any one-line value, answered as it is.
    Text,
    /// A setting: a whole number from `min` to `max`, answered as a number.
    Number { min: u32, max: u32 },
    /// A setting: `true` or `false`, answered as a boolean.
    Switch,
}

impl FieldKind {
    /// Whether the field is an optional setting rather than a credential.
    pub fn is_setting(self) -> bool {
        matches!(self, FieldKind::Number { .. } | FieldKind::Switch)
    }

    /// A stored value as the admin API answers it.
    fn shown(self, value: &str) -> Value {
        match self {
            FieldKind::Number { .. } => value.parse::<u64>().map_or(Value::Null, Value::from),
            FieldKind::Switch => Value::Bool(value == "true"),
            _ => Value::from(value),
        }
    }
}

/// One credential of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
    /// What it is, for the CLI's help and the console.
    pub about: &'static str,
    /// Another field of the same channel this one cannot be set without, and why.
    pub needs: Option<(&'static str, &'static str)>,
}

/// A delivery channel as the rest of Herald sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelSpec {
    /// The key of its connection in a bot's `connections`.
    pub name: &'static str,
    pub title: &'static str,
    pub serves: Serves,
    /// The user platforms it reaches; empty: every platform (a bot engine's webhook).
    pub platforms: &'static [&'static str],
    pub fields: &'static [FieldSpec],
    /// How fast the channel sends for one bot, if it is paced (a messenger's rate limit);
    /// None: it is not (a bot engine's webhook).
    pub pace: Option<PaceRule>,
    /// What its messages may hold (markups it renders, text and button limits); None for
    /// a channel that carries screens.
    pub limits: Option<crate::message::MessageLimits>,
}

/// Where a paced channel's rate for one bot comes from: the bot's own setting, else a
/// raised rate while a switch of the bot is on, else the process's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceRule {
    /// The setting (a [`FieldKind::Number`]) that holds the bot's own rate.
    pub rate_field: &'static str,
    /// A switch and the rate it raises the default to (Telegram's paid broadcasts).
    pub boost: Option<(&'static str, u32)>,
}

impl ChannelSpec {
    /// Sends per second for a bot with these connections: its rate setting, else the
    /// boosted rate with the switch on, else `default`. None when the channel is not paced.
    pub fn rate_of(&self, connections: &Connections, default: u32) -> Option<u32> {
        let rule = self.pace?;
        let own = connections
            .get(self.name, rule.rate_field)
            .and_then(|rate| rate.parse::<u32>().ok());
        let boosted = rule
            .boost
            .filter(|(switch, _)| connections.get(self.name, switch) == Some("true"))
            .map(|(_, rate)| rate);
        Some(own.or(boosted).unwrap_or(default).max(1))
    }

    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn reaches(&self, platform: &str) -> bool {
        self.platforms.is_empty() || self.platforms.contains(&platform)
    }

    /// A channel is usable for a bot once every credential it has is set (settings are
    /// optional).
    pub fn is_complete(&self, connections: &Connections) -> bool {
        self.fields
            .iter()
            .filter(|f| !f.kind.is_setting())
            .all(|f| connections.get(self.name, f.name).is_some())
    }
}

/// The channels a runtime registered.
pub type Channels = &'static [&'static ChannelSpec];

/// The first admin API's flat fields: (alias, channel, field).
pub const LEGACY_FIELDS: &[(&str, &str, &str)] = &[
    ("telegram_token", "telegram", "token"),
    ("screen_url", "engine", "url"),
    ("signing_secret", "engine", "signing_secret"),
];

/// Longest value of any credential.
pub const MAX_VALUE_CHARS: usize = 2048;

/// A bot's connections: channel → field → value. Tokens and secrets are in here, so it
/// has no `Serialize` (it cannot end up in an answer by accident) and its `Debug` form
/// names fields, never values. Stores keep it as one JSON document ([`Connections::to_json`]).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Connections(BTreeMap<String, BTreeMap<String, String>>);

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: BTreeMap<&str, Vec<&str>> = self
            .0
            .iter()
            .map(|(c, fields)| (c.as_str(), fields.keys().map(String::as_str).collect()))
            .collect();
        f.debug_tuple("Connections").field(&names).finish()
    }
}

impl Connections {
    pub fn get(&self, channel: &str, field: &str) -> Option<&str> {
        self.0.get(channel)?.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These connections with one field set (`""`: cleared).
    pub fn with(mut self, channel: &str, field: &str, value: &str) -> Connections {
        self.apply(&BotChanges::default().set(channel, field, value));
        self
    }

    /// channel → field → value, for a store that keeps the map in a shape of its own.
    pub fn as_map(&self) -> &BTreeMap<String, BTreeMap<String, String>> {
        &self.0
    }

    /// A stored map read back; empty values and channels left empty read as unset.
    pub fn from_map(mut map: BTreeMap<String, BTreeMap<String, String>>) -> Connections {
        for fields in map.values_mut() {
            fields.retain(|_, value| !value.is_empty());
        }
        map.retain(|_, fields| !fields.is_empty());
        Connections(map)
    }

    /// Set each changed field, or remove it for `""`; a channel left with no field goes.
    pub fn apply(&mut self, changes: &BotChanges) {
        for (channel, fields) in &changes.connections {
            let entry = self.0.entry(channel.clone()).or_default();
            for (field, value) in fields {
                if value.is_empty() {
                    entry.remove(field);
                } else {
                    entry.insert(field.clone(), value.clone());
                }
            }
            if entry.is_empty() {
                self.0.remove(channel);
            }
        }
    }

    /// The stored form: `{"channel": {"field": "value"}}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".into())
    }

    /// The stored form read back ([`Connections::from_map`]).
    pub fn from_json(json: &str) -> Result<Connections, serde_json::Error> {
        serde_json::from_str(json).map(Connections::from_map)
    }

    /// The connections of a bot stored before connections were a map: its flat fields,
    /// read through `flat` by alias.
    pub fn from_legacy(flat: impl Fn(&str) -> Option<String>) -> Connections {
        let mut connections = Connections::default();
        for (alias, channel, field) in LEGACY_FIELDS {
            if let Some(value) = flat(alias).filter(|v| !v.is_empty()) {
                connections
                    .0
                    .entry((*channel).into())
                    .or_default()
                    .insert((*field).into(), value);
            }
        }
        connections
    }
}

/// Changes to a bot's connections: channel → field → value; `""` clears a field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotChanges {
    pub connections: BTreeMap<String, BTreeMap<String, String>>,
    /// The name each change was given under (`connections.engine.url` or its alias
    /// `screen_url`), so that an error points where the client wrote it.
    given_as: BTreeMap<(String, String), String>,
    /// Changes given as a JSON number or boolean (stored as text): only settings take them.
    typed: std::collections::BTreeSet<(String, String)>,
}

type FieldErrors = Vec<(String, String)>;

impl BotChanges {
    /// One change, as `connections.{channel}.{field}`.
    pub fn set(mut self, channel: &str, field: &str, value: &str) -> BotChanges {
        self.insert(channel, field, value.into(), None);
        self
    }

    /// Record one change; answers where it was given before, when it was.
    fn insert(
        &mut self,
        channel: &str,
        field: &str,
        value: String,
        alias: Option<&str>,
    ) -> Option<String> {
        let key = (channel.to_string(), field.to_string());
        if let Some(first) = self.given_as.get(&key) {
            return Some(first.clone());
        }
        let path = alias.map_or_else(|| format!("connections.{channel}.{field}"), String::from);
        self.given_as.insert(key, path);
        self.connections
            .entry(channel.into())
            .or_default()
            .insert(field.into(), value);
        None
    }

    /// [`BotChanges::insert`], refusing a field given both under its alias and in
    /// `connections`.
    fn insert_once(
        &mut self,
        (channel, field): (&str, &str),
        value: String,
        alias: Option<&str>,
        errors: &mut FieldErrors,
    ) {
        if let Some(first) = self.insert(channel, field, value, alias) {
            let path = alias.map_or_else(|| format!("connections.{channel}.{field}"), String::from);
            errors.push((path, format!("is the same field as {first}: give it once")));
        }
    }

    /// Read the changes from an admin document: `connections` and the flat aliases, every
    /// other key refused unless listed in `other_keys` (`null` is refused everywhere: it
    /// would say neither "keep" nor "clear").
    pub fn from_document(
        document: &Map<String, Value>,
        other_keys: &[&str],
    ) -> Result<BotChanges, FieldErrors> {
        let mut changes = BotChanges::default();
        let mut errors = Vec::new();
        let text = |path: &str, value: &Value, errors: &mut FieldErrors| match value {
            Value::String(s) => Some(s.clone()),
            _ => {
                errors.push((path.into(), "must be a string (\"\" clears it)".into()));
                None
            }
        };
        for (key, value) in document {
            if let Some((_, channel, field)) = LEGACY_FIELDS.iter().find(|(a, ..)| a == key) {
                if let Some(value) = text(key, value, &mut errors) {
                    changes.insert_once((channel, field), value, Some(key), &mut errors);
                }
            } else if key == "connections" {
                changes.read_connections(value, &mut errors);
            } else if !other_keys.contains(&key.as_str()) {
                errors.push((key.clone(), "unknown field".into()));
            }
        }
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(errors)
        }
    }

    fn read_connections(&mut self, value: &Value, errors: &mut FieldErrors) {
        let Some(channels) = value.as_object() else {
            errors.push(("connections".into(), "must be an object of channels".into()));
            return;
        };
        for (channel, fields) in channels {
            let Some(fields) = fields.as_object() else {
                errors.push((
                    format!("connections.{channel}"),
                    "must be an object of fields".into(),
                ));
                continue;
            };
            for (field, value) in fields {
                let path = format!("connections.{channel}.{field}");
                let typed = match value {
                    Value::String(s) => {
                        self.insert_once((channel, field), s.clone(), None, errors);
                        continue;
                    }
                    // 256.0 is the integer 256, as JSON Schema reads it.
                    Value::Number(n) => match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
                        _ => n.to_string(),
                    },
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        errors.push((path, "must be a string (\"\" clears it)".into()));
                        continue;
                    }
                };
                self.typed.insert((channel.clone(), field.clone()));
                self.insert_once((channel, field), typed, None, errors);
            }
        }
    }

    fn path(&self, channel: &str, field: &str) -> String {
        self.given_as
            .get(&(channel.to_string(), field.to_string()))
            .cloned()
            .unwrap_or_else(|| format!("connections.{channel}.{field}"))
    }

    /// Where to point an error about `needed`, missing for `field`: where the client wrote
    /// `needed`, else in the shape it wrote `field` in (flat alias or canonical).
    fn needed_path(&self, channel: &str, field: &str, needed: &str) -> String {
        let key = |f: &str| (channel.to_string(), f.to_string());
        if let Some(path) = self.given_as.get(&key(needed)) {
            return path.clone();
        }
        let canonical = format!("connections.{channel}.{needed}");
        match self.given_as.get(&key(field)) {
            Some(path) if !path.starts_with("connections.") => display_name(channel, needed),
            _ => canonical,
        }
    }

    /// Every channel and field must be registered, every value one line of sane length,
    /// a URL http(s).
    pub fn validate(&self, channels: Channels) -> Result<(), FieldErrors> {
        let mut errors = Vec::new();
        for (channel, fields) in &self.connections {
            let Some(spec) = channels.iter().find(|c| c.name == channel) else {
                let known: Vec<&str> = channels.iter().map(|c| c.name).collect();
                errors.push((
                    format!("connections.{channel}"),
                    format!("unknown channel; the channels are {}", known.join(", ")),
                ));
                continue;
            };
            for (field, value) in fields {
                let path = self.path(channel, field);
                let typed = self.typed.contains(&(channel.clone(), field.clone()));
                let Some(field) = spec.field(field) else {
                    errors.push((path, "unknown field".into()));
                    continue;
                };
                if typed && !field.kind.is_setting() {
                    errors.push((path, "must be a string (\"\" clears it)".into()));
                } else if let Some(problem) = value_problem(field.kind, value) {
                    errors.push((path, problem));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Refuse the changes if they would leave the bot (`current`, None for a new one) with
    /// a field set but a field it needs unset (a screen URL with no signing secret: an
    /// unsigned webhook).
    pub fn keeps_needs(
        &self,
        channels: Channels,
        current: Option<&Connections>,
    ) -> Result<(), FieldErrors> {
        let mut after = current.cloned().unwrap_or_default();
        after.apply(self);
        let mut errors = Vec::new();
        for spec in channels {
            for field in spec.fields {
                let Some((needed, why)) = field.needs else {
                    continue;
                };
                if after.get(spec.name, field.name).is_some()
                    && after.get(spec.name, needed).is_none()
                {
                    errors.push((
                        self.needed_path(spec.name, field.name, needed),
                        format!(
                            "a bot with a {} needs a {}: {why}",
                            display_name(spec.name, field.name),
                            display_name(spec.name, needed)
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// How a field is named in messages: its alias when it has one, `channel.field` otherwise.
pub fn display_name(channel: &str, field: &str) -> String {
    LEGACY_FIELDS
        .iter()
        .find(|(_, c, f)| *c == channel && *f == field)
        .map_or_else(
            || format!("{channel}.{field}"),
            |(alias, ..)| (*alias).into(),
        )
}

fn value_problem(kind: FieldKind, value: &str) -> Option<String> {
    if value.chars().count() > MAX_VALUE_CHARS || value.chars().any(char::is_control) {
        return Some("must be one line of at most 2048 characters".into());
    }
    if value.is_empty() {
        return None;
    }
    match kind {
        FieldKind::HttpUrl if !(value.starts_with("http://") || value.starts_with("https://")) => {
            Some("must be an http:// or https:// URL".into())
        }
        FieldKind::Number { min, max }
            if !value.parse::<u32>().is_ok_and(|n| (min..=max).contains(&n)) =>
        {
            Some(format!("must be a whole number from {min} to {max}"))
        }
        FieldKind::Switch if value != "true" && value != "false" => {
            Some("must be true or false".into())
        }
        _ => None,
    }
}

/// A bot as the admin API shows it: which connections are set, never their secrets.
/// `connections` is the canonical shape; the flat alias fields are answered too, for
/// clients of the first admin API.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct BotSummary {
    pub id: String,
    /// channel → field → the value (URLs, text) or `{field}_set: bool` (secrets); every
    /// registered channel and field is listed.
    pub connections: BTreeMap<String, Map<String, Value>>,
    #[serde(flatten)]
    pub aliases: Map<String, Value>,
    /// Milliseconds since the Unix epoch.
    #[serde(skip)]
    pub created_at: i64,
}

/// A bot as a store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotRecord {
    pub id: String,
    pub connections: Connections,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl BotRecord {
    /// What the admin API answers for this bot.
    pub fn summary(&self, channels: Channels) -> BotSummary {
        let shown = |channel: &str, field: &FieldSpec| -> (String, Value) {
            let value = self.connections.get(channel, field.name);
            match field.kind {
                FieldKind::Secret => (format!("{}_set", field.name), value.is_some().into()),
                kind => (
                    field.name.to_string(),
                    value.map_or(Value::Null, |v| kind.shown(v)),
                ),
            }
        };
        let connections = channels
            .iter()
            .map(|spec| {
                let fields = spec.fields.iter().map(|f| shown(spec.name, f)).collect();
                (spec.name.to_string(), fields)
            })
            .collect();
        let mut aliases = Map::new();
        for (alias, channel, field) in LEGACY_FIELDS {
            let Some(spec) = channels.iter().find(|c| c.name == *channel) else {
                continue;
            };
            if let Some(field) = spec.field(field) {
                let (name, value) = shown(channel, field);
                let name = name.replacen(field.name, alias, 1);
                aliases.insert(name, value);
            }
        }
        BotSummary {
            id: self.id.clone(),
            connections,
            aliases,
            created_at: self.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: ChannelSpec = ChannelSpec {
        name: "engine",
        title: "Bot engine",
        serves: Serves::Screens,
        platforms: &[],
        fields: &[
            FieldSpec {
                name: "url",
                kind: FieldKind::HttpUrl,
                about: "",
                needs: Some(("signing_secret", "webhooks are never sent unsigned")),
            },
            FieldSpec {
                name: "signing_secret",
                kind: FieldKind::Secret,
                about: "",
                needs: None,
            },
        ],
        pace: None,
        limits: None,
    };
    const CHANNELS: Channels = &[&ENGINE];

    fn document(json: Value) -> Result<BotChanges, FieldErrors> {
        BotChanges::from_document(json.as_object().unwrap(), &[])
    }

    #[test]
    fn aliases_and_the_canonical_shape_mean_the_same_change() {
        let flat = document(serde_json::json!({"screen_url": "https://e.example"})).unwrap();
        let canonical =
            document(serde_json::json!({"connections": {"engine": {"url": "https://e.example"}}}))
                .unwrap();
        assert_eq!(flat.connections, canonical.connections);
        // An error names the field as the client wrote it.
        assert_eq!(
            flat.keeps_needs(CHANNELS, None).unwrap_err()[0].0,
            "signing_secret"
        );
        assert_eq!(
            canonical.keeps_needs(CHANNELS, None).unwrap_err()[0].0,
            "connections.engine.signing_secret"
        );
        let bad = document(serde_json::json!({"screen_url": "ftp://x"})).unwrap();
        assert_eq!(bad.validate(CHANNELS).unwrap_err()[0].0, "screen_url");
    }

    #[test]
    fn unknown_channels_fields_and_nulls_are_refused() {
        let unknown = document(serde_json::json!({"connections": {"vk": {"token": "t"}}}))
            .unwrap()
            .validate(CHANNELS)
            .unwrap_err();
        assert_eq!(unknown[0].0, "connections.vk");
        let field = document(serde_json::json!({"connections": {"engine": {"uri": "t"}}}))
            .unwrap()
            .validate(CHANNELS)
            .unwrap_err();
        assert_eq!(field[0].0, "connections.engine.uri");
        assert!(document(serde_json::json!({"screen_url": null})).is_err());
        assert!(document(serde_json::json!({"nope": "x"})).is_err());
        let twice = document(serde_json::json!({"screen_url": "https://a.example",
            "connections": {"engine": {"url": "https://b.example"}}}))
        .unwrap_err();
        assert!(twice[0].1.contains("give it once"), "{twice:?}");
    }

    #[test]
    fn summaries_never_carry_secrets_and_keep_the_flat_fields() {
        let mut connections = Connections::default();
        connections.apply(
            &BotChanges::default()
                .set("engine", "url", "https://e.example")
                .set("engine", "signing_secret", "KEY"),
        );
        let summary = BotRecord {
            id: "shop".into(),
            connections: connections.clone(),
            created_at: 0,
        }
        .summary(CHANNELS);
        let answer = serde_json::to_value(&summary).unwrap();
        assert!(!answer.to_string().contains("KEY"), "{answer}");
        assert!(!format!("{connections:?}").contains("KEY"));
        assert_eq!(answer["connections"]["engine"]["signing_secret_set"], true);
        assert_eq!(answer["screen_url"], "https://e.example");
        assert_eq!(answer["signing_secret_set"], true);
        // Cleared fields go, and a channel left empty with them.
        connections.apply(&BotChanges::default().set("engine", "url", "").set(
            "engine",
            "signing_secret",
            "",
        ));
        assert!(connections.is_empty());
    }

    #[test]
    fn legacy_fields_read_into_the_map() {
        let connections = Connections::from_legacy(|alias| {
            (alias == "telegram_token").then(|| "1:T".to_string())
        });
        assert_eq!(connections.get("telegram", "token"), Some("1:T"));
        assert_eq!(
            Connections::from_json(&connections.to_json()).unwrap(),
            connections
        );
    }

    const PACED: ChannelSpec = ChannelSpec {
        name: "paced",
        title: "Paced",
        serves: Serves::Messages,
        platforms: &["tg"],
        fields: &[
            FieldSpec {
                name: "token",
                kind: FieldKind::Secret,
                about: "",
                needs: None,
            },
            FieldSpec {
                name: "rate",
                kind: FieldKind::Number { min: 1, max: 1000 },
                about: "",
                needs: None,
            },
            FieldSpec {
                name: "paid",
                kind: FieldKind::Switch,
                about: "",
                needs: None,
            },
        ],
        pace: Some(PaceRule {
            rate_field: "rate",
            boost: Some(("paid", 1000)),
        }),
        limits: None,
    };

    #[test]
    fn a_bots_rate_is_its_setting_else_the_boost_else_the_default() {
        let bot = |fields: &[(&str, &str)]| {
            fields
                .iter()
                .fold(Connections::default(), |c, (f, v)| c.with("paced", f, v))
        };
        assert_eq!(PACED.rate_of(&bot(&[]), 30), Some(30));
        assert_eq!(PACED.rate_of(&bot(&[("paid", "true")]), 30), Some(1000));
        assert_eq!(PACED.rate_of(&bot(&[("paid", "false")]), 30), Some(30));
        let own = bot(&[("paid", "true"), ("rate", "250")]);
        assert_eq!(PACED.rate_of(&own, 30), Some(250), "its own rate first");
        assert_eq!(
            ENGINE.rate_of(&bot(&[("rate", "5")]), 30),
            None,
            "not paced"
        );
    }

    #[test]
    fn settings_are_optional_typed_and_checked_against_their_kind() {
        let channels: Channels = &[&PACED];
        let token_only = Connections::default().with("paced", "token", "t");
        assert!(PACED.is_complete(&token_only), "settings are optional");
        let set = document(serde_json::json!({"connections": {"paced": {
            "token": "t", "rate": 100, "paid": true}}}))
        .unwrap();
        set.validate(channels).unwrap();
        let float =
            document(serde_json::json!({"connections": {"paced": {"rate": 256.0}}})).unwrap();
        assert_eq!(
            float.connections["paced"]["rate"], "256",
            "an integral number"
        );
        let record = BotRecord {
            id: "b".into(),
            connections: Connections::default()
                .with("paced", "rate", "100")
                .with("paced", "paid", "true"),
            created_at: 0,
        };
        let shown = &record.summary(channels).connections["paced"];
        assert_eq!(shown["rate"], 100);
        assert_eq!(shown["paid"], true);
        assert_eq!(shown["token_set"], false);
        for (bad, field) in [
            (serde_json::json!({"rate": 0}), "rate"),
            (serde_json::json!({"rate": 1001}), "rate"),
            (serde_json::json!({"rate": "fast"}), "rate"),
            (serde_json::json!({"rate": 2.5}), "rate"),
            (serde_json::json!({"rate": -3.0}), "rate"),
            (serde_json::json!({"paid": "yes"}), "paid"),
            (serde_json::json!({"token": 12345}), "token"),
        ] {
            let errors = document(serde_json::json!({"connections": {"paced": bad}}))
                .unwrap()
                .validate(channels)
                .unwrap_err();
            assert_eq!(errors[0].0, format!("connections.paced.{field}"), "{bad}");
        }
        let cleared =
            document(serde_json::json!({"connections": {"paced": {"rate": ""}}})).unwrap();
        cleared.validate(channels).unwrap();
    }
}
