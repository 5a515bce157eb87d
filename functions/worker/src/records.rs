//! A request log that reads each request's record once per invocation.
//!
//! A batch of up to ten messages often holds several jobs of one request; each job needs
//! the request's record, which carries its `data` (up to 256 KiB, stored once: the claim
//! check). [`OncePerBatch`] wraps the real log for one invocation and keeps the records it
//! has read of accepted requests; everything else goes straight through.

use async_trait::async_trait;
use herald_core::domain::{Outcome, RequestRecord, RequestState};
use herald_core::ids::{EventId, RequestId};
use herald_core::ports::{Expansion, RequestLog, RequestProgress};
use herald_core::StoreError;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

pub struct OncePerBatch {
    inner: Arc<dyn RequestLog>,
    records: Mutex<HashMap<RequestId, RequestRecord>>,
}

impl OncePerBatch {
    pub fn new(inner: Arc<dyn RequestLog>) -> Self {
        OncePerBatch {
            inner,
            records: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RequestLog for OncePerBatch {
    async fn record(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<(RequestRecord, RequestState)>, StoreError> {
        if let Some(record) = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(request_id)
        {
            return Ok(Some((record.clone(), RequestState::Accepted)));
        }
        let found = self.inner.record(request_id).await?;
        // Only an accepted request's record is final; other states may still change.
        if let Some((record, RequestState::Accepted)) = &found {
            self.records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(request_id.clone(), record.clone());
        }
        Ok(found)
    }

    async fn progress(
        &self,
        request_id: &RequestId,
    ) -> Result<Option<RequestProgress>, StoreError> {
        self.inner.progress(request_id).await
    }

    async fn event_of(&self, request_id: &RequestId) -> Result<Option<EventId>, StoreError> {
        self.inner.event_of(request_id).await
    }

    async fn finished(
        &self,
        request_id: &RequestId,
        user_keys: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        self.inner.finished(request_id, user_keys).await
    }

    async fn record_outcomes(
        &self,
        request_id: &RequestId,
        outcomes: &[(String, Outcome)],
    ) -> Result<(), StoreError> {
        self.inner.record_outcomes(request_id, outcomes).await
    }

    async fn expansion(&self, request_id: &RequestId, shard: u32) -> Result<Expansion, StoreError> {
        self.inner.expansion(request_id, shard).await
    }

    async fn advance_expansion(
        &self,
        request_id: &RequestId,
        shard: u32,
        from: Option<&str>,
        to: Option<&str>,
        added: u64,
    ) -> Result<bool, StoreError> {
        self.inner
            .advance_expansion(request_id, shard, from, to, added)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::domain::{Action, Audience};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Counts record reads; answers `state` for every request.
    struct Counting {
        reads: AtomicU32,
        state: Mutex<RequestState>,
    }

    fn record(id: &RequestId) -> RequestRecord {
        RequestRecord {
            id: id.clone(),
            event_id: "e".parse().unwrap(),
            event_name: "n".into(),
            bot_id: "b".parse().unwrap(),
            action: Action::Screen {
                screen_id: "s".into(),
            },
            data: Default::default(),
            audience: Audience::Bm { count: 1 },
            lane: Default::default(),
            created_at: 0,
            send_at: None,
        }
    }

    #[async_trait]
    impl RequestLog for Counting {
        async fn record(
            &self,
            request_id: &RequestId,
        ) -> Result<Option<(RequestRecord, RequestState)>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Ok(Some((record(request_id), *self.state.lock().unwrap())))
        }
        async fn progress(&self, _: &RequestId) -> Result<Option<RequestProgress>, StoreError> {
            unimplemented!()
        }
        async fn event_of(&self, _: &RequestId) -> Result<Option<EventId>, StoreError> {
            unimplemented!()
        }
        async fn finished(
            &self,
            _: &RequestId,
            _: &[String],
        ) -> Result<HashSet<String>, StoreError> {
            unimplemented!()
        }
        async fn record_outcomes(
            &self,
            _: &RequestId,
            _: &[(String, Outcome)],
        ) -> Result<(), StoreError> {
            unimplemented!()
        }
        async fn expansion(&self, _: &RequestId, _: u32) -> Result<Expansion, StoreError> {
            unimplemented!()
        }
        async fn advance_expansion(
            &self,
            _: &RequestId,
            _: u32,
            _: Option<&str>,
            _: Option<&str>,
            _: u64,
        ) -> Result<bool, StoreError> {
            unimplemented!()
        }
    }

    #[tokio::test]
    async fn an_accepted_record_is_read_once_and_others_every_time() {
        let inner = Arc::new(Counting {
            reads: AtomicU32::new(0),
            state: Mutex::new(RequestState::Accepting),
        });
        let cache = OncePerBatch::new(inner.clone());
        let r: RequestId = "r".parse().unwrap();
        cache.record(&r).await.unwrap();
        cache.record(&r).await.unwrap();
        assert_eq!(
            inner.reads.load(Ordering::SeqCst),
            2,
            "accepting: not cached"
        );
        *inner.state.lock().unwrap() = RequestState::Accepted;
        for _ in 0..3 {
            let (found, state) = cache.record(&r).await.unwrap().unwrap();
            assert_eq!((found.id.as_str(), state), ("r", RequestState::Accepted));
        }
        assert_eq!(inner.reads.load(Ordering::SeqCst), 3, "accepted: read once");
        cache.record(&"other".parse().unwrap()).await.unwrap();
        assert_eq!(inner.reads.load(Ordering::SeqCst), 4);
    }
}
