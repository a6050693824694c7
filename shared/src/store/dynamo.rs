//! Low-level DynamoDB plumbing shared by every store module: item (de)serialisation with
//! `serde_dynamo`, transactions with retry and cancellation reasons, paged queries that
//! validate cursors, and batch reads that follow `UnprocessedKeys`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use aws_sdk_dynamodb::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::keys::{IndexKey, Key};
use super::page::{decode_key, encode_key, KeyShape, Page, PageRequest};
use crate::error::{Error, Result};
use crate::retry::RetryPolicy;

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

    /// Runs a paged query described by `query` and returns at most `page.limit` items plus a
    /// cursor that is `None` exactly when there is nothing more.
    pub async fn query_page(&self, query: &Query<'_>, page: &PageRequest) -> Result<Page<Item>> {
        let mut start = match &page.cursor {
            Some(cursor) => Some(decode_key(cursor, query.shape, query.partition)?),
            None => None,
        };
        let want = page.limit + 1;
        // A `Before` read's inclusive bound comes back and is dropped: ask for it too, or
        // the page would need a second round trip.
        let bound = usize::from(matches!(
            query.sort,
            SortKey::Between {
                exclude: Some(_),
                ..
            }
        ));
        let mut items: Vec<Item> = Vec::with_capacity(want + bound);
        loop {
            let limit = (want + bound - items.len()).min(1000) as i32;
            let last = self
                .query_request(query, Some(limit), start.take(), &mut items)
                .await?;
            match last {
                Some(last) if items.len() < want => start = Some(last),
                _ => break,
            }
        }
        let next_cursor = if items.len() > page.limit {
            items.truncate(page.limit);
            match items.last() {
                Some(last) => Some(encode_key(&key_of(last, query.shape)?)?),
                None => None,
            }
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// [`Table::query_page`] with every item deserialised into a record.
    pub async fn query_page_as<T: DeserializeOwned>(
        &self,
        query: &Query<'_>,
        page: &PageRequest,
    ) -> Result<Page<T>> {
        let page = self.query_page(query, page).await?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(from_item)
                .collect::<Result<_>>()?,
            next_cursor: page.next_cursor,
        })
    }

    /// One `Query` request from `start` (`limit` overriding the query's own): appends the
    /// items the query retains to `items` and returns where the next request starts.
    async fn query_request(
        &self,
        query: &Query<'_>,
        limit: Option<i32>,
        start: Option<Item>,
        items: &mut Vec<Item>,
    ) -> Result<Option<Item>> {
        let mut request = query.builder(self).set_exclusive_start_key(start);
        if let Some(limit) = limit {
            request = request.limit(limit);
        }
        let output = request
            .send()
            .await
            .map_err(|e| Error::internal("Query", e))?;
        items.extend(
            output
                .items
                .unwrap_or_default()
                .into_iter()
                .filter(|item| query.retain(item)),
        );
        Ok(output.last_evaluated_key)
    }

    /// Every item of a query (for bounded internal reads such as "who do I follow").
    pub async fn query_all(&self, query: &Query<'_>, max_items: usize) -> Result<Vec<Item>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let last = self
                .query_request(query, None, start.take(), &mut items)
                .await?;
            if items.len() >= max_items {
                items.truncate(max_items);
                return Ok(items);
            }
            match last {
                Some(last) => start = Some(last),
                None => return Ok(items),
            }
        }
    }
}

/// Extracts the key attributes of `shape` from an item (to build a cursor).
fn key_of(item: &Item, shape: KeyShape) -> Result<Item> {
    shape
        .attributes()
        .iter()
        .map(|name| {
            item.get(*name)
                .cloned()
                .map(|value| ((*name).to_owned(), value))
                .ok_or_else(|| Error::invariant(format!("queried item has no {name}")))
        })
        .collect()
}

