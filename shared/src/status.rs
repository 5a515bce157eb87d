//! The status document of a request, as `GET /v1/requests/{id}` and `herald requests show`
//! print it.
//!
//! Adapters store raw progress ([`RequestProgress`]); this module derives the state and
//! `pending` from it in one place, so every runtime answers the same document.

use crate::channels::{Channels, Serves};
use crate::domain::{now_ms, Action, Audience, Bot, PlatformFilter, RequestRecord, RequestState};
use crate::error::StoreError;
use crate::ids::{EventId, RequestId};
use crate::lane::Lane;
use crate::ports::{App, ErrorSample, OpenRequest, RequestProgress};
use serde::Serialize;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, Serialize)]
pub struct RequestStatus {
    pub request_id: RequestId,
    pub event_id: EventId,
    /// `scheduled` (waiting for its `send_at`), `accepted` (nothing finished yet),
    /// `running`, `done`, `cancelled` or `aborted`.
    pub state: &'static str,
    /// The lane its deliveries run in: `transactional` or `bulk`.
    pub lane: Lane,
    pub audience: Audience,
    /// Users targeted; null for `everyone` until the bot's users are fully enumerated.
    pub targeted: Option<u64>,
    pub delivered: u64,
    pub not_found: u64,
    pub failed: u64,
    /// Users left out because the request was cancelled.
    pub cancelled: u64,
    /// `failed` by reason class, e.g. `{"blocked": 3, "chat_not_found": 1}`.
    pub failed_by_reason: std::collections::BTreeMap<String, u64>,
    /// Users known and not yet final.
    pub pending: u64,
    /// When the request is expected to be done (RFC 3339). Running: its pending users at
    /// the pace its outcomes have come at since it started, which is the bot's rate less
    /// what the bot's other work (the lane ahead of it, other requests) takes. Scheduled or
    /// not started yet: from its start (`send_at`, or now) its users at the bot's rate on
    /// the channel that sends them, a bulk one after the work ahead of it in its lane
    /// ([`document`]); a scheduled `everyone` counts the bot's users as they are now. Null
    /// while a running `everyone` is still being read, for a channel that is not paced
    /// (screens) before the first outcome, and once it is final.
    pub eta: Option<String>,
    pub created_at: String,
    /// When a scheduled request is (or was) to be sent; null for one sent at once.
    pub send_at: Option<String>,
    pub updated_at: Option<String>,
    /// A few per-user failures, first ones first, a few of each reason.
    pub errors: Vec<ErrorSample>,
    /// What was delivered to the first few users (the log deliverer records what it would send).
    pub deliveries: Vec<serde_json::Value>,
}

impl RequestStatus {
    /// The document of `p`, with `load` (the bot's sends per second for it, [`send_rate`],
    /// and the users ahead of it in its lane) for the ETA of a request that has no pace of
    /// its own yet.
    pub fn with_load(p: RequestProgress, load: Option<SendLoad>) -> RequestStatus {
        let now = now_ms();
        let state = state_of(&p, now);
        let finished = p.delivered + p.not_found + p.failed + p.cancelled;
        let pending = p.targeted.saturating_sub(finished);
        let enumerated = p.expansions_pending == 0;
        let started = p.record.starts_at();
        RequestStatus {
            request_id: p.record.id,
            event_id: p.record.event_id,
            state,
            lane: p.record.lane,
            audience: p.record.audience,
            targeted: enumerated.then_some(p.targeted),
            delivered: p.delivered,
            not_found: p.not_found,
            failed: p.failed,
            cancelled: p.cancelled,
            failed_by_reason: p.failed_by_reason,
            pending,
            eta: match state {
                "running" if enumerated => estimate(started, now, finished, pending),
                "scheduled" | "accepted" => load.and_then(|load| {
                    let users = if enumerated {
                        Some(pending)
                    } else {
                        load.audience
                    };
                    users.map(|users| load.done_at(now, started, users))
                }),
                _ => None,
            }
            .map(rfc3339),
            created_at: rfc3339(p.record.created_at),
            send_at: p.record.send_at.map(rfc3339),
            updated_at: p.updated_at.map(rfc3339),
            errors: p.error_samples,
            deliveries: p.delivery_samples,
        }
    }
}

