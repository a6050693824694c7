//! Queries: the [`Query`] description, and paged or bounded reads of it.

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::de::DeserializeOwned;

use super::{from_item, s, Item, Table};
use crate::error::{Error, Result};
use crate::store::keys::{GSI1, GSI2, GSI3};
use crate::store::page::{decode_key, encode_key, KeyShape, Page, PageRequest};

impl Table {
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

    fn builder(&self, table: &Table) -> QueryFluentBuilder {
        let (pk_name, sk_name, index) = match self.shape {
            KeyShape::Table => ("pk", "sk", None),
            KeyShape::Gsi1 => ("gsi1pk", "gsi1sk", Some(GSI1)),
            KeyShape::Gsi2 => ("gsi2pk", "gsi2sk", Some(GSI2)),
            KeyShape::Gsi3 => ("gsi3pk", "gsi3sk", Some(GSI3)),
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
