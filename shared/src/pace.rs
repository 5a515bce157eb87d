//! The per-bot send scheduler: a bot's rate on one platform, handed out in lane order.
//!
//! Every send of a paced channel waits here for its turn. One [`Pacer`] serves a process;
//! it keeps one schedule per (bot, channel), and each schedule grants turns:
//! - **at the bot's rate, with a margin**: turns are spaced `window / rate` apart and at
//!   most `rate` fall in any `window` (one second plus [`JITTER_MARGIN`]), so that sends
//!   bunched by network jitter still meet the platform's one-second limit; turns missed
//!   by more than [`CATCH_UP_AT_MOST`] are not made up in a burst;
//! - **transactional first**: a waiting transactional send takes the next turn before any
//!   bulk send, whenever it arrived. Bulk is never starved outright: while both lanes wait,
//!   at least one turn in [`BULK_FLOOR_EVERY`] goes to bulk (its floor share);
//! - **one chat at a time**: a send to a chat that had one less than the channel's chat gap
//!   (plus [`JITTER_MARGIN`]) ago waits until the gap has passed, and the turn goes to the
//!   next send whose chat is ready (Telegram allows about one message per second to one
//!   chat);
//! - **paused by the platform**: a 429's `retry_after` pauses the whole schedule (the bot's
//!   token), not just the user who met it.
//!
//! Within a lane turns go in arrival order, so the jobs of two bulk requests of one bot
//! share the bulk turns by how many sends each has waiting: fairly, with no request
//! able to shut the other out.
//!
//! Each send takes its own turn when it runs: the waiter whose turn is next sleeps until
//! its turn is due, takes it at the time it actually wakes (so a send held up by a busy
//! host does not make the next ones bunch behind it) and wakes the next. A waiter gives up
//! at its job's [`Cutoff`] (its user goes on in a new job) and its place passes on.
//! Per-chat times live in this process: the embedded runtime is one process, and a
//! restart takes longer than a chat gap. Where several processes message one bot's users
//! (AWS), each send's chat is also claimed on the user item at its turn
//! ([`crate::turn_write`]), and a chat another process took meanwhile is waited for.
//!
//! Where several processes send for one bot (AWS), a [`Pacer::with_budget`] also spends a
//! slot of the bot's budget shared by all of them before each turn ([`crate::budget`]):
//! the head of a schedule with no slot left claims some, in its lane's name, while the
//! others wait for it.

use crate::cutoff::Cutoff;
use crate::ids::BotId;
use crate::lane::Lane;
use crate::ports::SendBudget;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use crate::budget::JITTER_MARGIN;

/// How late a turn may be granted and the next still come on time: a granter woken a
/// little late (the timer's resolution) keeps the rate, one woken much later (a busy host)
/// does not send the turns it missed in a burst.
pub const CATCH_UP_AT_MOST: Duration = Duration::from_millis(5);

/// While both lanes wait, at least one turn in this many goes to bulk: a bot's
/// transactional traffic can take at most 90% of its rate from a broadcast.
pub const BULK_FLOOR_EVERY: u32 = 10;

/// How long a schedule waits before claiming again when the shared budget could not be
/// reached: nothing is sent without its slot.
const UNREACHABLE_BUDGET_WAIT: Duration = Duration::from_secs(1);

/// Whose schedule a send waits on: a bot on one channel (one token, one rate).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaceKey {
    pub bot: BotId,
    pub channel: &'static str,
}

/// How fast a schedule goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Sends per second (at least 1).
    pub per_second: u32,
    /// The least time between two sends to one chat (zero: none).
    pub chat_gap: Duration,
}

impl Pace {
    /// The chat gap with the margin for jitter (zero stays zero): what two sends to one
    /// chat are kept apart by.
    pub fn spaced_chat_gap(&self) -> Duration {
        match self.chat_gap {
            Duration::ZERO => Duration::ZERO,
            gap => gap + JITTER_MARGIN,
        }
    }
}

/// One send asking for its turn.
#[derive(Debug, Clone, Copy)]
pub struct TurnRequest<'a> {
    pub lane: Lane,
    /// The chat it goes to (the user's platform id).
    pub chat: &'a str,
}

/// Every schedule of a process.
#[derive(Default)]
pub struct Pacer {
    schedules: Mutex<HashMap<PaceKey, Arc<Mutex<State>>>>,
    /// A budget shared with other processes that send for the same bots, if any.
    budget: Option<Arc<dyn SendBudget>>,
}

impl Pacer {
    pub fn new() -> Pacer {
        Pacer::default()
    }

    /// A pacer whose every turn also spends a slot of `budget`, shared with the other
    /// processes that send for the same bots ([`crate::budget`]): each may then pace a bot
    /// at its whole rate.
    pub fn with_budget(budget: Arc<dyn SendBudget>) -> Pacer {
        Pacer {
            budget: Some(budget),
            ..Pacer::default()
        }
    }

