//! The delivery channels: one module each, registered on one line below.
//!
//! A channel module declares its [`ChannelSpec`] (`SPEC`: its name, what it serves, the
//! platforms it reaches, its credentials) and a type implementing [`Channel`] that sends
//! one message or screen and classifies the answer. [`register!`] turns the list into
//! [`CHANNELS`] (the specs every runtime hands to its `App`: the admin API, the stores and
//! `openapi.yaml` take channels from there) and [`build`] (what the dispatcher routes to).

use crate::DeliveryConfig;
use async_trait::async_trait;
use herald_core::channels::{ChannelSpec, Channels};
use herald_core::domain::{Bot, DeliveryResult};
use herald_core::message::Rendered;
use herald_core::pace::{Pace, PaceKey, Pacer, TurnRequest};
use herald_core::ports::{Delivery, Readiness};
use std::sync::Arc;

/// What a channel is asked to send.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// A `message` action rendered for the user and fitted to the channel's limits
    /// ([`herald_core::message::Rendered::fit`]): its text is in a markup the channel
    /// renders, or plain.
    Message(&'a Rendered),
    /// A `screen` action's screen id.
    Screen(&'a str),
}

/// One delivery channel.
#[async_trait]
pub trait Channel: Send + Sync {
    fn spec(&self) -> &'static ChannelSpec;

    /// Send `content` to `delivery.user` over the bot's connection to this channel (the
    /// dispatcher routes here only once the connection has every field). A channel that
    /// waits its turn first (a rate, a cap on sends in flight) stops waiting at
    /// `delivery.cutoff` and answers [`DeliveryResult::NotStarted`].
    async fn send(
        &self,
        bot: &Bot,
        delivery: &Delivery<'_>,
        content: Content<'_>,
    ) -> DeliveryResult;
}

/// The answer of a channel handed what it does not carry (a bug in routing, not the
/// user's fault, but never a silent success).
pub(crate) fn misrouted(spec: &ChannelSpec) -> DeliveryResult {
    DeliveryResult::Permanent {
        reason: "no_connection".into(),
        message: format!("the {} channel cannot send this", spec.name),
    }
}

/// Wait for `delivery`'s turn on `key`'s schedule at `pace`, then take the runtime's step
/// at the turn ([`Delivery::at_turn`]: its user's `last_request` written, their chat
/// claimed). None: send now. Some: answer this without sending — the cutoff came first
/// ([`DeliveryResult::NotStarted`]) or the runtime withheld the send. A chat another
/// process sent to less than the chat gap ago is waited for, and the send takes a new
/// turn.
pub(crate) async fn take_turn(
    pacer: &Pacer,
    key: &PaceKey,
    pace: Pace,
    delivery: &Delivery<'_>,
) -> Option<DeliveryResult> {
    let turn = TurnRequest {
        lane: delivery.request.lane,
        chat: &delivery.user.platform_id,
    };
    loop {
        if !pacer.turn(key, pace, turn, delivery.cutoff).await {
            return Some(DeliveryResult::NotStarted);
        }
        // Nothing to do at the turn: send.
        let at_turn = delivery.at_turn?;
        match at_turn.ready(pace.spaced_chat_gap()).await {
            Readiness::Go => return None,
            Readiness::Withheld => return Some(DeliveryResult::Withheld),
            Readiness::ChatBusy(wait) => {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = delivery.cutoff.reached() => return Some(DeliveryResult::NotStarted),
                }
            }
        }
    }
}

