//! Cursor pagination.
//!
//! A cursor is the URL-safe base64 of a small JSON object: for table and index queries,
//! the key attributes of the last item returned (DynamoDB's `ExclusiveStartKey`). Cursors
//! come back from clients, so decoding validates them: the bytes must decode, the key
//! attributes must be exactly the ones of the index being queried and the partition must
//! be the one the caller is allowed to read. A forged or garbled cursor is a 400 — never a
//! 500, never a read of someone else's partition.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Longest cursor accepted; real ones are a few hundred bytes.
pub const MAX_CURSOR_LEN: usize = 1024;

/// What a list endpoint was asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    pub cursor: Option<String>,
}

impl PageRequest {
    /// From the raw `limit` and `cursor` query parameters.
    pub fn from_query(limit: Option<&str>, cursor: Option<&str>) -> Result<Self> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    Error::validation(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
                })?,
        };
        let cursor = cursor.filter(|c| !c.is_empty()).map(str::to_owned);
        if cursor.as_ref().is_some_and(|c| c.len() > MAX_CURSOR_LEN) {
            return Err(invalid_cursor());
        }
        Ok(Self { limit, cursor })
    }

    pub fn first(limit: usize) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }

    pub fn after(limit: usize, cursor: impl Into<String>) -> Self {
        Self {
            limit,
            cursor: Some(cursor.into()),
        }
    }
}

/// One page of results: `{"items":[…],"next_cursor":"…"|null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }

    pub fn empty() -> Self {
        Self {
            items: Vec::new(),
            next_cursor: None,
        }
    }
}

fn invalid_cursor() -> Error {
    Error::validation("cursor is not valid for this list")
}

/// Encodes any small serialisable position (used for the feed's merged cursor).
pub fn encode_token<T: Serialize>(position: &T) -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(serde_json::to_vec(position)?))
}

/// Decodes a position made by [`encode_token`]; anything else is a validation error.
pub fn decode_token<T: DeserializeOwned>(cursor: &str) -> Result<T> {
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(invalid_cursor());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid_cursor())?;
    serde_json::from_slice(&bytes).map_err(|_| invalid_cursor())
}

/// Which key attributes a query's `ExclusiveStartKey` has, and which one is its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyShape {
    Table,
    Gsi1,
    Gsi2,
    Gsi3,
}

impl KeyShape {
    pub fn attributes(self) -> &'static [&'static str] {
        match self {
            Self::Table => &["pk", "sk"],
            Self::Gsi1 => &["gsi1pk", "gsi1sk", "pk", "sk"],
            Self::Gsi2 => &["gsi2pk", "gsi2sk", "pk", "sk"],
            Self::Gsi3 => &["gsi3pk", "gsi3sk", "pk", "sk"],
        }
    }

    pub fn partition_attribute(self) -> &'static str {
        self.attributes()[0]
    }
}

/// Encodes a key (`LastEvaluatedKey`-shaped) as a cursor.
pub fn encode_key(key: &HashMap<String, AttributeValue>) -> Result<String> {
    let mut plain = BTreeMap::new();
    for (name, value) in key {
        let text = value
            .as_s()
            .map_err(|_| Error::invariant(format!("key attribute {name} is not a string")))?;
        plain.insert(name.as_str(), text.as_str());
    }
    encode_token(&plain)
}

/// Decodes a cursor into an `ExclusiveStartKey` for a query of `shape` on `partition`.
pub fn decode_key(
    cursor: &str,
    shape: KeyShape,
    partition: &str,
) -> Result<HashMap<String, AttributeValue>> {
    let plain: BTreeMap<String, String> = decode_token(cursor)?;
    let expected = shape.attributes();
    if plain.len() != expected.len() || !expected.iter().all(|name| plain.contains_key(*name)) {
        return Err(invalid_cursor());
    }
    if plain.get(shape.partition_attribute()).map(String::as_str) != Some(partition) {
        return Err(invalid_cursor());
    }
    if plain.values().any(|v| v.is_empty() || v.len() > 512) {
        return Err(invalid_cursor());
    }
    Ok(plain
        .into_iter()
        .map(|(name, value)| (name, AttributeValue::S(value)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(pairs: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
            .collect()
    }

    #[test]
    fn round_trips_a_table_key() {
        let original = key(&[("pk", "USER#1"), ("sk", "FOLLOWING#2")]);
        let cursor = encode_key(&original).unwrap();
        assert!(cursor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(
            decode_key(&cursor, KeyShape::Table, "USER#1").unwrap(),
            original
        );
    }

    #[test]
    fn rejects_garbled_and_foreign_cursors() {
        let cursor = encode_key(&key(&[("pk", "USER#1"), ("sk", "X")])).unwrap();
        // Someone else's partition.
        assert!(decode_key(&cursor, KeyShape::Table, "USER#2").is_err());
        // Another index's shape.
        assert!(decode_key(&cursor, KeyShape::Gsi1, "USER#1").is_err());
        for garbage in ["%%%", "bm90IGpzb24", "e30", &"A".repeat(2000)] {
            let error = decode_key(garbage, KeyShape::Table, "USER#1").unwrap_err();
            assert_eq!(error.status(), 400, "{garbage}");
        }
    }

    #[test]
    fn page_request_limits() {
        assert_eq!(
            PageRequest::from_query(None, None).unwrap().limit,
            DEFAULT_LIMIT
        );
        assert_eq!(
            PageRequest::from_query(Some("100"), None).unwrap().limit,
            100
        );
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(PageRequest::from_query(Some(bad), None).is_err(), "{bad}");
        }
        assert_eq!(
            PageRequest::from_query(None, Some("")).unwrap().cursor,
            None
        );
    }
}