    /// Wait for a turn to send on `key`'s schedule at `pace`: true when it is this send's
    /// turn, false when `cutoff` came first (nothing may be sent then).
    pub async fn turn(
        &self,
        key: &PaceKey,
        pace: Pace,
        request: TurnRequest<'_>,
        cutoff: &Cutoff,
    ) -> bool {
        let schedule = self.schedule(key);
        let wake = Arc::new(Notify::new());
        let me = {
            let mut state = lock(&schedule);
            state.pace = pace;
            state.join(request, wake.clone())
        };
        loop {
            let decision = lock(&schedule).decide(me, Instant::now());
            let until = match decision {
                Decision::Taken(next) => {
                    wake_up(next);
                    return true;
                }
                Decision::Claim(lane, want) => {
                    self.claim(key, &schedule, pace, lane, want).await;
                    continue;
                }
                Decision::SleepUntil(at) => Some(at),
                Decision::Wait(head) => {
                    wake_up(head);
                    None
                }
            };
            tokio::select! {
                biased;
                _ = cutoff.reached() => {
                    let next = lock(&schedule).leave(me);
                    wake_up(next);
                    return false;
                }
                _ = wake.notified() => {}
                _ = sleep_until(until) => {}
            }
        }
    }

    /// The platform said to wait `wait` (a 429's `retry_after`): no turn on `key` is
    /// taken before then — with a shared budget, by any process.
    pub fn pause(&self, key: &PaceKey, wait: Duration) {
        let schedule = self.schedule(key);
        let until = Instant::now() + wait;
        {
            let mut state = lock(&schedule);
            state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
        }
        if let Some(budget) = self.budget.clone() {
            let name = budget_key(key);
            tokio::spawn(async move {
                if let Err(e) = budget.pause(&name, wait).await {
                    tracing::warn!(error = %e, "a 429's pause could not be shared with the other instances");
                }
            });
        }
    }

    /// Claim `want` slots of the shared budget for `key`'s schedule, in `lane`'s name,
    /// and wake whoever goes next.
    async fn claim(
        &self,
        key: &PaceKey,
        schedule: &Mutex<State>,
        pace: Pace,
        lane: Lane,
        want: u32,
    ) {
        let Some(budget) = &self.budget else { return };
        let name = budget_key(key);
        let claimed = budget.claim(&name, pace.per_second, lane, want).await;
        if let Err(e) = &claimed {
            tracing::warn!(error = %e, "the shared send budget could not be claimed; the bot waits");
        }
        let next = lock(schedule).claimed(lane, claimed.ok(), Instant::now());
        wake_up(next);
    }

    fn schedule(&self, key: &PaceKey) -> Arc<Mutex<State>> {
        self.schedules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(State {
                    shared: self.budget.is_some(),
                    ..State::default()
                }))
            })
            .clone()
    }
}

/// The name of `key`'s shared budget.
fn budget_key(key: &PaceKey) -> String {
    format!("{}#{}", key.bot, key.channel)
}

fn lock(schedule: &Mutex<State>) -> MutexGuard<'_, State> {
    schedule.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake_up(next: Option<Arc<Notify>>) {
    if let Some(next) = next {
        next.notify_one();
    }
}

/// Sleep until `at`; forever without one (a waiter woken only by its turn or its cutoff).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::Transactional => 0,
        Lane::Bulk => 1,
    }
}

struct Waiter {
    id: u64,
    chat: String,
    wake: Arc<Notify>,
}

/// What a waiter does next.
#[derive(Debug)]
enum Decision {
    /// It took its turn; the waiter to wake, whose turn may be next.
    Taken(Option<Arc<Notify>>),
    /// Its turn (or its chat) is not due before this.
    SleepUntil(Instant),
    /// Others go first: it is woken when its turn may have come; the head to wake (it may
    /// be asleep without a timer), if another.
    Wait(Option<Arc<Notify>>),
    /// Its turn needs a slot of the shared budget, and it is to claim this many in this
    /// lane's name.
    Claim(Lane, u32),
}

struct State {
    pace: Pace,
    /// Waiting sends by lane: transactional, bulk.
    waiting: [VecDeque<Waiter>; 2],
    joined: u64,
    /// The earliest time of the next turn (even spacing).
    next: Instant,
    /// When the last turns were taken, at most `per_second` of them (the window).
    recent: VecDeque<Instant>,
    paused_until: Option<Instant>,
    /// When each chat last had a turn (entries older than the chat gap are dropped).
    chats: HashMap<String, Instant>,
    /// Turns given to transactional in a row while bulk waited.
    transactional_streak: u32,
    /// Whether turns spend slots of a shared budget (the pacer has one), set once.
    shared: bool,
    /// Slots of the shared budget claimed and not yet used, in order.
    slots: VecDeque<Instant>,
    /// A waiter is claiming slots.
    claiming: bool,
    /// By lane (transactional, bulk): the budget said no claim of it is granted before
    /// then (or could not be reached).
    claim_after: [Option<Instant>; 2],
    /// Bulk claims refused in a row.
    bulk_refused: u32,
}