/// Declares the channel modules: `module::Type`, one per line. `Type::new(http, config,
/// pacer)` builds the channel (a channel with a rate waits its turns on the process's
/// [`Pacer`]); `module::SPEC` describes it.
macro_rules! register {
    ($($module:ident :: $channel:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// Every channel's spec, in registration order.
        pub static CHANNELS: Channels = &[$(&$module::SPEC),+];

        /// Every channel, sending through `http`, paced by `pacer`.
        pub fn build(
            http: &reqwest::Client,
            config: &DeliveryConfig,
            pacer: &Arc<Pacer>,
        ) -> Vec<Arc<dyn Channel>> {
            vec![$(Arc::new($module::$channel::new(http.clone(), config, pacer))),+]
        }
    };
}

register![telegram::Telegram, engine::BotEngine,];

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::cutoff::Stop;
    use herald_core::domain::{Action, Audience, RequestRecord, UserState};
    use herald_core::ports::AtTurn;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::time::Instant;

    /// Answers its readiness in turn, recording when each was asked.
    #[derive(Debug)]
    struct Answers(Mutex<(Vec<Readiness>, Vec<Instant>)>);

    #[async_trait]
    impl AtTurn for Answers {
        async fn ready(&self, _chat_gap: Duration) -> Readiness {
            let mut state = self.0.lock().unwrap();
            state.1.push(Instant::now());
            state.0.remove(0)
        }
    }

    fn record() -> RequestRecord {
        RequestRecord {
            id: "r".parse().unwrap(),
            event_id: "e".parse().unwrap(),
            event_name: "n".into(),
            bot_id: "b".parse().unwrap(),
            action: Action::Message(herald_core::message::Message::text("hi")),
            data: Default::default(),
            audience: Audience::Bm { count: 1 },
            lane: Default::default(),
            created_at: 0,
            send_at: None,
        }
    }

    fn user() -> UserState {
        UserState {
            platform: "tg".into(),
            platform_id: "42".into(),
            bm_id: "u".into(),
            blocked: false,
            migrated_chat_id: None,
        }
    }

    async fn take(answers: &Answers, cutoff_in: Duration) -> Option<DeliveryResult> {
        let (record, user, data) = (record(), user(), Default::default());
        let cutoff = Stop::never().cutoff((Instant::now() + cutoff_in).into_std());
        let delivery = Delivery {
            request: &record,
            user: &user,
            data: &data,
            cutoff: &cutoff,
            at_turn: Some(answers),
        };
        let key = PaceKey {
            bot: "b".parse().unwrap(),
            channel: "test",
        };
        let pace = Pace {
            per_second: 30,
            chat_gap: Duration::from_secs(1),
        };
        take_turn(&Pacer::new(), &key, pace, &delivery).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_chat_busy_in_another_process_is_waited_out_and_the_send_takes_a_new_turn() {
        // Longer than this process's own chat gap, which spaces the two turns anyway.
        let busy = Duration::from_secs(3);
        let answers = Answers(Mutex::new((
            vec![Readiness::ChatBusy(busy), Readiness::Go],
            vec![],
        )));
        let started = Instant::now();
        assert!(
            take(&answers, Duration::from_secs(30)).await.is_none(),
            "send"
        );
        let asked = answers.0.lock().unwrap().1.clone();
        assert_eq!(asked.len(), 2, "asked again after the wait");
        assert!(asked[1] - asked[0] >= busy, "{:?}", asked[1] - asked[0]);
        assert!(asked[0] - started < busy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cutoff_during_the_wait_for_a_busy_chat_leaves_the_user_unsent() {
        let answers = Answers(Mutex::new((
            vec![Readiness::ChatBusy(Duration::from_secs(5)), Readiness::Go],
            vec![],
        )));
        let unsent = take(&answers, Duration::from_secs(1)).await;
        assert!(
            matches!(unsent, Some(DeliveryResult::NotStarted)),
            "{unsent:?}"
        );
        assert_eq!(answers.0.lock().unwrap().1.len(), 1);
        let withheld = Answers(Mutex::new((vec![Readiness::Withheld], vec![])));
        let answer = take(&withheld, Duration::from_secs(1)).await;
        assert!(
            matches!(answer, Some(DeliveryResult::Withheld)),
            "{answer:?}"
        );
    }
}
