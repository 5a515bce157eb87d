//! Deliver jobs in flight per bot, in this process.
//!
//! A worker that takes a deliver job of a bot whose slots are all in use puts the job back
//! for a moment instead of waiting, so that a bot with a slow engine or a long broadcast
//! holds at most `per_bot` workers and the others keep serving other bots.

use crate::ids::BotId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct BotSlots {
    per_bot: usize,
    slots: Mutex<HashMap<BotId, Arc<Semaphore>>>,
}

impl BotSlots {
    pub fn new(per_bot: usize) -> BotSlots {
        BotSlots {
            per_bot: per_bot.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The bots whose slots are all in use now: a queue that knows a job's bot leases
    /// none of their deliver jobs, instead of leasing and putting them back.
    pub fn full(&self) -> Vec<BotId> {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, slots)| slots.available_permits() == 0)
            .map(|(bot, _)| bot.clone())
            .collect()
    }

    /// A slot for one job of `bot_id`, if one is free; held until dropped.
    pub fn try_take(&self, bot_id: &BotId) -> Option<OwnedSemaphorePermit> {
        let semaphore = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(bot_id.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_bot)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bot_has_its_own_slots() {
        let slots = BotSlots::new(2);
        let (a, b) = (BotId::parse("a").unwrap(), BotId::parse("b").unwrap());
        let a1 = slots.try_take(&a);
        let a2 = slots.try_take(&a);
        assert!(a1.is_some() && a2.is_some());
        assert!(slots.try_take(&a).is_none(), "a is full");
        assert_eq!(slots.full(), std::slice::from_ref(&a));
        assert!(slots.try_take(&b).is_some(), "b is not held up by a");
        drop(a1);
        assert!(
            slots.try_take(&a).is_some(),
            "a slot comes back when a job ends"
        );
    }
}