impl Default for State {
    fn default() -> Self {
        State {
            pace: Pace {
                per_second: 1,
                chat_gap: Duration::ZERO,
            },
            waiting: [VecDeque::new(), VecDeque::new()],
            joined: 0,
            next: Instant::now(),
            recent: VecDeque::new(),
            paused_until: None,
            chats: HashMap::new(),
            transactional_streak: 0,
            shared: false,
            slots: VecDeque::new(),
            claiming: false,
            claim_after: [None, None],
            bulk_refused: 0,
        }
    }
}

impl State {
    fn window(&self) -> Duration {
        crate::budget::WINDOW
    }

    fn chat_gap(&self) -> Duration {
        self.pace.spaced_chat_gap()
    }

    fn interval(&self) -> Duration {
        self.window() / self.pace.per_second.max(1)
    }

    /// Queue a send; its id.
    fn join(&mut self, request: TurnRequest<'_>, wake: Arc<Notify>) -> u64 {
        self.joined += 1;
        self.waiting[lane_index(request.lane)].push_back(Waiter {
            id: self.joined,
            chat: request.chat.to_string(),
            wake,
        });
        self.joined
    }

    /// Whether waiter `id` may take a turn at `now`, and takes it if so.
    fn decide(&mut self, id: u64, now: Instant) -> Decision {
        let gap = self.chat_gap();
        self.chats
            .retain(|_, at| now.saturating_duration_since(*at) < gap);
        let Some((lane, index)) = self.position(id) else {
            // Not waiting (cannot happen: a waiter leaves only by taking or giving up).
            return Decision::Taken(self.head_wake());
        };
        if let Some(at) = self.chats.get(&self.waiting[lane][index].chat) {
            return Decision::SleepUntil(*at + gap);
        }
        if let Some((head_lane, head_index)) = self.head().filter(|h| *h != (lane, index)) {
            // The head may be a waiter that went to sleep while it was not the head (its
            // chat taken meanwhile): wake it, or nobody may take a turn again.
            return Decision::Wait(Some(self.waiting[head_lane][head_index].wake.clone()));
        }
        let mut due = self.due();
        if self.shared {
            match self.shared_slot(now) {
                Ok(slot) => due = due.max(slot),
                Err(decision) => return decision,
            }
        }
        if due > now {
            return Decision::SleepUntil(due);
        }
        self.take(lane, index, due, now);
        if self.shared {
            self.slots.pop_front();
        }
        Decision::Taken(self.head_wake())
    }

    /// The shared budget's next slot claimed here, or what the head does to get one:
    /// claim (in bulk's name, or in transactional's when the head is transactional or
    /// bulk has been refused [`BULK_FLOOR_EVERY`] times in a row), wait for the claim
    /// under way, or sleep until the budget may grant one. Slots not used within an
    /// interval of their time are dropped, never sent late in a burst.
    fn shared_slot(&mut self, now: Instant) -> Result<Instant, Decision> {
        let stale = now.checked_sub(self.interval()).unwrap_or(now);
        while self.slots.front().is_some_and(|slot| *slot < stale) {
            self.slots.pop_front();
        }
        if let Some(slot) = self.slots.front() {
            return Ok(*slot);
        }
        if self.claiming {
            return Err(Decision::Wait(None));
        }
        let head_lane = match self.head() {
            Some((0, _)) => Lane::Transactional,
            _ if self.bulk_refused >= BULK_FLOOR_EVERY => Lane::Transactional,
            _ => Lane::Bulk,
        };
        if let Some(after) = self.claim_after[lane_index(head_lane)].filter(|at| *at > now) {
            return Err(Decision::SleepUntil(after));
        }
        self.claiming = true;
        Err(match head_lane {
            Lane::Transactional => Decision::Claim(Lane::Transactional, 1),
            Lane::Bulk => Decision::Claim(Lane::Bulk, crate::budget::BULK_CHUNK),
        })
    }

    /// What a claim in `lane`'s name brought at `now`: slots, a wait (`Err`), or nothing
    /// (the budget could not be reached: look again in a second). The waiter to wake.
    fn claimed(
        &mut self,
        lane: Lane,
        claimed: Option<Result<Vec<Duration>, Duration>>,
        now: Instant,
    ) -> Option<Arc<Notify>> {
        self.claiming = false;
        match claimed {
            Some(Ok(slots)) => {
                self.slots.extend(slots.into_iter().map(|wait| now + wait));
                self.claim_after = [None, None];
                self.bulk_refused = 0;
            }
            Some(Err(wait)) => {
                self.claim_after[lane_index(lane)] = Some(now + wait);
                if lane == Lane::Bulk {
                    self.bulk_refused += 1;
                }
            }
            None => self.claim_after = [Some(now + UNREACHABLE_BUDGET_WAIT); 2],
        }
        self.head_wake()
    }

