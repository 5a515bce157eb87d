//! Events in DynamoDB: one item per event, `pk` = event id, with `bot_id`, `name`,
//! `secret_hash` (binary SHA-256), `action` (map), `enabled`, `rate_limit` (map) and,
//! after a rotation, `previous_secret_hash` with `previous_secret_until`; one item per
//! bot, `pk` = `bot#{bot_id}`, with its connections; and one rate-limit state item per
//! limited event, `pk` = `rate#{event_id}` (see [`crate::throttle`]).

use crate::{get_n, get_s, n, s, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use herald_core::channels::Connections;
use herald_core::domain::{Action, Bot, Event, PreviousSecret};
use herald_core::ids::{BotId, EventId};
use herald_core::lane::Lane;
use herald_core::ports::EventDirectory;
use herald_core::{secret, StoreError};
use std::collections::BTreeMap;

impl Aws {
    /// Store an event whose secret is `secret` (only its hash is kept): what tests and
    /// fixtures use; operators go through the admin API.
    pub async fn put_event(
        &self,
        event_id: &str,
        bot_id: &str,
        name: &str,
        secret: &str,
        action: &Action,
    ) -> Result<(), StoreError> {
        let event = Event {
            id: EventId::parse(event_id).map_err(StoreError::new)?,
            bot_id: BotId::parse(bot_id).map_err(StoreError::new)?,
            name: name.to_string(),
            secret_hash: secret::hash(secret),
            previous_secret: None,
            action: action.clone(),
            enabled: true,
            rate_limit: None,
            lane: None,
            created_at: herald_core::domain::now_ms(),
        };
        self.dynamodb
            .put_item()
            .table_name(&self.settings.events_table)
            .set_item(Some(event_item(&event)?))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Store a bot's connections (item `bot#{id}` of the events table).
    pub async fn put_bot(&self, bot: &Bot) -> Result<(), StoreError> {
        self.dynamodb
            .put_item()
            .table_name(&self.settings.events_table)
            .item("pk", s(format!("{BOT_PREFIX}{}", bot.id)))
            .item("created_at", n(herald_core::domain::now_ms()))
            .item("connections", connections_value(&bot.connections))
            .send()
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// A bot's connections as its item keeps them: the `connections` map (channel → field →
/// value), or, on an item written before that map, the flat attributes it replaced.
pub(crate) fn connections_of(item: &Item) -> Connections {
    let Some(channels) = item.get("connections").and_then(|v| v.as_m().ok()) else {
        return Connections::from_legacy(|alias| {
            item.get(alias).and_then(|v| v.as_s().ok()).cloned()
        });
    };
    let fields = |value: &AttributeValue| -> BTreeMap<String, String> {
        let Ok(fields) = value.as_m() else {
            return BTreeMap::new();
        };
        fields
            .iter()
            .filter_map(|(name, v)| Some((name.clone(), v.as_s().ok()?.clone())))
            .collect()
    };
    Connections::from_map(
        channels
            .iter()
            .map(|(c, v)| (c.clone(), fields(v)))
            .collect(),
    )
}

/// The `connections` attribute of a bot's item.
pub(crate) fn connections_value(connections: &Connections) -> AttributeValue {
    AttributeValue::M(
        connections
            .as_map()
            .iter()
            .map(|(channel, fields)| {
                let fields = fields.iter().map(|(f, v)| (f.clone(), s(v))).collect();
                (channel.clone(), AttributeValue::M(fields))
            })
            .collect(),
    )
}

/// Key prefix of bot items in the events table.
pub(crate) const BOT_PREFIX: &str = "bot#";
/// Key prefix of rate-limit state items in the events table.
pub(crate) const RATE_PREFIX: &str = "rate#";

/// The item of an event.
pub(crate) fn event_item(event: &Event) -> Result<Item, StoreError> {
    let mut item = Item::new();
    item.insert("pk".into(), s(event.id.as_str()));
    item.insert("bot_id".into(), s(event.bot_id.as_str()));
    item.insert("name".into(), s(&event.name));
    item.insert(
        "secret_hash".into(),
        AttributeValue::B(Blob::new(event.secret_hash.to_vec())),
    );
    item.insert(
        "action".into(),
        serde_dynamo::to_attribute_value(&event.action).map_err(StoreError::new)?,
    );
    item.insert("enabled".into(), AttributeValue::Bool(event.enabled));
    item.insert("created_at".into(), n(event.created_at));
    if let Some(limit) = &event.rate_limit {
        item.insert(
            "rate_limit".into(),
            serde_dynamo::to_attribute_value(limit).map_err(StoreError::new)?,
        );
    }
    if let Some(lane) = event.lane {
        item.insert("lane".into(), s(lane.as_str()));
    }
    Ok(item)
}

/// An event from its item.
pub(crate) fn event_of(item: &Item) -> Result<Event, StoreError> {
    let hash = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_b().ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_ref()).ok())
    };
    let event_id = get_s(item, "pk");
    let action = item
        .get("action")
        .cloned()
        .ok_or_else(|| StoreError::new(format!("event {event_id} has no action")))?;
    let rate_limit = item
        .get("rate_limit")
        .cloned()
        .map(serde_dynamo::from_attribute_value)
        .transpose()
        .map_err(StoreError::new)?;
    Ok(Event {
        id: EventId::parse(event_id).map_err(|e| StoreError::corrupt("an event's id", e))?,
        bot_id: BotId::parse(get_s(item, "bot_id"))
            .map_err(|e| StoreError::corrupt(format!("event {event_id}'s bot id"), e))?,
        name: get_s(item, "name").to_string(),
        secret_hash: hash("secret_hash").unwrap_or([0u8; 32]),
        previous_secret: hash("previous_secret_hash").map(|hash| PreviousSecret {
            hash,
            valid_until: get_n(item, "previous_secret_until"),
        }),
        action: serde_dynamo::from_attribute_value(action).map_err(StoreError::new)?,
        enabled: item
            .get("enabled")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        rate_limit,
        lane: item
            .get("lane")
            .map(|v| {
                v.as_s()
                    .ok()
                    .and_then(|text| Lane::parse(text))
                    .ok_or_else(|| {
                        StoreError::corrupt(format!("event {event_id}'s lane"), "it names no lane")
                    })
            })
            .transpose()?,
        created_at: get_n(item, "created_at"),
    })
}

#[async_trait]
impl EventDirectory for Aws {
    async fn bot(&self, bot_id: &BotId) -> Result<Bot, StoreError> {
        let found = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(format!("{BOT_PREFIX}{bot_id}")))
            .send()
            .await
            .map_err(store_error)?;
        let item = found.item.unwrap_or_default();
        Ok(Bot {
            id: bot_id.clone(),
            connections: connections_of(&item),
        })
    }

    async fn event(&self, event_id: &EventId) -> Result<Option<Event>, StoreError> {
        let event_id = event_id.as_str();
        let found = self
            .dynamodb
            .get_item()
            .table_name(&self.settings.events_table)
            .key("pk", s(event_id))
            .send()
            .await
            .map_err(store_error)?;
        match found.item {
            Some(item) if !item.contains_key("bot_id") => Ok(None),
            Some(item) => event_of(&item).map(Some),
            None => Ok(None),
        }
    }
}