/// The state the status document names for `p` at `now`.
fn state_of(p: &RequestProgress, now: i64) -> &'static str {
    let finished = p.delivered + p.not_found + p.failed + p.cancelled;
    let enumerated = p.expansions_pending == 0;
    match p.state {
        RequestState::Aborted => "aborted",
        RequestState::Cancelled => "cancelled",
        RequestState::Accepting => "accepted",
        RequestState::Accepted if finished == 0 && !p.record.due_in(now).is_zero() => "scheduled",
        RequestState::Accepted if enumerated && p.targeted <= finished => "done",
        // Nothing final yet, and no expansion page read either.
        RequestState::Accepted if finished == 0 && (enumerated || p.targeted == 0) => "accepted",
        RequestState::Accepted => "running",
    }
}

impl From<RequestProgress> for RequestStatus {
    /// The document without the bot's rate: no ETA before a pace is seen.
    fn from(p: RequestProgress) -> Self {
        RequestStatus::with_load(p, None)
    }
}

/// When `pending` more users will be final at `now`, at the pace `finished` users took
/// since `started` (milliseconds since the Unix epoch); None before the first outcome.
pub fn estimate(started: i64, now: i64, finished: u64, pending: u64) -> Option<i64> {
    if finished == 0 {
        return None;
    }
    let elapsed = (now - started).max(1) as f64;
    let per_user = elapsed / finished as f64;
    Some(now.saturating_add((per_user * pending as f64).ceil() as i64))
}

/// When `pending` users starting at `start` (milliseconds since the Unix epoch) are done
/// at `per_second` sends in every pace's window ([`crate::budget::WINDOW`]).
pub fn at_rate(start: i64, pending: u64, per_second: u32) -> i64 {
    let window_ms = crate::budget::WINDOW.as_millis() as u64;
    let ms = (pending.saturating_mul(window_ms)).div_ceil(u64::from(per_second.max(1)));
    start.saturating_add(ms.min(i64::MAX as u64) as i64)
}

/// The bot's sends per second for `record`'s deliveries: for a message, the slowest paced
/// channel among those that would carry it (each registered channel serving messages
/// that reaches the request's platform and that the bot has connected), at `default`
/// where the bot sets no rate; None for a screen, or when no such channel is paced.
pub fn send_rate(
    record: &RequestRecord,
    bot: &Bot,
    channels: Channels,
    default: u32,
) -> Option<u32> {
    if !matches!(record.action, Action::Message(_)) {
        return None;
    }
    let platform = match &record.audience {
        Audience::Platform { platform, .. } => Some(platform.as_str()),
        Audience::Everyone {
            platform: PlatformFilter::Only(platform),
            ..
        } => Some(platform.as_str()),
        Audience::Bm { .. } | Audience::Everyone { .. } => None,
    };
    channels
        .iter()
        .filter(|c| c.serves == Serves::Messages && c.is_complete(&bot.connections))
        .filter(|c| platform.is_none_or(|p| c.reaches(p)))
        .filter_map(|c| c.rate_of(&bot.connections, default))
        .min()
}

/// What a request not started yet is sent at: the bot's rate for it, and the users ahead
/// of it in its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLoad {
    pub per_second: u32,
    pub ahead: u64,
    /// The users `everyone` means now, for a request that has not read them yet.
    pub audience: Option<u64>,
}

impl SendLoad {
    /// When `pending` users starting no sooner than `start` are done at `now`: after the
    /// users ahead, at the rate.
    pub fn done_at(&self, now: i64, start: i64, pending: u64) -> i64 {
        let lane_free = at_rate(now, self.ahead, self.per_second);
        at_rate(start.max(lane_free), pending, self.per_second)
    }
}

/// How many of a bot's open bulk requests ahead of one its ETA counts, oldest first.
pub const AHEAD_COUNTED: usize = 50;