/// Sort-key condition of a query.
#[derive(Debug, Clone)]
pub enum SortKey<'a> {
    Any,
    BeginsWith(&'a str),
    /// Sort keys from `low` to `high` (inclusive, as `BETWEEN`), except `exclude`: the
    /// bound a cursor names (a timeline older than a post, a search after an entry).
    Between {
        low: &'a str,
        high: &'a str,
        exclude: Option<&'a str>,
    },
}

impl<'a> SortKey<'a> {
    /// Entries with `prefix` strictly before `before` (a timeline older than a post).
    pub fn before(prefix: &'a str, before: &'a str) -> Self {
        Self::Between {
            low: prefix,
            high: before,
            exclude: Some(before),
        }
    }
}

/// A query on the table or one of its indexes.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub shape: KeyShape,
    pub partition: &'a str,
    pub sort: SortKey<'a>,
    /// `false` for newest first (ids are time ordered).
    pub ascending: bool,
    /// Optional filter (applied after the key condition; pages may then need more reads).
    pub filter: Option<(&'a str, Vec<(&'a str, AttributeValue)>)>,
    /// Most items per request (DynamoDB's `Limit`); `None` for full 1 MB pages.
    pub limit: Option<i32>,
    /// Table reads are strongly consistent unless this is set (half the read units).
    pub eventually_consistent: bool,
}

impl<'a> Query<'a> {
    pub fn new(shape: KeyShape, partition: &'a str) -> Self {
        Self {
            shape,
            partition,
            sort: SortKey::Any,
            ascending: true,
            filter: None,
            limit: None,
            eventually_consistent: false,
        }
    }

    /// At most `limit` items per request.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(i32::try_from(limit).unwrap_or(i32::MAX).max(1));
        self
    }

    /// An eventually consistent read of the table (index reads always are).
    pub fn eventually_consistent(mut self) -> Self {
        self.eventually_consistent = true;
        self
    }

    pub fn begins_with(mut self, prefix: &'a str) -> Self {
        self.sort = SortKey::BeginsWith(prefix);
        self
    }

    pub fn newest_first(mut self) -> Self {
        self.ascending = false;
        self
    }

    /// Whether a returned item belongs to the result (see [`SortKey::Between`]).
    fn retain(&self, item: &Item) -> bool {
        match self.sort {
            SortKey::Between {
                exclude: Some(excluded),
                ..
            } => {
                let sk_name = self.shape.attributes()[1];
                item.get(sk_name)
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    != Some(excluded)
            }
            _ => true,
        }
    }

    fn builder(
        &self,
        table: &Table,
    ) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
        let (pk_name, sk_name, index) = match self.shape {
            KeyShape::Table => ("pk", "sk", None),
            KeyShape::Gsi1 => ("gsi1pk", "gsi1sk", Some(super::keys::GSI1)),
            KeyShape::Gsi2 => ("gsi2pk", "gsi2sk", Some(super::keys::GSI2)),
            KeyShape::Gsi3 => ("gsi3pk", "gsi3sk", Some(super::keys::GSI3)),
        };
        let mut builder = table
            .client
            .query()
            .table_name(&table.name)
            .set_index_name(index.map(str::to_owned))
            .scan_index_forward(self.ascending)
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", s(self.partition));
        // Index reads are eventually consistent on AWS; table reads need not be.
        if index.is_none() && !self.eventually_consistent {
            builder = builder.consistent_read(true);
        }
        if let Some(limit) = self.limit {
            builder = builder.limit(limit);
        }
        builder = match &self.sort {
            SortKey::Any => builder.key_condition_expression("#pk = :pk"),
            SortKey::BeginsWith(prefix) => builder
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":prefix", s(*prefix)),
            SortKey::Between { low, high, .. } => builder
                // BETWEEN is inclusive; `retain` drops the excluded bound (a key attribute
                // cannot appear in a filter expression).
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :low AND :high")
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":low", s(*low))
                .expression_attribute_values(":high", s(*high)),
        };
        if let Some((expression, values)) = &self.filter {
            builder = builder.filter_expression(*expression);
            for (name, value) in values {
                builder = builder.expression_attribute_values(*name, value.clone());
            }
        }
        builder
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
