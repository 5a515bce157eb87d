//! The [`Deliverer`] both runtimes wire: route each action to the bot's connection.
//!
//! - `message` to a `tg` user of a bot with a Telegram token: the template is rendered for
//!   the user (a missing value fails that user with reason `template`), then sent through
//!   [`Telegram`], at most `telegram_rate` messages per second per bot, evenly spaced, for
//!   every worker of this process together. A delivery still waiting for its turn at the
//!   job's cutoff is not sent (`NotStarted`): its user goes on in a new job.
//! - `screen` for a bot with a `screen_url`: a signed webhook through [`BotEngine`], at most
//!   `engine_concurrency` in flight per bot, so a slow engine holds up only its own bot.
//! - A bot with no connection at all: the core's `log` deliverer (records what would be
//!   sent). A bot with connections, but none for this action or platform: a permanent
//!   failure with reason `no_connection`, never a silent success.
//!
//! Bots' connections are cached for [`BOT_CACHE`].

use crate::bot_engine::BotEngine;
use crate::telegram::Telegram;
use crate::DeliveryConfig;
use async_trait::async_trait;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use herald_core::domain::{Action, Bot, DeliveryResult};
use herald_core::log_deliverer::LogDeliverer;
use herald_core::ports::{Deliverer, Delivery, EventDirectory};
use herald_core::template;
use serde_json::json;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How long a bot's connections are used before they are read again.
pub const BOT_CACHE: Duration = Duration::from_secs(30);

pub struct Dispatcher {
    directory: Arc<dyn EventDirectory>,
    telegram: Telegram,
    engine: BotEngine,
    telegram_pace: DefaultKeyedRateLimiter<String>,
    engine_concurrency: usize,
    engine_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    bots: Mutex<HashMap<String, (Instant, Bot)>>,
}

impl Dispatcher {
    /// Fails only when the HTTP client cannot be built (a broken TLS set-up): never fall
    /// back to a client without the timeouts the job time budget counts on.
    pub fn new(
        directory: Arc<dyn EventDirectory>,
        config: &DeliveryConfig,
    ) -> reqwest::Result<Dispatcher> {
        let http = crate::http_client(config.timeout)?;
        let rate = NonZeroU32::new(config.telegram_rate.max(1)).unwrap_or(NonZeroU32::MIN);
        Ok(Dispatcher {
            directory,
            telegram: Telegram::new(http.clone(), &config.telegram_api),
            engine: BotEngine::new(http),
            telegram_pace: RateLimiter::keyed(Quota::per_second(rate).allow_burst(NonZeroU32::MIN)),
            engine_concurrency: config.engine_concurrency.max(1),
            engine_slots: Mutex::new(HashMap::new()),
            bots: Mutex::new(HashMap::new()),
        })
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
        let bot = self.directory.bot(bot_id).await?;
        self.bots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(bot_id.to_string(), (Instant::now(), bot.clone()));
        Ok(bot)
    }

    fn engine_slot(&self, bot_id: &str) -> Arc<Semaphore> {
        self.engine_slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(bot_id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.engine_concurrency)))
            .clone()
    }

    async fn message(&self, bot: &Bot, delivery: &Delivery<'_>, template: &str) -> DeliveryResult {
        let user = delivery.user;
        if !has_connection(bot) {
            return LogDeliverer::default().deliver(delivery).await;
        }
        let (Some(token), "tg") = (&bot.telegram_token, user.platform.as_str()) else {
            return no_connection(format!(
                "bot {} cannot send messages on {}",
                bot.id, user.platform
            ));
        };
        let text = match template::for_user(
            template,
            &delivery.request.event_name,
            delivery.user,
            delivery.data,
        )
        .await
        {
            Ok(text) => text,
            Err(failure) => return failure,
        };
        tokio::select! {
            biased;
            _ = delivery.cutoff.reached() => return DeliveryResult::NotStarted,
            _ = self.telegram_pace.until_key_ready(&bot.id) => {}
        }
        self.telegram.send(token, &user.platform_id, &text).await
    }

    async fn screen(&self, bot: &Bot, delivery: &Delivery<'_>, screen_id: &str) -> DeliveryResult {
        let Some(url) = &bot.screen_url else {
            return if has_connection(bot) {
                no_connection(format!("bot {} has no screen_url", bot.id))
            } else {
                LogDeliverer::default().deliver(delivery).await
            };
        };
        let Some(secret) = bot.signing_secret.as_deref() else {
            // Never unsigned: an engine could not tell Herald's webhooks from anyone's.
            return no_connection(format!(
                "bot {} has a screen_url but no signing_secret; webhooks are never sent unsigned",
                bot.id
            ));
        };
        let request = delivery.request;
        let body = json!({
            "bot_id": bot.id,
            "screen_id": screen_id,
            "user": {
                "platform": delivery.user.platform,
                "platform_id": delivery.user.platform_id,
                "bm_id": delivery.user.bm_id,
            },
            "last_request": delivery.data,
            "request_id": request.id,
            "event_id": request.event_id,
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let slot = self.engine_slot(&bot.id);
        let _permit = tokio::select! {
            biased;
            _ = delivery.cutoff.reached() => return DeliveryResult::NotStarted,
            permit = slot.acquire() => permit,
        };
        self.engine.show(url, secret, body).await
    }
}

fn has_connection(bot: &Bot) -> bool {
    bot.telegram_token.is_some() || bot.screen_url.is_some()
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
        match &delivery.request.action {
            Action::Message { template } => self.message(&bot, delivery, template).await,
            Action::Screen { screen_id } => self.screen(&bot, delivery, screen_id).await,
        }
    }
}
