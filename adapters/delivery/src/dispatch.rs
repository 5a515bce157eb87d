//! The [`Deliverer`] both runtimes wire: route each action to a channel of the bot's.
//!
//! - `message`: the first registered channel that carries messages, reaches the user's
//!   platform and has every field of its connection set on the bot. The message is
//!   rendered for the user first (a missing value fails that user with reason `template`)
//!   and fitted to the channel: markup it does not render becomes plain text, and a message
//!   over its limits fails (`too_long`, `rejected`) before any call.
//! - `screen`: the channel that carries screens (the bot engine's signed webhook), once the
//!   bot's connection to it is complete — a URL without its signing secret is never used:
//!   webhooks are never sent unsigned.
//! - A bot with no connection at all: the core's `log` deliverer (records what would be
//!   sent). A bot with connections, but none for this action or platform: a permanent
//!   failure with reason `no_connection`, never a silent success.
//!
//! Bots' connections are cached for [`BOT_CACHE`].

use crate::channels::{self, Channel, Content};
use crate::DeliveryConfig;
use async_trait::async_trait;
use herald_core::channels::{display_name, Serves};
use herald_core::domain::{Action, Bot, DeliveryResult, RequestRecord, UserState};
use herald_core::log_deliverer::LogDeliverer;
use herald_core::message::Message;
use herald_core::ports::{Deliverer, Delivery, EventDirectory};
use herald_core::template;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a bot's connections are used before they are read again.
pub const BOT_CACHE: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    directory: Arc<dyn EventDirectory>,
    channels: Vec<Arc<dyn Channel>>,
    bots: Mutex<HashMap<String, (Instant, Bot)>>,
}

impl Dispatcher {
    /// Every registered channel. Fails only when the HTTP client cannot be built (a broken
    /// TLS set-up): never fall back to a client without the timeouts the job time budget
    /// counts on.
    pub fn new(
        directory: Arc<dyn EventDirectory>,
        config: &DeliveryConfig,
    ) -> reqwest::Result<Dispatcher> {
        Dispatcher::with_pacer(directory, config, Arc::new(herald_core::pace::Pacer::new()))
    }

    /// Every registered channel, paced by `pacer` (on AWS one that spends a send budget
    /// shared by the worker instances).
    pub fn with_pacer(
        directory: Arc<dyn EventDirectory>,
        config: &DeliveryConfig,
        pacer: Arc<herald_core::pace::Pacer>,
    ) -> reqwest::Result<Dispatcher> {
        let http = crate::http_client(config.timeout)?;
        Ok(Dispatcher::with_channels(
            directory,
            channels::build(&http, config, &pacer),
        ))
    }

    /// Over these channels (a test may add one of its own).
    pub fn with_channels(
        directory: Arc<dyn EventDirectory>,
        channels: Vec<Arc<dyn Channel>>,
    ) -> Dispatcher {
        Dispatcher {
            directory,
            channels,
            bots: Mutex::new(HashMap::new()),
        }
    }