/// The status document of `p` as `app` answers it: with the bot's rate and the work ahead
/// read when the ETA needs them (a request not started, or scheduled), never otherwise.
pub async fn document(app: &App, p: RequestProgress) -> Result<RequestStatus, StoreError> {
    // Only messages are paced: a screen has no rate to count with, and nothing is read.
    let not_started = matches!(state_of(&p, now_ms()), "scheduled" | "accepted");
    if !not_started || !matches!(p.record.action, Action::Message(_)) {
        return Ok(RequestStatus::from(p));
    }
    let bot = app.ports.events.bot(&p.record.bot_id).await?;
    let rate = send_rate(&p.record, &bot, app.channels, app.config.default_rate);
    let Some(per_second) = rate else {
        return Ok(RequestStatus::from(p));
    };
    let ahead = match p.record.lane {
        Lane::Bulk => work_ahead(app, &p.record).await?,
        // Transactional requests take the bot's next turns; those ahead of one are the
        // few orders accepted just before it.
        Lane::Transactional => 0,
    };
    // `everyone` not read yet (scheduled, or just due): as many as it means now.
    let audience = match &p.record.audience {
        Audience::Everyone { platform, .. } if p.expansions_pending > 0 => {
            let counting = app.ports.users.count(&p.record.bot_id, platform);
            Some(
                app.audiences
                    .count(&p.record.bot_id, platform, counting)
                    .await?,
            )
        }
        _ => None,
    };
    let load = SendLoad {
        per_second,
        ahead,
        audience,
    };
    Ok(RequestStatus::with_load(p, Some(load)))
}

/// Users pending in the bot's open bulk requests accepted before `record` and due by its
/// start ([`AHEAD_COUNTED`] of them at most); those found final are taken off the list,
/// and the list read again (up to [`AHEAD_READS`] times) while it was full of them.
async fn work_ahead(app: &App, record: &RequestRecord) -> Result<u64, StoreError> {
    let starts = record.starts_at().max(now_ms());
    let mut ahead = 0;
    for _ in 0..AHEAD_READS {
        let listed = app
            .ports
            .open
            .open_before(&record.bot_id, &record.id, AHEAD_COUNTED)
            .await?;
        let full = listed.len() == AHEAD_COUNTED;
        let (done, open): (Vec<OpenRequest>, Vec<OpenRequest>) =
            listed.into_iter().partition(OpenRequest::is_final);
        ahead = open
            .iter()
            .filter(|o| o.send_at.is_none_or(|at| at <= starts))
            .map(OpenRequest::pending)
            .sum();
        if done.is_empty() {
            break;
        }
        let ids: Vec<RequestId> = done.into_iter().map(|o| o.request_id).collect();
        app.ports.open.close(&record.bot_id, &ids).await?;
        if !full {
            break;
        }
    }
    Ok(ahead)
}

/// How many times [`work_ahead`] reads a list it finds full of final requests.
const AHEAD_READS: usize = 3;