    /// Waiter `id` gives up its place; the waiter to wake (it may have been the one woken
    /// to go next: the next one is woken in its stead; a spare wake-up only makes a waiter
    /// look again).
    fn leave(&mut self, id: u64) -> Option<Arc<Notify>> {
        let (lane, index) = self.position(id)?;
        self.waiting[lane].remove(index);
        self.head_wake()
    }

    fn position(&self, id: u64) -> Option<(usize, usize)> {
        (0..2).find_map(|lane| {
            self.waiting[lane]
                .iter()
                .position(|w| w.id == id)
                .map(|index| (lane, index))
        })
    }

    /// Take the turn for the waiter at (`lane`, `index`), due at `due`, at `now`.
    fn take(&mut self, lane: usize, index: usize, due: Instant, now: Instant) {
        let bulk_ready = self.first_ready(1).is_some();
        self.transactional_streak = match lane {
            0 if bulk_ready => self.transactional_streak + 1,
            _ => 0,
        };
        let Some(waiter) = self.waiting[lane].remove(index) else {
            return;
        };
        if !self.pace.chat_gap.is_zero() {
            self.chats.insert(waiter.chat, now);
        }
        // Spaced from when this turn was due, so that a turn taken a little late does not
        // lose rate; from now, less a little, after a longer delay or an idle spell.
        self.next = due.max(now - CATCH_UP_AT_MOST) + self.interval();
        self.recent.push_back(now);
        while self.recent.len() > self.pace.per_second.max(1) as usize {
            self.recent.pop_front();
        }
    }

    /// When the next turn may be taken: spacing, window and pause.
    fn due(&self) -> Instant {
        let mut due = self.next;
        if self.recent.len() >= self.pace.per_second.max(1) as usize {
            if let Some(oldest) = self.recent.front() {
                due = due.max(*oldest + self.window());
            }
        }
        if let Some(paused) = self.paused_until {
            due = due.max(paused);
        }
        due
    }

    /// The first waiter of `lane` whose chat is ready.
    fn first_ready(&self, lane: usize) -> Option<usize> {
        self.waiting[lane]
            .iter()
            .position(|w| !self.chats.contains_key(&w.chat))
    }

    /// Whose turn is next: transactional first unless bulk is owed its floor share; in
    /// each lane the first whose chat is ready.
    fn head(&self) -> Option<(usize, usize)> {
        let bulk_owed = self.transactional_streak + 1 >= BULK_FLOOR_EVERY;
        match (self.first_ready(0), self.first_ready(1)) {
            (Some(_), Some(b)) if bulk_owed => Some((1, b)),
            (Some(t), _) => Some((0, t)),
            (None, Some(b)) => Some((1, b)),
            (None, None) => None,
        }
    }

