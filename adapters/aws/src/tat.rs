//! One number of shared timing state in a DynamoDB item — a "theoretical arrival time"
//! (`tat`, microseconds) — read strongly consistent and written on condition that it is
//! still the value read (optimistic concurrency). The event rate limits ([`crate::throttle`])
//! and the bots' send budgets ([`crate::budget`]) both keep theirs this way.

use crate::{get_n, n, store_error, Aws, Item};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use herald_core::StoreError;

/// Attempts at the conditional write before a caller gives up as contended.
pub(crate) const ATTEMPTS: u32 = 5;

impl Aws {
    /// The `tat` of the item at `key` in `table` (None: no such item yet).
    pub(crate) async fn read_tat(
        &self,
        table: &str,
        key: &Item,
    ) -> Result<Option<i64>, StoreError> {
        let found = self
            .dynamodb
            .get_item()
            .table_name(table)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        Ok(found.item.as_ref().map(|item| get_n(item, "tat")))
    }

    /// Write `tat` (and `expires_at` when given, Unix seconds) to the item at `key`, on
    /// condition that it still holds `old`: false when another writer came first.
    pub(crate) async fn write_tat(
        &self,
        table: &str,
        key: &Item,
        (old, tat): (Option<i64>, i64),
        expires_at: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut item = key.clone();
        item.insert("tat".into(), n(tat));
        if let Some(at) = expires_at {
            item.insert("expires_at".into(), n(at));
        }
        let put = self
            .dynamodb
            .put_item()
            .table_name(table)
            .set_item(Some(item));
        let put = match old {
            Some(old) => put
                .condition_expression("tat = :old")
                .expression_attribute_values(":old", n(old)),
            None => put.condition_expression("attribute_not_exists(pk)"),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(PutItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error(e)),
        }
    }
}
