//! Events as the accept path reads them, kept in memory for a moment.
//!
//! Every request starts by reading its event (secret hash, action, enabled, rate limit),
//! and that read was a hop to the blocking pool on every accept. So the store keeps the
//! events it read for [`FRESH_FOR`] (measured: 15,026–17,771 accepts/s against 15,132
//! without it in the same harness — a modest gain on this noisy machine; BENCHMARKS.md, 1). Changes made through the same store — the admin API of this process — are
//! seen at once: they bump a generation that every kept event is checked against. Changes
//! written to the file by another process (the CLI on `--db` while `herald serve` runs) are
//! seen within [`FRESH_FOR`]. An event that was not found is never kept, so a new event
//! works at once wherever it was created.

use herald_core::domain::Event;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an event read from the file is used without reading it again.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Most events kept; past it the cache starts afresh.
const MOST_KEPT: usize = 10_000;

#[derive(Default)]
pub(crate) struct EventCache {
    generation: AtomicU64,
    kept: Mutex<HashMap<String, Kept>>,
}

struct Kept {
    generation: u64,
    read_at: Instant,
    event: Event,
}

impl EventCache {
    /// The generation to read under: take it *before* reading the file, so that a change
    /// committed meanwhile makes what was read stale.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The event kept for `event_id`, if it was read under `generation` and is fresh.
    pub(crate) fn get(&self, event_id: &str, generation: u64) -> Option<Event> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.get(event_id)
            .filter(|k| k.generation == generation && k.read_at.elapsed() < FRESH_FOR)
            .map(|k| k.event.clone())
    }

    /// Keep `event`, read from the file under `generation`.
    pub(crate) fn keep(&self, event: &Event, generation: u64) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MOST_KEPT {
            kept.clear();
        }
        kept.insert(
            event.id.to_string(),
            Kept {
                generation,
                read_at: Instant::now(),
                event: event.clone(),
            },
        );
    }

    /// An event was created, changed or deleted through this store: nothing kept is used.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::domain::Action;

    fn event(id: &str) -> Event {
        Event {
            id: id.parse().unwrap(),
            bot_id: "bot".parse().unwrap(),
            name: "e".into(),
            secret_hash: [0; 32],
            previous_secret: None,
            action: Action::Screen {
                screen_id: "s".into(),
            },
            enabled: true,
            rate_limit: None,
            lane: None,
            created_at: 0,
        }
    }

    #[test]
    fn past_its_size_the_cache_starts_afresh() {
        let cache = EventCache::default();
        let generation = cache.generation();
        for i in 0..MOST_KEPT {
            cache.keep(&event(&i.to_string()), generation);
        }
        assert!(cache.get("0", generation).is_some());
        assert!(cache
            .get(&(MOST_KEPT - 1).to_string(), generation)
            .is_some());
        cache.keep(&event("one-more"), generation);
        assert!(
            cache.get("0", generation).is_none(),
            "the old ones are gone"
        );
        assert!(cache.get("one-more", generation).is_some());
        assert_eq!(cache.kept.lock().unwrap().len(), 1);
    }
}