    /// The waiter to wake after the head changed: the new head; when every waiting send
    /// is to a chat inside its gap, the one whose chat is ready first (it sleeps until
    /// then), so that nobody is left waiting for a wake-up that never comes.
    fn head_wake(&self) -> Option<Arc<Notify>> {
        if let Some((lane, index)) = self.head() {
            return Some(self.waiting[lane][index].wake.clone());
        }
        self.waiting
            .iter()
            .flatten()
            .min_by_key(|w| self.chats.get(&w.chat).copied())
            .map(|w| w.wake.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cutoff::Stop;

    type Grants = Arc<Mutex<Vec<(String, Instant)>>>;

    fn key() -> PaceKey {
        PaceKey {
            bot: BotId::parse("shop").unwrap(),
            channel: "telegram",
        }
    }

    fn pace(per_second: u32, chat_gap: Duration) -> Pace {
        Pace {
            per_second,
            chat_gap,
        }
    }

    fn far_cutoff() -> Cutoff {
        Stop::never().cutoff(std::time::Instant::now() + Duration::from_secs(3600))
    }

    /// A send of `label` to `chat` in `lane` that records when its turn came.
    fn send(
        pacer: &Arc<Pacer>,
        grants: &Grants,
        pace: Pace,
        lane: Lane,
        chat: &str,
        label: &str,
    ) -> tokio::task::JoinHandle<bool> {
        let (pacer, grants) = (pacer.clone(), grants.clone());
        let (chat, label) = (chat.to_string(), label.to_string());
        tokio::spawn(async move {
            let turn = pacer
                .turn(
                    &key(),
                    pace,
                    TurnRequest { lane, chat: &chat },
                    &far_cutoff(),
                )
                .await;
            if turn {
                grants.lock().unwrap().push((label, Instant::now()));
            }
            turn
        })
    }

    fn labels(grants: &Grants) -> Vec<String> {
        grants
            .lock()
            .unwrap()
            .iter()
            .map(|(l, _)| l.clone())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_transactional_send_takes_the_next_turn_ahead_of_a_waiting_broadcast() {
        let (pacer, grants) = (Arc::new(Pacer::new()), Grants::default());
        let pace = pace(10, Duration::ZERO);
        let bulk: Vec<_> = (0..30)
            .map(|i| {
                send(
                    &pacer,
                    &grants,
                    pace,
                    Lane::Bulk,
                    &format!("b{i}"),
                    &format!("b{i}"),
                )
            })
            .collect();
        // Three turns into the broadcast, an order confirmation arrives.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let granted_before = labels(&grants).len();
        assert!((2..30).contains(&granted_before), "{granted_before}");
        let order = send(&pacer, &grants, pace, Lane::Transactional, "t", "order");
        assert!(order.await.unwrap());
        for b in bulk {
            assert!(b.await.unwrap());
        }
        let labels = labels(&grants);
        let at = labels.iter().position(|l| l == "order").unwrap();
        assert_eq!(at, granted_before, "the very next turn: {labels:?}");
        assert_eq!(labels.len(), 31);
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_keeps_its_floor_share_while_transactional_traffic_saturates_the_bot() {
        let (pacer, grants) = (Arc::new(Pacer::new()), Grants::default());
        let pace = pace(20, Duration::ZERO);
        let mut sends = Vec::new();
        for i in 0..5 {
            sends.push(send(
                &pacer,
                &grants,
                pace,
                Lane::Bulk,
                &format!("b{i}"),
                &format!("b{i}"),
            ));
        }
        for i in 0..60 {
            let chat = format!("t{i}");
            sends.push(send(
                &pacer,
                &grants,
                pace,
                Lane::Transactional,
                &chat,
                &chat,
            ));
        }
        for s in sends {
            assert!(s.await.unwrap());
        }
        let labels = labels(&grants);
        // The first turn went before the transactional sends arrived; then bulk gets one
        // turn in every ten while both wait.
        let bulk_turns: Vec<usize> = labels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with('b'))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(bulk_turns.len(), 5);
        for pair in bulk_turns.windows(2) {
            assert!(
                pair[1] - pair[0] <= BULK_FLOOR_EVERY as usize,
                "bulk waited more than {BULK_FLOOR_EVERY} turns: {labels:?}"
            );
        }
        assert!(
            bulk_turns[4] < 60,
            "bulk finished while transactional still waited"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn turns_keep_to_the_rate_with_a_margin_in_every_window() {
        let (pacer, grants) = (Arc::new(Pacer::new()), Grants::default());
        let pace = pace(30, Duration::ZERO);
        let sends: Vec<_> = (0..200)
            .map(|i| send(&pacer, &grants, pace, Lane::Bulk, &format!("c{i}"), "x"))
            .collect();
        for s in sends {
            assert!(s.await.unwrap());
        }
        let times: Vec<Instant> = grants.lock().unwrap().iter().map(|(_, t)| *t).collect();
        let window = Duration::from_secs(1) + JITTER_MARGIN;
        for (i, t) in times.iter().enumerate().skip(30) {
            assert!(
                t.duration_since(times[i - 30]) >= window,
                "31 turns within {window:?} at {i}"
            );
        }
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= window / 30 - Duration::from_millis(1));
        }
        let span = times[199] - times[0];
        // 199 intervals of 1.05 s / 30: the margin costs 5% and nothing more.
        assert!(
            span <= (window / 30) * 199 + Duration::from_millis(50),
            "{span:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_sends_to_one_chat_are_spaced_by_the_chat_gap_and_others_go_between() {
        let (pacer, grants) = (Arc::new(Pacer::new()), Grants::default());
        let pace = pace(30, Duration::from_secs(1));
        let mut sends = vec![
            send(
                &pacer,
                &grants,
                pace,
                Lane::Transactional,
                "alice",
                "alice-1",
            ),
            send(
                &pacer,
                &grants,
                pace,
                Lane::Transactional,
                "alice",
                "alice-2",
            ),
        ];
        for i in 0..5 {
            let chat = format!("c{i}");
            sends.push(send(&pacer, &grants, pace, Lane::Bulk, &chat, &chat));
        }
        for s in sends {
            assert!(s.await.unwrap());
        }
        let grants = grants.lock().unwrap().clone();
        let at = |label: &str| grants.iter().find(|(l, _)| l == label).unwrap().1;
        assert!(at("alice-2") - at("alice-1") >= Duration::from_secs(1) + JITTER_MARGIN);
        let labels: Vec<&str> = grants.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels[0], "alice-1");
        assert_eq!(labels[1], "c0", "the turn went to a ready chat: {labels:?}");
        assert_eq!(labels.last(), Some(&"alice-2"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_from_the_platform_holds_every_send_of_the_bot() {
        let (pacer, grants) = (Arc::new(Pacer::new()), Grants::default());
        let pace = pace(30, Duration::ZERO);
        let first = send(&pacer, &grants, pace, Lane::Bulk, "a", "a");
        assert!(first.await.unwrap());
        let paused_at = Instant::now();
        pacer.pause(&key(), Duration::from_secs(5));
        let sends = vec![
            send(&pacer, &grants, pace, Lane::Bulk, "b", "b"),
            send(&pacer, &grants, pace, Lane::Transactional, "c", "c"),
        ];
        for s in sends {
            assert!(s.await.unwrap());
        }
        for (label, at) in grants.lock().unwrap().iter().skip(1) {
            assert!(
                *at - paused_at >= Duration::from_secs(5),
                "{label} went early"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_that_reaches_its_cutoff_gives_up_its_place_without_spending_a_turn() {
        let (pacer, grants) = (Arc::new(Pacer::new()), Grants::default());
        let pace = pace(1, Duration::ZERO);
        assert!(send(&pacer, &grants, pace, Lane::Bulk, "a", "a")
            .await
            .unwrap());
        // The next turn is a second away; this send's job stops in half of it.
        let soon = Stop::never().cutoff(std::time::Instant::now() + Duration::from_millis(500));
        let request = TurnRequest {
            lane: Lane::Transactional,
            chat: "late",
        };
        let key = key();
        let gave_up = pacer.turn(&key, pace, request, &soon);
        let waiting = send(&pacer, &grants, pace, Lane::Bulk, "b", "b");
        assert!(!gave_up.await, "no turn after the cutoff");
        assert!(waiting.await.unwrap());
        assert_eq!(labels(&grants), ["a", "b"]);
    }

    #[tokio::test(start_paused = true)]
    async fn each_bot_has_its_own_schedule() {
        let pacer = Arc::new(Pacer::new());
        let pace = pace(1, Duration::ZERO);
        let cutoff = far_cutoff();
        let request = TurnRequest {
            lane: Lane::Bulk,
            chat: "x",
        };
        let start = Instant::now();
        assert!(pacer.turn(&key(), pace, request, &cutoff).await);
        let other = PaceKey {
            bot: BotId::parse("other").unwrap(),
            channel: "telegram",
        };
        assert!(pacer.turn(&other, pace, request, &cutoff).await);
        assert!(
            Instant::now() - start < Duration::from_millis(10),
            "no wait for another bot"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_taken_late_does_not_let_the_missed_turns_go_in_a_burst() {
        let mut state = State {
            pace: pace(30, Duration::ZERO),
            ..State::default()
        };
        let ids: Vec<u64> = (0..10)
            .map(|i| {
                let chat = format!("c{i}");
                let request = TurnRequest {
                    lane: Lane::Bulk,
                    chat: &chat,
                };
                state.join(request, Arc::new(Notify::new()))
            })
            .collect();
        let start = Instant::now();
        assert!(matches!(
            state.decide(ids[0], start),
            Decision::Taken(Some(_))
        ));
        assert!(
            matches!(state.decide(ids[2], start), Decision::Wait(_)),
            "not its turn"
        );
        // Taken 2 ms late: on time for the rate, the next turn keeps its place.
        let on_time = state.next;
        let Decision::SleepUntil(due) = state.decide(ids[1], on_time - Duration::from_millis(1))
        else {
            panic!("not due yet")
        };
        assert_eq!(due, on_time);
        assert!(matches!(
            state.decide(ids[1], on_time + Duration::from_millis(2)),
            Decision::Taken(_)
        ));
        assert_eq!(state.next, on_time + state.interval());
        // Taken 300 ms late: the next turn a whole interval (less 5 ms) after it.
        let late = state.next + Duration::from_millis(300);
        assert!(matches!(state.decide(ids[2], late), Decision::Taken(_)));
        assert_eq!(state.next, late - CATCH_UP_AT_MOST + state.interval());
        let Decision::SleepUntil(next) = state.decide(ids[3], late) else {
            panic!("not due yet")
        };
        assert_eq!(next, state.next);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_whose_chat_was_taken_while_it_waited_still_gets_its_turn() {
        let (pacer, grants) = (Arc::new(Pacer::new()), Grants::default());
        let pace = pace(30, Duration::from_secs(1));
        // Two bulk sends wait; an order to the second one's chat comes first.
        let sends = vec![
            send(&pacer, &grants, pace, Lane::Bulk, "a", "bulk-a"),
            send(&pacer, &grants, pace, Lane::Bulk, "x", "bulk-x"),
            send(&pacer, &grants, pace, Lane::Transactional, "x", "order-x"),
        ];
        for s in sends {
            assert!(
                s.await.unwrap(),
                "every send got its turn before its cutoff"
            );
        }
        let grants = grants.lock().unwrap().clone();
        let at = |label: &str| grants.iter().find(|(l, _)| l == label).unwrap().1;
        assert!(at("bulk-x") - at("order-x") >= Duration::from_secs(1));
        assert!(
            at("bulk-x") - at("order-x") < Duration::from_secs(2),
            "woken when its chat was ready, not at its cutoff"
        );
    }

    /// The most grants that fall in any window of `window`.
    fn most_in_a_window(times: &[Instant], window: Duration) -> usize {
        let mut times = times.to_vec();
        times.sort();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t < times[i] + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    fn shared_pacers(count: usize) -> Vec<Arc<Pacer>> {
        let budget: Arc<dyn SendBudget> = Arc::new(crate::budget::LocalBudget::default());
        (0..count)
            .map(|_| Arc::new(Pacer::with_budget(budget.clone())))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn pacers_sharing_a_budget_keep_the_bots_rate_together() {
        let pacers = shared_pacers(2);
        let grants = Grants::default();
        // Each paces at the bot's whole rate, 10 a second.
        let pace = pace(10, Duration::ZERO);
        let sends: Vec<_> = (0..60)
            .map(|i| {
                let chat = format!("c{i}");
                send(&pacers[i % 2], &grants, pace, Lane::Bulk, &chat, &chat)
            })
            .collect();
        for s in sends {
            assert!(s.await.unwrap());
        }
        let times: Vec<Instant> = grants.lock().unwrap().iter().map(|(_, t)| *t).collect();
        assert_eq!(times.len(), 60);
        let window = Duration::from_secs(1) + JITTER_MARGIN;
        assert!(
            most_in_a_window(&times, window) <= 10,
            "{} turns in one window",
            most_in_a_window(&times, window)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_met_by_one_pacer_holds_the_others_on_its_budget() {
        let pacers = shared_pacers(2);
        let grants = Grants::default();
        let started = Instant::now();
        pacers[0].pause(&key(), Duration::from_secs(5));
        // The pause reaches the budget from a task of its own.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let elsewhere = send(
            &pacers[1],
            &grants,
            pace(10, Duration::ZERO),
            Lane::Transactional,
            "t",
            "t",
        );
        assert!(elsewhere.await.unwrap());
        let at = grants.lock().unwrap()[0].1;
        assert!(
            at >= started + Duration::from_secs(5),
            "sent {:?} after the 429",
            at - started
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_pacer_on_a_shared_budget_uses_the_whole_rate() {
        let pacer = shared_pacers(1).remove(0);
        let grants = Grants::default();
        let started = Instant::now();
        let sends: Vec<_> = (0..21)
            .map(|i| {
                send(
                    &pacer,
                    &grants,
                    pace(10, Duration::ZERO),
                    Lane::Bulk,
                    &format!("c{i}"),
                    "x",
                )
            })
            .collect();
        for s in sends {
            assert!(s.await.unwrap());
        }
        let last = grants
            .lock()
            .unwrap()
            .iter()
            .map(|(_, t)| *t)
            .max()
            .unwrap();
        // 21 turns 105 ms apart: 2.1 s on the virtual clock, as without a budget; a
        // fixed share of two processes would have taken twice that.
        let took = last - started;
        assert!(took < Duration::from_millis(2_200), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_on_one_pacer_overtakes_a_broadcast_claimed_by_another() {
        let pacers = shared_pacers(2);
        let grants = Grants::default();
        let pace = pace(10, Duration::ZERO);
        let bulk: Vec<_> = (0..40)
            .map(|i| {
                send(
                    &pacers[0],
                    &grants,
                    pace,
                    Lane::Bulk,
                    &format!("b{i}"),
                    &format!("b{i}"),
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let before = labels(&grants).len();
        let order = send(&pacers[1], &grants, pace, Lane::Transactional, "t", "order");
        assert!(order.await.unwrap());
        let at = labels(&grants).iter().position(|l| l == "order").unwrap();
        // Behind at most the broadcast's slots already claimed (under 0.2 s of them).
        assert!(
            at - before <= 3,
            "{} broadcast turns went first",
            at - before
        );
        for b in bulk {
            assert!(b.await.unwrap());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_broadcast_keeps_its_floor_share_of_a_budget_orders_saturate_elsewhere() {
        let pacers = shared_pacers(2);
        let grants = Grants::default();
        let pace = pace(10, Duration::ZERO);
        let mut sends = Vec::new();
        for i in 0..100 {
            let chat = format!("t{i}");
            sends.push(send(
                &pacers[1],
                &grants,
                pace,
                Lane::Transactional,
                &chat,
                &chat,
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let bulk: Vec<_> = (0..3)
            .map(|i| {
                send(
                    &pacers[0],
                    &grants,
                    pace,
                    Lane::Bulk,
                    &format!("b{i}"),
                    &format!("b{i}"),
                )
            })
            .collect();
        for b in bulk {
            assert!(b.await.unwrap());
        }
        let labels = labels(&grants);
        assert!(
            labels.iter().filter(|l| l.starts_with('t')).count() < 100,
            "the broadcast finished while orders still waited: {labels:?}"
        );
        for s in sends {
            assert!(s.await.unwrap());
        }
    }

    #[test]
    fn a_waiter_that_finds_another_head_wakes_it() {
        // P waits behind an order to its own chat; the order takes the chat, so P sleeps
        // without a timer of its own. When the chat is free again P is the head, and the
        // waiter that finds so must wake it: otherwise nobody takes a turn again (the
        // lanes benchmark's 100-user broadcast stalled 20 s on this).
        let mut state = State {
            pace: pace(30, Duration::from_secs(1)),
            ..State::default()
        };
        let join = |state: &mut State, lane, chat: &str| {
            let wake = Arc::new(Notify::new());
            (state.join(TurnRequest { lane, chat }, wake.clone()), wake)
        };
        let (p, p_wake) = join(&mut state, Lane::Bulk, "c0");
        let (h, _) = join(&mut state, Lane::Bulk, "c1");
        let (order, _) = join(&mut state, Lane::Transactional, "c0");
        let start = Instant::now();
        assert!(matches!(state.decide(p, start), Decision::Wait(Some(_))));
        assert!(matches!(state.decide(order, start), Decision::Taken(_)));
        assert!(matches!(state.decide(h, start), Decision::SleepUntil(_)));
        let later = start + Duration::from_millis(1_200);
        let Decision::Wait(Some(head)) = state.decide(h, later) else {
            panic!("h is not the head once c0 is free")
        };
        assert!(Arc::ptr_eq(&head, &p_wake), "the head to wake is p");
        assert!(matches!(state.decide(p, later), Decision::Taken(_)));
    }

    #[test]
    fn claimed_slots_not_used_within_an_interval_are_dropped_not_sent_late() {
        // Five bulk slots claimed, 35 ms apart at 30/s; nobody wants a turn until 200 ms
        // later (the job that claimed them ended). Sent then, they would go out together,
        // on top of the slots other processes claimed after them: they are dropped, and the
        // next send claims afresh.
        let mut state = State {
            pace: pace(30, Duration::ZERO),
            shared: true,
            ..State::default()
        };
        let start = Instant::now();
        let interval = state.interval();
        let waits: Vec<Duration> = (0..5).map(|i| interval * i).collect();
        state.claimed(Lane::Bulk, Some(Ok(waits)), start);
        assert_eq!(state.slots.len(), 5);
        let wake = Arc::new(Notify::new());
        let late = state.join(
            TurnRequest {
                lane: Lane::Bulk,
                chat: "c",
            },
            wake,
        );
        // The last slot was due at 140 ms; at 200 ms every one is over an interval old.
        let now = start + Duration::from_millis(200);
        assert!(
            matches!(state.decide(late, now), Decision::Claim(Lane::Bulk, _)),
            "stale slots are not used: a fresh claim"
        );
        assert!(state.slots.is_empty());
        // A slot within an interval of its time is still used.
        state.claimed(Lane::Bulk, Some(Ok(vec![Duration::ZERO])), now);
        let in_time = now + interval / 2;
        assert!(matches!(state.decide(late, in_time), Decision::Taken(_)));
    }

    /// A budget that cannot be reached for its first `failures` claims.
    struct Unreachable {
        failures: Mutex<u32>,
        then: crate::budget::LocalBudget,
    }

    #[async_trait::async_trait]
    impl SendBudget for Unreachable {
        async fn claim(
            &self,
            key: &str,
            per_second: u32,
            lane: Lane,
            want: u32,
        ) -> Result<Result<Vec<Duration>, Duration>, crate::StoreError> {
            {
                let mut left = self.failures.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return Err(crate::StoreError::new("DynamoDB is down"));
                }
            }
            self.then.claim(key, per_second, lane, want).await
        }

        async fn pause(&self, key: &str, wait: Duration) -> Result<(), crate::StoreError> {
            self.then.pause(key, wait).await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_sent_without_a_slot_while_the_budget_cannot_be_reached() {
        let budget = Arc::new(Unreachable {
            failures: Mutex::new(2),
            then: crate::budget::LocalBudget::default(),
        });
        let pacer = Arc::new(Pacer::with_budget(budget));
        let grants = Grants::default();
        let started = Instant::now();
        let order = send(
            &pacer,
            &grants,
            pace(10, Duration::ZERO),
            Lane::Transactional,
            "t",
            "t",
        );
        assert!(order.await.unwrap());
        let at = grants.lock().unwrap()[0].1;
        // Two failed claims, a second apart each: the send waited for the third.
        assert!(
            at >= started + 2 * UNREACHABLE_BUDGET_WAIT,
            "sent {:?} in",
            at - started
        );
    }
}
