//! `TransactWriteItems`: the item builders ([`tx`]), a [`Transaction`] that hands out a
//! handle per item it holds, and the failure that says, by those handles, which conditions
//! failed (`failure.failed(&block_check)`), so no caller counts item positions.

use std::ops::Range;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
};

use super::dynamo::{backoff, key_map, names_map, values_map, Item, Table, MAX_ATTEMPTS};
use super::keys::Key;
use crate::error::{Error, Result};

/// Most items one `TransactWriteItems` may hold.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Builders for the items of a `TransactWriteItems` call.
pub mod tx {
    use super::*;

    pub fn put(table: &str, item: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|e| Error::internal("building transaction put", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A put that fails (and cancels the transaction) if the item already exists.
    pub fn put_new(table: &str, item: Item) -> Result<TransactWriteItem> {
        put(table, item, Some("attribute_not_exists(pk)"))
    }

    pub fn update(
        table: &str,
        key: &Key,
        expression: &str,
        condition: Option<&str>,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem> {
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(key_map(key)))
            .update_expression(expression)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(names_map(names))
            .set_expression_attribute_values(values_map(values))
            .build()
            .map_err(|e| Error::internal("building transaction update", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    pub fn delete(table: &str, key: &Key, condition: Option<&str>) -> Result<TransactWriteItem> {
        delete_item(table, key, condition, vec![])
    }

    /// A delete on a condition that needs expression values (e.g. `author_id = :caller`).
    pub fn delete_where(
        table: &str,
        key: &Key,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem> {
        delete_item(table, key, Some(condition), values)
    }

    fn delete_item(
        table: &str,
        key: &Key,
        condition: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(table)
            .set_key(Some(key_map(key)))
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_values(values_map(values))
            .build()
            .map_err(|e| Error::internal("building transaction delete", e))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    pub fn condition_check(
        table: &str,
        key: &Key,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem> {
        let check = ConditionCheck::builder()
            .table_name(table)
            .set_key(Some(key_map(key)))
            .condition_expression(condition)
            .set_expression_attribute_values(values_map(values))
            .build()
            .map_err(|e| Error::internal("building transaction condition check", e))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }
}

/// One item of a [`Transaction`], as [`Transaction::add`] returned it: what a caller asks a
/// [`TransactFailure`] about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxItem(usize);

/// Consecutive items of a [`Transaction`] ([`Transaction::add_all`]): "did any of these
/// fail".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxItems(Range<usize>);

impl From<TxItem> for TxItems {
    fn from(item: TxItem) -> Self {
        Self(item.0..item.0 + 1)
    }
}

/// What [`TransactFailure::failed`] can be asked about: one item or several.
pub trait TxItemSet {
    fn positions(&self) -> Range<usize>;
}

impl TxItemSet for TxItem {
    fn positions(&self) -> Range<usize> {
        self.0..self.0 + 1
    }
}

impl TxItemSet for TxItems {
    fn positions(&self) -> Range<usize> {
        self.0.clone()
    }
}

impl TxItemSet for Option<TxItem> {
    fn positions(&self) -> Range<usize> {
        self.as_ref().map_or(0..0, TxItemSet::positions)
    }
}

/// The items of one `TransactWriteItems` call, each added with a handle that names it in a
/// [`TransactFailure`].
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    items: Vec<TransactWriteItem>,
}

impl Transaction {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item; the handle tells whether its condition failed.
    pub fn add(&mut self, item: TransactWriteItem) -> TxItem {
        self.items.push(item);
        TxItem(self.items.len() - 1)
    }

    /// Adds items whose conditions the caller tells apart only as a group.
    pub fn add_all(&mut self, items: impl IntoIterator<Item = TransactWriteItem>) -> TxItems {
        let start = self.items.len();
        self.items.extend(items);
        TxItems(start..self.items.len())
    }

    /// Every item added so far.
    pub fn added(&self) -> TxItems {
        TxItems(0..self.items.len())
    }
}

/// A transaction whose failed conditions the caller does not tell apart.
impl From<Vec<TransactWriteItem>> for Transaction {
    fn from(items: Vec<TransactWriteItem>) -> Self {
        Self { items }
    }
}

/// Which items' conditions failed, readable only through their handles.
#[derive(Debug)]
pub struct FailedItems(Vec<bool>);

/// Why a transaction did not commit.
#[derive(Debug)]
pub enum TransactFailure {
    /// One or more conditions failed: [`TransactFailure::failed`] says which.
    ConditionFailed { failed: FailedItems },
    /// Anything else (already retried where retrying helps).
    Other(Error),
}

impl TransactFailure {
    /// Whether the condition of `items` (any of them, for several) was one that failed.
    pub fn failed(&self, items: &impl TxItemSet) -> bool {
        match self {
            Self::ConditionFailed { failed } => items
                .positions()
                .any(|i| failed.0.get(i).copied().unwrap_or(false)),
            Self::Other(_) => false,
        }
    }

    /// Turns any failure into an [`Error`], using `on_condition` for failed conditions.
    pub fn into_error(self, on_condition: impl FnOnce() -> Error) -> Error {
        match self {
            Self::ConditionFailed { .. } => on_condition(),
            Self::Other(error) => error,
        }
    }
}

/// What one failed `TransactWriteItems` attempt means: a final failure, or `None` to retry.
fn classify(error: SdkError<TransactWriteItemsError>, last: bool) -> Option<TransactFailure> {
    let retryable = match &error {
        SdkError::ServiceError(service) => match service.err() {
            TransactWriteItemsError::TransactionCanceledException(cancel) => {
                let failed: Vec<bool> = cancel
                    .cancellation_reasons()
                    .iter()
                    .map(|reason| reason.code() == Some("ConditionalCheckFailed"))
                    .collect();
                if failed.contains(&true) {
                    return Some(TransactFailure::ConditionFailed {
                        failed: FailedItems(failed),
                    });
                }
                // TransactionConflict, ThrottlingError, ProvisionedThroughputExceeded…
                true
            }
            TransactWriteItemsError::TransactionInProgressException(_)
            | TransactWriteItemsError::ProvisionedThroughputExceededException(_)
            | TransactWriteItemsError::RequestLimitExceeded(_)
            | TransactWriteItemsError::InternalServerError(_) => true,
            _ => false,
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        _ => false,
    };
    (!retryable || last)
        .then(|| TransactFailure::Other(Error::internal("TransactWriteItems", error)))
}

impl Table {
    /// Runs a transaction, retrying conflicts and throttling with jittered backoff.
    /// A failed condition is reported for every item whose condition failed, so callers
    /// can tell "already liked" from "post deleted" by the items' handles.
    pub async fn transact(
        &self,
        transaction: impl Into<Transaction>,
    ) -> Result<(), TransactFailure> {
        let items = transaction.into().items;
        if items.is_empty() {
            return Ok(());
        }
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(TransactFailure::Other(Error::invariant(format!(
                "transaction of {} items exceeds {MAX_TRANSACTION_ITEMS}",
                items.len()
            ))));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(error) => {
                    if let Some(failure) = classify(error, attempt >= MAX_ATTEMPTS) {
                        return Err(failure);
                    }
                }
            }
            backoff(attempt).await;
        }
    }

    /// Transaction where any failed condition means `on_condition`.
    pub async fn transact_or(
        &self,
        transaction: impl Into<Transaction>,
        on_condition: impl FnOnce() -> Error,
    ) -> Result<()> {
        self.transact(transaction)
            .await
            .map_err(|failure| failure.into_error(on_condition))
    }
}
