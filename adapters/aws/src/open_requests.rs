//! A bot's open bulk requests in DynamoDB: the [`OpenRequests`] port.
//!
//! One item per open bulk request in the requests table, under its bot's partition
//! (`pk` = `open#{bot}`, `sk` = the request id, so a query reads them in the order they
//! were accepted), written with the request's expansion cursors when it is recorded
//! ([`crate::intake`]) and expiring with it (TTL). Reading the work ahead of a request is
//! one query of the ids before it and one `BatchGetItem` of their counters; the requests
//! found final are deleted from the list then.

use crate::requests::REQUEST_SK;
use crate::{get_n, get_s, s, store_error, Aws, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use herald_core::domain::RequestState;
use herald_core::ids::{BotId, RequestId};
use herald_core::ports::{OpenRequest, OpenRequests};
use herald_core::StoreError;
use std::collections::HashMap;

impl Aws {
    /// The key of `request`'s place on `bot`'s list.
    pub(crate) fn open_key(&self, bot: &BotId, request: &RequestId) -> Item {
        HashMap::from([
            ("pk".to_string(), s(format!("open#{bot}"))),
            ("sk".to_string(), s(request.as_str())),
        ])
    }
}

#[async_trait]
impl OpenRequests for Aws {
    async fn open_before(
        &self,
        bot: &BotId,
        before: &RequestId,
        limit: usize,
    ) -> Result<Vec<OpenRequest>, StoreError> {
        let listed = self
            .dynamodb
            .query()
            .table_name(&self.settings.requests_table)
            .key_condition_expression("pk = :pk AND sk < :before")
            .expression_attribute_values(":pk", s(format!("open#{bot}")))
            .expression_attribute_values(":before", s(before.as_str()))
            .limit(limit.clamp(1, 100) as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        let ids: Vec<String> = listed
            .items()
            .iter()
            .map(|item| get_s(item, "sk").to_string())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ids
            .iter()
            .map(|id| self.request_key(id, REQUEST_SK))
            .collect();
        let found = self
            .batch_get_named(
                &self.settings.requests_table,
                keys,
                "pk, #state, targeted, expansions_pending, delivered, not_found, failed, cancelled, #record.send_at",
                &[("#state", "state"), ("#record", "record")],
            )
            .await?;
        let by_id: HashMap<&str, &Item> = found.iter().map(|i| (get_s(i, "pk"), i)).collect();
        ids.iter()
            .map(|id| {
                let request_id = RequestId::parse(id.clone()).map_err(|e| {
                    StoreError::corrupt(format!("open bulk request of bot {bot}"), e)
                })?;
                Ok(match by_id.get(id.as_str()) {
                    None => OpenRequest {
                        request_id,
                        state: None,
                        targeted: 0,
                        finished: 0,
                        expansions_pending: 0,
                        send_at: None,
                    },
                    Some(item) => OpenRequest {
                        request_id,
                        state: Some(RequestState::from_name(get_s(item, "state"))),
                        targeted: get_n(item, "targeted").max(0) as u64,
                        finished: ["delivered", "not_found", "failed", "cancelled"]
                            .iter()
                            .map(|c| get_n(item, c).max(0) as u64)
                            .sum(),
                        expansions_pending: get_n(item, "expansions_pending").max(0) as u32,
                        send_at: item
                            .get("record")
                            .and_then(|r| r.as_m().ok())
                            .and_then(|r| r.get("send_at"))
                            .and_then(|at| at.as_n().ok())
                            .and_then(|at| at.parse().ok()),
                    },
                })
            })
            .collect()
    }

    async fn close(&self, bot: &BotId, requests: &[RequestId]) -> Result<(), StoreError> {
        for chunk in requests.chunks(25) {
            let deletes: Vec<WriteRequest> = chunk
                .iter()
                .map(|id| {
                    DeleteRequest::builder()
                        .set_key(Some(self.open_key(bot, id)))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(StoreError::new)
                })
                .collect::<Result<_, _>>()?;
            // Best effort: a place left over is found final again next time.
            self.dynamodb
                .batch_write_item()
                .request_items(&self.settings.requests_table, deletes)
                .send()
                .await
                .map_err(store_error)?;
        }
        Ok(())
    }
}