/// Milliseconds since the epoch as an RFC 3339 UTC timestamp.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, PlatformFilter, RequestRecord};

    fn progress(
        audience: Audience,
        targeted: u64,
        expansions_pending: u32,
        finished: u64,
    ) -> RequestProgress {
        RequestProgress {
            record: RequestRecord {
                id: "r".parse().unwrap(),
                event_id: "e".parse().unwrap(),
                event_name: "n".into(),
                bot_id: "b".parse().unwrap(),
                action: Action::Screen {
                    screen_id: "s".into(),
                },
                data: Default::default(),
                audience,
                lane: Default::default(),
                created_at: 0,
                send_at: None,
            },
            state: RequestState::Accepted,
            targeted,
            expansions_pending,
            delivered: finished,
            not_found: 0,
            failed: 0,
            cancelled: 0,
            failed_by_reason: Default::default(),
            error_samples: vec![],
            delivery_samples: vec![],
            updated_at: None,
        }
    }

    fn explicit() -> Audience {
        Audience::Platform {
            platform: "tg".into(),
            count: 10,
        }
    }

    fn everyone() -> Audience {
        Audience::Everyone {
            platform: PlatformFilter::Any,
            shards: 4,
        }
    }

    #[test]
    fn explicit_requests_go_accepted_running_done() {
        let s = RequestStatus::from(progress(explicit(), 10, 0, 0));
        assert_eq!((s.state, s.targeted, s.pending), ("accepted", Some(10), 10));
        let s = RequestStatus::from(progress(explicit(), 10, 0, 4));
        assert_eq!((s.state, s.pending), ("running", 6));
        let s = RequestStatus::from(progress(explicit(), 10, 0, 10));
        assert_eq!((s.state, s.pending), ("done", 0));
    }

    #[test]
    fn everyone_has_no_targeted_count_until_enumerated() {
        let s = RequestStatus::from(progress(everyone(), 0, 4, 0));
        assert_eq!((s.state, s.targeted), ("accepted", None));
        // All users found so far are final, but a shard is still being paged.
        let s = RequestStatus::from(progress(everyone(), 500, 1, 500));
        assert_eq!((s.state, s.targeted, s.pending), ("running", None, 0));
        let s = RequestStatus::from(progress(everyone(), 700, 0, 700));
        assert_eq!((s.state, s.targeted), ("done", Some(700)));
        // A bot with no users is done at once.
        let s = RequestStatus::from(progress(everyone(), 0, 0, 0));
        assert_eq!((s.state, s.targeted), ("done", Some(0)));
    }

    #[test]
    fn a_request_waiting_for_its_send_at_is_scheduled_until_then() {
        let at = now_ms() + 3_600_000;
        let mut waiting = progress(everyone(), 0, 4, 0);
        waiting.record.send_at = Some(at);
        let s = RequestStatus::from(waiting.clone());
        assert_eq!(s.state, "scheduled");
        assert_eq!(s.send_at.as_deref(), Some(rfc3339(at).as_str()));
        waiting.record.send_at = Some(now_ms() - 1);
        assert_eq!(RequestStatus::from(waiting).state, "accepted");
    }

    #[test]
    fn the_eta_is_the_pending_users_at_the_pace_so_far() {
        // 300 users final in 10 s: 700 more take about 23.3 s.
        assert_eq!(estimate(0, 10_000, 300, 700), Some(10_000 + 23_334));
        assert_eq!(estimate(0, 10_000, 0, 700), None, "no pace yet");
        assert_eq!(estimate(0, 10_000, 5, 0), Some(10_000), "nothing left");
        let mut running = progress(explicit(), 10, 0, 4);
        running.record.created_at = now_ms() - 4_000;
        let s = RequestStatus::from(running);
        assert!(s.eta.is_some(), "{s:?}");
        // While everyone is still being read the pending users are not all known yet.
        let mut reading = progress(everyone(), 500, 1, 200);
        reading.record.created_at = now_ms() - 4_000;
        assert_eq!(RequestStatus::from(reading).eta, None);
        for final_or_new in [
            progress(explicit(), 10, 0, 10),
            progress(explicit(), 10, 0, 0),
        ] {
            assert_eq!(RequestStatus::from(final_or_new).eta, None);
        }
    }

    fn at_30() -> SendLoad {
        SendLoad {
            per_second: 30,
            ahead: 0,
            audience: None,
        }
    }

    #[test]
    fn the_work_ahead_comes_first_unless_the_request_starts_after_it_is_done() {
        let load = SendLoad {
            per_second: 10,
            ahead: 100,
            audience: None,
        };
        // 100 users ahead at 10/s (10.5 s), then 20 more (2.1 s).
        assert_eq!(load.done_at(0, 0, 20), 10_500 + 2_100);
        // Scheduled for after the lane is free: from its send_at.
        assert_eq!(load.done_at(0, 60_000, 20), 62_100);
        let open = |state, targeted, finished, expansions_pending| OpenRequest {
            request_id: "01m8yhng3wg4fg4twksych6mw5".parse().unwrap(),
            state,
            targeted,
            finished,
            expansions_pending,
            send_at: None,
        };
        assert!(!open(Some(RequestState::Accepted), 10, 4, 0).is_final());
        assert!(
            !open(Some(RequestState::Accepted), 10, 10, 1).is_final(),
            "still reading"
        );
        assert!(open(Some(RequestState::Accepted), 10, 10, 0).is_final());
        assert!(open(Some(RequestState::Cancelled), 10, 4, 0).is_final());
        assert!(open(None, 0, 0, 0).is_final(), "gone");
        assert_eq!(open(Some(RequestState::Accepted), 10, 4, 0).pending(), 6);
    }

    #[test]
    fn before_its_first_outcome_the_eta_is_its_users_at_the_bots_rate_from_its_start() {
        // 10 users at 30 a second in windows of 1.05 s: 350 ms.
        assert_eq!(at_rate(1_000, 10, 30), 1_350);
        assert_eq!(at_rate(1_000, 0, 30), 1_000);
        let not_started = progress(explicit(), 10, 0, 0);
        let s = RequestStatus::with_load(not_started.clone(), Some(at_30()));
        let eta = s.eta.expect("an ETA from the rate");
        let before = rfc3339(now_ms() + 350 - 5_000);
        let after = rfc3339(now_ms() + 350);
        assert!(before <= eta && eta <= after, "{eta}");
        assert_eq!(
            RequestStatus::with_load(not_started, None).eta,
            None,
            "no rate"
        );
        // Scheduled: from its send_at, not from now.
        let at = now_ms() + 3_600_000;
        let mut waiting = progress(explicit(), 10, 0, 0);
        waiting.record.send_at = Some(at);
        let s = RequestStatus::with_load(waiting, Some(at_30()));
        assert_eq!((s.state, s.eta), ("scheduled", Some(rfc3339(at + 350))));
        // `everyone` not read yet: as many as it means now, when that was counted.
        let mut broadcast = progress(everyone(), 0, 4, 0);
        broadcast.record.send_at = Some(at);
        assert_eq!(
            RequestStatus::with_load(broadcast.clone(), Some(at_30())).eta,
            None
        );
        let counted = SendLoad {
            audience: Some(20),
            ..at_30()
        };
        let s = RequestStatus::with_load(broadcast, Some(counted));
        assert_eq!((s.targeted, s.eta), (None, Some(rfc3339(at + 700))));
        // Final: none, rate or not.
        let done = progress(explicit(), 10, 0, 10);
        assert_eq!(RequestStatus::with_load(done, Some(at_30())).eta, None);
    }

    #[test]
    fn the_send_rate_is_the_slowest_paced_channel_the_bot_has_for_the_platform() {
        use crate::channels::{ChannelSpec, FieldKind, FieldSpec, PaceRule};
        const TOKEN: &[FieldSpec] = &[FieldSpec {
            name: "token",
            kind: FieldKind::Secret,
            about: "",
            needs: None,
        }];
        const FAST: ChannelSpec = ChannelSpec {
            name: "fast",
            title: "",
            serves: Serves::Messages,
            platforms: &["f"],
            fields: TOKEN,
            pace: Some(PaceRule {
                rate_field: "rate",
                boost: None,
            }),
            limits: None,
        };
        const SLOW: ChannelSpec = ChannelSpec {
            name: "slow",
            platforms: &["s"],
            ..FAST
        };
        const ENGINE: ChannelSpec = ChannelSpec {
            name: "engine",
            serves: Serves::Screens,
            platforms: &[],
            pace: None,
            limits: None,
            ..FAST
        };
        let channels: Channels = &[&FAST, &SLOW, &ENGINE];
        let bot = Bot {
            id: "b".parse().unwrap(),
            connections: crate::channels::Connections::default()
                .with("fast", "token", "t")
                .with("fast", "rate", "100")
                .with("slow", "token", "t")
                .with("engine", "token", "t"),
        };
        let mut record = progress(explicit(), 1, 0, 0).record;
        record.action = Action::Message(crate::message::Message::text("hi"));
        record.audience = Audience::Platform {
            platform: "f".into(),
            count: 1,
        };
        assert_eq!(send_rate(&record, &bot, channels, 30), Some(100));
        record.audience = Audience::Everyone {
            platform: PlatformFilter::Any,
            shards: 1,
        };
        assert_eq!(
            send_rate(&record, &bot, channels, 30),
            Some(30),
            "the slowest"
        );
        let unconnected = Bot {
            id: "b".parse().unwrap(),
            connections: Default::default(),
        };
        assert_eq!(send_rate(&record, &unconnected, channels, 30), None);
        record.action = Action::Screen {
            screen_id: "s".into(),
        };
        assert_eq!(send_rate(&record, &bot, channels, 30), None, "screens");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_764_090_005_604), "2025-11-25T17:00:05.604Z");
    }
}
