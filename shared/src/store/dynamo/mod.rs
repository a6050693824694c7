//! Low-level DynamoDB plumbing shared by every store module: item (de)serialisation with
//! `serde_dynamo`, single-item reads and conditional writes, batch reads and writes that
//! follow `UnprocessedKeys`, and (`query`) paged queries that validate cursors.
//! Transactions are `store::transaction`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::{IndexKey, Key};
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

mod query;

pub use query::{Query, SortKey};

pub type Item = HashMap<String, AttributeValue>;

/// Most keys one `BatchGetItem` may hold.
pub const MAX_BATCH_GET: usize = 100;
/// Most requests one `BatchWriteItem` may hold.
pub const MAX_BATCH_WRITE: usize = 25;

pub(super) const MAX_ATTEMPTS: u32 = 8;

/// Transaction conflicts and unprocessed batch items: the push tier's one backoff
/// (`crate::retry`), 20 ms doubling to a 1.3 s cap, full jitter.
const STORE_RETRY: RetryPolicy = RetryPolicy {
    attempts: MAX_ATTEMPTS,
    base_delay: Duration::from_millis(20),
    max_delay: Duration::from_millis(1280),
};

/// Read consistency of a batch read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before the read (two read units per 4 KB).
    Strong,
    /// May miss writes of the last second or so (one read unit per 8 KB): what fan-out
    /// reads use, since a connection that opened a moment ago resumes anyway.
    Eventual,
}

/// The table client every store module works through.
#[derive(Debug, Clone)]
pub struct Table {
    pub client: Client,
    pub name: String,
}

/// Serialises a record into an item and adds its primary key.
pub fn to_item<T: Serialize>(key: &Key, record: &T) -> Result<Item> {
    let mut item: Item = serde_dynamo::to_item(record)?;
    item.insert("pk".into(), AttributeValue::S(key.pk.clone()));
    item.insert("sk".into(), AttributeValue::S(key.sk.clone()));
    Ok(item)
}

/// Adds a GSI 1 entry to an item.
pub fn with_gsi1(mut item: Item, entry: &IndexKey) -> Item {
    item.insert("gsi1pk".into(), AttributeValue::S(entry.pk.clone()));
    item.insert("gsi1sk".into(), AttributeValue::S(entry.sk.clone()));
    item
}

/// Adds a GSI 3 (keys-only follower) entry to an item.
pub fn with_gsi3(mut item: Item, entry: &IndexKey) -> Item {
    item.insert("gsi3pk".into(), AttributeValue::S(entry.pk.clone()));
    item.insert("gsi3sk".into(), AttributeValue::S(entry.sk.clone()));
    item
}

/// Adds a GSI 2 entry to an item.
pub fn with_gsi2(mut item: Item, entry: &IndexKey) -> Item {
    item.insert("gsi2pk".into(), AttributeValue::S(entry.pk.clone()));
    item.insert("gsi2sk".into(), AttributeValue::S(entry.sk.clone()));
    item
}

/// Deserialises an item into a record (key attributes are ignored by the record type).
pub fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    Ok(serde_dynamo::from_item(item)?)
}