    async fn bot(&self, bot_id: &str) -> Result<Bot, herald_core::StoreError> {
        if let Some((read, bot)) = self
            .bots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(bot_id)
        {
            if read.elapsed() < BOT_CACHE {
                return Ok(bot.clone());
            }
        }
        let id = herald_core::ids::BotId::parse(bot_id)
            .map_err(|e| herald_core::StoreError::corrupt("the request's bot id", e))?;
        let bot = self.directory.bot(&id).await?;
        self.bots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bot_id.to_string(), (Instant::now(), bot.clone()));
        Ok(bot)
    }

    /// The channel for `serves` on `platform` the bot has a complete connection to, or
    /// why there is none.
    fn route(&self, bot: &Bot, serves: Serves, platform: &str) -> Result<&dyn Channel, String> {
        let mut candidates = self
            .channels
            .iter()
            .filter(|c| c.spec().serves == serves && c.spec().reaches(platform))
            .peekable();
        let Some(first) = candidates.peek().map(|c| c.spec()) else {
            return Err(match serves {
                Serves::Messages => format!("bot {} cannot send messages on {platform}", bot.id),
                Serves::Screens => format!("bot {} has no channel for screens", bot.id),
            });
        };
        if let Some(channel) = candidates.find(|c| c.spec().is_complete(&bot.connections)) {
            return Ok(channel.as_ref());
        }
        if serves == Serves::Messages {
            return Err(format!("bot {} cannot send messages on {platform}", bot.id));
        }
        let set = |field: &str| bot.connections.get(first.name, field).is_some();
        let Some(missing) = first.fields.iter().find(|f| !set(f.name)) else {
            return Err(format!("bot {} has no channel for screens", bot.id));
        };
        let missing_name = display_name(first.name, missing.name);
        // A field that is set but needs the missing one says why it is not used alone.
        let needing = first
            .fields
            .iter()
            .find(|f| set(f.name) && f.needs.is_some_and(|(n, _)| n == missing.name));
        Err(match needing {
            Some(field) => format!(
                "bot {} has a {} but no {missing_name}; {}",
                bot.id,
                display_name(first.name, field.name),
                field.needs.map_or("", |(_, why)| why)
            ),
            None => format!("bot {} has no {missing_name}", bot.id),
        })
    }

    async fn message(
        &self,
        bot: &Bot,
        delivery: &Delivery<'_>,
        message: &Message,
    ) -> DeliveryResult {
        let channel = match self.route(bot, Serves::Messages, &delivery.user.platform) {
            Ok(channel) => channel,
            Err(why) => return no_connection(why),
        };
        let rendered = match template::for_user(
            message,
            &delivery.request.event_name,
            delivery.user,
            delivery.data,
        )
        .await
        {
            Ok(rendered) => rendered,
            Err(failure) => return failure,
        };
        let fitted = match channel.spec().limits.map(|limits| rendered.fit(&limits)) {
            Some(Ok(fitted)) => fitted,
            Some(Err(refusal)) => {
                return DeliveryResult::Permanent {
                    reason: refusal.reason.into(),
                    message: refusal.message,
                }
            }
            None => return channels::misrouted(channel.spec()),
        };
        channel.send(bot, delivery, Content::Message(&fitted)).await
    }

    async fn screen(&self, bot: &Bot, delivery: &Delivery<'_>, screen_id: &str) -> DeliveryResult {
        match self.route(bot, Serves::Screens, &delivery.user.platform) {
            Ok(channel) => {
                channel
                    .send(bot, delivery, Content::Screen(screen_id))
                    .await
            }
            Err(why) => no_connection(why),
        }
    }
}

fn no_connection(message: String) -> DeliveryResult {
    DeliveryResult::Permanent {
        reason: "no_connection".into(),
        message,
    }
}

#[async_trait]
impl Deliverer for Dispatcher {
    async fn deliver(&self, delivery: &Delivery<'_>) -> DeliveryResult {
        let bot = match self.bot(&delivery.request.bot_id).await {
            Ok(bot) => bot,
            Err(e) => {
                return DeliveryResult::Retry {
                    reason: "unavailable".into(),
                    message: format!("bot connections could not be read: {e}"),
                    after: None,
                }
            }
        };
        if bot.connections.is_empty() {
            return LogDeliverer::default().deliver(delivery).await;
        }
        match &delivery.request.action {
            Action::Message(message) => self.message(&bot, delivery, message).await,
            Action::Screen { screen_id } => self.screen(&bot, delivery, screen_id).await,
        }
    }

    /// A message routed to a channel with a pace (a bot whose connections cannot be read
    /// now is taken as not paced: its delivery is retried before any turn).
    async fn paces(&self, request: &RequestRecord, user: &UserState) -> bool {
        if !matches!(request.action, Action::Message(_)) {
            return false;
        }
        let Ok(bot) = self.bot(&request.bot_id).await else {
            return false;
        };
        !bot.connections.is_empty()
            && self
                .route(&bot, Serves::Messages, &user.platform)
                .is_ok_and(|channel| channel.spec().pace.is_some())
    }
}
