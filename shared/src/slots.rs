//! Deliver jobs in flight per bot and lane, in this process.
//!
//! A worker that takes a deliver job of a bot whose slots in the job's lane are all in use
//! puts the job back for a moment instead of waiting, so that a bot with a slow engine or
//! a long broadcast holds at most `per_bot` workers per lane and the others keep serving
//! other bots. Each lane has its own slots: a bot's broadcast jobs, waiting on its pace,
//! never hold the slots its order confirmations need.

use crate::ids::BotId;
use crate::lane::Lane;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct BotSlots {
    per_bot: usize,
    slots: Mutex<HashMap<(BotId, Lane), Arc<Semaphore>>>,
}

impl BotSlots {
    pub fn new(per_bot: usize) -> BotSlots {
        BotSlots {
            per_bot: per_bot.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The bots and lanes whose slots are all in use now: a queue that knows a job's bot
    /// leases none of their deliver jobs, instead of leasing and putting them back.
    pub fn full(&self) -> Vec<(BotId, Lane)> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, slots)| slots.available_permits() == 0)
            .map(|(bot, _)| bot.clone())
            .collect()
    }

    /// A slot for one job of `bot_id` in `lane`, if one is free; held until dropped.
    pub fn try_take(&self, bot_id: &BotId, lane: Lane) -> Option<OwnedSemaphorePermit> {
        let semaphore = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((bot_id.clone(), lane))
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_bot)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bot_and_lane_has_its_own_slots() {
        let slots = BotSlots::new(2);
        let (a, b) = (BotId::parse("a").unwrap(), BotId::parse("b").unwrap());
        let a1 = slots.try_take(&a, Lane::Bulk);
        let a2 = slots.try_take(&a, Lane::Bulk);
        assert!(a1.is_some() && a2.is_some());
        assert!(slots.try_take(&a, Lane::Bulk).is_none(), "a is full");
        assert_eq!(slots.full(), [(a.clone(), Lane::Bulk)]);
        assert!(
            slots.try_take(&a, Lane::Transactional).is_some(),
            "a's broadcast does not hold its transactional jobs up"
        );
        assert!(
            slots.try_take(&b, Lane::Bulk).is_some(),
            "b is not held up by a"
        );
        drop(a1);
        assert!(
            slots.try_take(&a, Lane::Bulk).is_some(),
            "a slot comes back when a job ends"
        );
    }
}