pub fn key_map(key: &Key) -> Item {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(key.pk.clone())),
        ("sk".to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The table key (`pk`, `sk`) of a stored item, e.g. one returned by a query.
pub fn item_key(item: &Item) -> Result<Key> {
    let attribute = |name: &str| {
        item.get(name)
            .and_then(|value| value.as_s().ok())
            .cloned()
            .ok_or_else(|| Error::invariant(format!("stored item without {name}")))
    };
    Ok(Key {
        pk: attribute("pk")?,
        sk: attribute("sk")?,
    })
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Reads a numeric attribute; missing means zero (counters start absent).
pub fn number_attribute(item: &Item, name: &str) -> Result<i64> {
    match item.get(name) {
        None => Ok(0),
        Some(AttributeValue::N(raw)) => raw
            .parse()
            .map_err(|e| Error::internal(format!("attribute {name} is not an integer"), e)),
        Some(_) => Err(Error::invariant(format!(
            "attribute {name} is not a number"
        ))),
    }
}

impl Table {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    pub async fn get(&self, key: &Key) -> Result<Option<Item>> {
        let output = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::internal("GetItem", e))?;
        Ok(output.item)
    }

    pub async fn get_as<T: DeserializeOwned>(&self, key: &Key) -> Result<Option<T>> {
        self.get(key).await?.map(from_item).transpose()
    }

    pub async fn put(&self, item: Item) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| Error::internal("PutItem", e))?;
        Ok(())
    }

    pub async fn delete(&self, key: &Key) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key_map(key)))
            .send()
            .await
            .map_err(|e| Error::internal("DeleteItem", e))?;
        Ok(())
    }

    /// One conditional `UpdateItem`: `Ok(true)` when it was applied, `Ok(false)` when
    /// `condition` did not hold (then nothing was written). Any other failure is an error.
    /// `names` and `values` are the expression's `#name` and `:value` placeholders.
    pub async fn update_if(
        &self,
        key: &Key,
        expression: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool> {
        let updated = self
            .conditional_update(key, expression, condition, names, values, ReturnValue::None)
            .await?;
        Ok(updated.is_some())
    }

    /// [`Table::update_if`] that returns the item as it is after the update (`None` when
    /// `condition` did not hold).
    pub async fn update_returning(
        &self,
        key: &Key,
        expression: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Option<Item>> {
        self.conditional_update(key, expression, condition, &[], values, ReturnValue::AllNew)
            .await
    }

    /// One conditional `UpdateItem`: `Some` (the attributes `returning` asks for) when it was
    /// applied, `None` when `condition` did not hold.
    async fn conditional_update(
        &self,
        key: &Key,
        expression: &str,
        condition: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        returning: ReturnValue,
    ) -> Result<Option<Item>> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key_map(key)))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(names_map(names))
            .set_expression_attribute_values(values_map(values))
            .return_values(returning)
            .send()
            .await;
        match updated {
            Ok(output) => Ok(Some(output.attributes.unwrap_or_default())),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(error) => Err(Error::internal("UpdateItem", error)),
        }
    }

    /// Reads many items by key, in chunks of 100, following `UnprocessedKeys`.
    /// Missing items are simply absent from the result; order is not preserved.
    pub async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>> {
        self.batch_get_with(keys, Consistency::Strong).await
    }

    /// [`Table::batch_get`] with the given read consistency. Duplicate keys are read once
    /// (a hash set: fan-out passes tens of thousands of keys).
    pub async fn batch_get_with(
        &self,
        keys: &[Key],
        consistency: Consistency,
    ) -> Result<Vec<Item>> {
        let mut found = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashSet::with_capacity(keys.len());
        let unique: Vec<&Key> = keys.iter().filter(|key| seen.insert(*key)).collect();
        for chunk in unique.chunks(MAX_BATCH_GET) {
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|k| key_map(k)).collect()))
                .consistent_read(consistency == Consistency::Strong)
                .build()
                .map_err(|e| Error::internal("building BatchGetItem", e))?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.name, request)
                    .send()
                    .await
                    .map_err(|e| Error::internal("BatchGetItem", e))?;
                if let Some(mut responses) = output.responses {
                    found.extend(responses.remove(&self.name).unwrap_or_default());
                }
                match output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.name))
                    .filter(|k| !k.keys().is_empty())
                {
                    Some(rest) if attempt < MAX_ATTEMPTS => {
                        request = rest;
                        backoff(attempt).await;
                    }
                    Some(_) => {
                        return Err(Error::invariant(
                            "BatchGetItem kept returning unprocessed keys",
                        ))
                    }
                    None => break,
                }
            }
        }
        Ok(found)
    }

    /// Reads many records by key (see [`Table::batch_get`]) and indexes them by `id_of`;
    /// missing ones are simply absent.
    pub async fn batch_get_map<T, K>(
        &self,
        keys: &[Key],
        id_of: impl Fn(&T) -> K,
    ) -> Result<HashMap<K, T>>
    where
        T: DeserializeOwned,
        K: std::hash::Hash + Eq,
    {
        self.batch_get(keys)
            .await?
            .into_iter()
            .map(|item| from_item::<T>(item).map(|record| (id_of(&record), record)))
            .collect()
    }

    /// Puts many items, 25 per request, following `UnprocessedItems` (bulk loads: seeding
    /// and migrations; no conditions, so never for items an invariant depends on).
    pub async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        let requests = items
            .into_iter()
            .map(|item| {
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|put| WriteRequest::builder().put_request(put).build())
                    .map_err(|e| Error::internal("building PutRequest", e))
            })
            .collect::<Result<Vec<_>>>()?;
        for chunk in requests.chunks(MAX_BATCH_WRITE) {
            self.batch_write(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// One `BatchWriteItem` of at most 25 requests, re-sending unprocessed ones with backoff.
    async fn batch_write(
        &self,
        mut requests: Vec<aws_sdk_dynamodb::types::WriteRequest>,
    ) -> Result<()> {
        let mut attempt = 0;
        while !requests.is_empty() {
            attempt += 1;
            let output = self
                .client
                .batch_write_item()
                .request_items(&self.name, requests)
                .send()
                .await
                .map_err(|e| Error::internal("BatchWriteItem", e))?;
            requests = output
                .unprocessed_items
                .and_then(|mut u| u.remove(&self.name))
                .unwrap_or_default();
            if !requests.is_empty() {
                if attempt >= MAX_ATTEMPTS {
                    return Err(Error::invariant(
                        "BatchWriteItem kept returning unprocessed items",
                    ));
                }
                backoff(attempt).await;
            }
        }
        Ok(())
    }

    /// Deletes many items, 25 per request, following `UnprocessedItems`.
    pub async fn batch_delete(&self, keys: &[Key]) -> Result<()> {
        use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
        for chunk in keys.chunks(MAX_BATCH_WRITE) {
            let requests = chunk
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key_map(key)))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| Error::internal("building DeleteRequest", e))
                })
                .collect::<Result<Vec<_>>>()?;
            self.batch_write(requests).await?;
        }
        Ok(())
    }
}

pub(super) async fn backoff(attempt: u32) {
    tokio::time::sleep(STORE_RETRY.delay(attempt)).await;
}

/// The `#name` placeholders of an expression (`None` when there are none).
pub(crate) fn names_map(names: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    (!names.is_empty()).then(|| {
        names
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    })
}

/// The `:value` placeholders of an expression (`None` when there are none).
pub(crate) fn values_map(values: Vec<(&str, AttributeValue)>) -> Option<Item> {
    (!values.is_empty()).then(|| values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}
