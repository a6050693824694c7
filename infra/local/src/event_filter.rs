//! Lambda event filtering (`FilterCriteria` of an event-source mapping), as the stream
//! poller applies it: a record is delivered when it matches at least one filter pattern;
//! records that match none are dropped before batches are formed (and a batch of only
//! dropped records never invokes).
//!
//! A pattern is a JSON object matched against the record as Lambda delivers it (for a
//! DynamoDB stream: `eventName`, `dynamodb.Keys/NewImage/OldImage`…). Every field of the
//! pattern must match (AND); a leaf is a list of rules of which one must match (OR); a
//! record value that is a list matches when one of its elements does. Rules supported
//! (the subset of the Lambda / EventBridge syntax a Ripple template may use):
//!
//! | rule | matches |
//! |---|---|
//! | `"text"`, `5`, `true`, `null` | that exact value |
//! | `{"exists": true}` / `{"exists": false}` | the leaf is present / absent |
//! | `{"prefix": "P"}`, `{"suffix": "S"}` | a string starting / ending with it |
//! | `{"equals-ignore-case": "T"}` | a string equal to it, ignoring ASCII case |
//! | `{"anything-but": [values…]}` (or one value) | a present value that is none of them |
//! | `{"numeric": [">", 0, "<=", 5]}` | a number within every bound |
//!
//! Anything else is rejected when the template is read, as Lambda rejects it when the
//! mapping is created. Limits are Lambda's: at most [`MAX_FILTERS`] patterns (the default
//! quota), each at most [`MAX_PATTERN_CHARS`] characters.

use serde_json::{Map, Value};

/// Filters per event-source mapping (Lambda's default quota; 10 on request).
pub const MAX_FILTERS: usize = 5;

/// Longest `Pattern` string Lambda accepts.
pub const MAX_PATTERN_CHARS: usize = 4096;

/// A filter pattern Lambda would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FilterCriteria: {0}")]
pub struct FilterError(String);

fn invalid(message: impl Into<String>) -> FilterError {
    FilterError(message.into())
}

/// The `FilterCriteria.Filters` of a mapping: a record passes when any pattern matches.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterCriteria {
    patterns: Vec<Node>,
    sources: Vec<String>,
}

impl FilterCriteria {
    /// Parses the `Pattern` strings of `Filters`.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<Self, FilterError> {
        if patterns.is_empty() {
            return Err(invalid("Filters must list at least one pattern"));
        }
        if patterns.len() > MAX_FILTERS {
            return Err(invalid(format!(
                "{} filters; a mapping allows at most {MAX_FILTERS}",
                patterns.len()
            )));
        }
        let parsed = patterns
            .iter()
            .map(|text| parse_pattern(text.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            patterns: parsed,
            sources: patterns.iter().map(|p| p.as_ref().to_owned()).collect(),
        })
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.sources
    }

    /// True when the record matches at least one pattern.
    pub fn matches(&self, record: &Value) -> bool {
        self.patterns
            .iter()
            .any(|pattern| pattern.matches(Some(record)))
    }
}

/// A parsed pattern: fields to descend into, or the rules of a leaf.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Fields(Vec<(String, Node)>),
    Rules(Vec<Rule>),
}

#[derive(Debug, Clone, PartialEq)]
enum Rule {
    Equals(Value),
    Exists(bool),
    Prefix(String),
    Suffix(String),
    EqualsIgnoreCase(String),
    AnythingBut(Vec<Value>),
    Numeric(Vec<(Comparison, f64)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Comparison {
    Less,
    LessOrEqual,
    Equal,
    GreaterOrEqual,
    Greater,
}

fn parse_pattern(text: &str) -> Result<Node, FilterError> {
    if text.chars().count() > MAX_PATTERN_CHARS {
        return Err(invalid(format!(
            "a pattern is longer than {MAX_PATTERN_CHARS} characters"
        )));
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|error| invalid(format!("pattern `{text}` is not JSON: {error}")))?;
    match value {
        Value::Object(fields) if !fields.is_empty() => parse_fields(&fields, ""),
        _ => Err(invalid(format!(
            "pattern `{text}` must be a non-empty JSON object"
        ))),
    }
}

fn parse_fields(fields: &Map<String, Value>, path: &str) -> Result<Node, FilterError> {
    let mut parsed = Vec::with_capacity(fields.len());
    for (name, value) in fields {
        let here = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let node = match value {
            Value::Object(inner) if !inner.is_empty() => parse_fields(inner, &here)?,
            Value::Array(rules) if !rules.is_empty() => Node::Rules(
                rules
                    .iter()
                    .map(|rule| parse_rule(rule, &here))
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(invalid(format!(
                    "`{here}` must be an object or a non-empty list of rules, got {other}"
                )))
            }
        };
        parsed.push((name.clone(), node));
    }
    Ok(Node::Fields(parsed))
}

fn parse_rule(rule: &Value, path: &str) -> Result<Rule, FilterError> {
    let Value::Object(operator) = rule else {
        return Ok(Rule::Equals(rule.clone()));
    };
    let [(name, argument)] = operator.iter().collect::<Vec<_>>()[..] else {
        return Err(invalid(format!(
            "`{path}`: a rule object has exactly one operator, got {rule}"
        )));
    };
    let text = |argument: &Value| {
        argument
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("`{path}`: `{name}` takes a string, got {argument}")))
    };
    match name.as_str() {
        "exists" => argument
            .as_bool()
            .map(Rule::Exists)
            .ok_or_else(|| invalid(format!("`{path}`: `exists` takes true or false"))),
        "prefix" => Ok(Rule::Prefix(text(argument)?)),
        "suffix" => Ok(Rule::Suffix(text(argument)?)),
        "equals-ignore-case" => Ok(Rule::EqualsIgnoreCase(text(argument)?)),
        "anything-but" => match argument {
            Value::Array(values) if values.iter().all(is_scalar) && !values.is_empty() => {
                Ok(Rule::AnythingBut(values.clone()))
            }
            value if is_scalar(value) => Ok(Rule::AnythingBut(vec![value.clone()])),
            _ => Err(invalid(format!(
                "`{path}`: `anything-but` takes a value or a list of values"
            ))),
        },
        "numeric" => parse_numeric(argument, path).map(Rule::Numeric),
        other => Err(invalid(format!("`{path}`: unsupported operator `{other}`"))),
    }
}

fn is_scalar(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

fn parse_numeric(argument: &Value, path: &str) -> Result<Vec<(Comparison, f64)>, FilterError> {
    let bad = || {
        invalid(format!(
            "`{path}`: `numeric` takes [operator, number, …], got {argument}"
        ))
    };
    let items = argument.as_array().ok_or_else(bad)?;
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(bad());
    }
    items
        .chunks(2)
        .map(|pair| {
            let comparison = match pair[0].as_str() {
                Some("<") => Comparison::Less,
                Some("<=") => Comparison::LessOrEqual,
                Some("=") => Comparison::Equal,
                Some(">=") => Comparison::GreaterOrEqual,
                Some(">") => Comparison::Greater,
                _ => return Err(bad()),
            };
            let bound = pair[1].as_f64().ok_or_else(bad)?;
            Ok((comparison, bound))
        })
        .collect()
}

impl Node {
    /// `value` is the record's value at this node's path, `None` when absent.
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Self::Fields(fields) => fields.iter().all(|(name, node)| {
                let child = match value {
                    Some(Value::Object(object)) => object.get(name),
                    _ => None,
                };
                node.matches(child)
            }),
            Self::Rules(rules) => match value {
                None => rules.contains(&Rule::Exists(false)),
                Some(Value::Array(elements)) => elements
                    .iter()
                    .any(|element| rules.iter().any(|rule| rule.matches(element))),
                Some(present) => rules.iter().any(|rule| rule.matches(present)),
            },
        }
    }
}

impl Rule {
    /// Whether a present leaf value satisfies the rule.
    fn matches(&self, value: &Value) -> bool {
        match self {
            Self::Equals(expected) => scalar_eq(expected, value),
            Self::Exists(exists) => *exists && !value.is_object(),
            Self::Prefix(prefix) => value.as_str().is_some_and(|s| s.starts_with(prefix)),
            Self::Suffix(suffix) => value.as_str().is_some_and(|s| s.ends_with(suffix)),
            Self::EqualsIgnoreCase(expected) => value
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(expected)),
            Self::AnythingBut(excluded) => {
                !value.is_object() && !excluded.iter().any(|e| scalar_eq(e, value))
            }
            Self::Numeric(bounds) => value.as_f64().is_some_and(|number| {
                bounds.iter().all(|&(comparison, bound)| match comparison {
                    Comparison::Less => number < bound,
                    Comparison::LessOrEqual => number <= bound,
                    Comparison::Equal => number == bound,
                    Comparison::GreaterOrEqual => number >= bound,
                    Comparison::Greater => number > bound,
                })
            }),
        }
    }
}

/// Equality of two scalars; numbers compare by value (`5` matches `5.0`).
fn scalar_eq(expected: &Value, value: &Value) -> bool {
    match (expected, value) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => expected == value,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record(event_name: &str, new: Option<&str>, old: Option<&str>) -> Value {
        let mut dynamodb =
            json!({"Keys": {"pk": {"S": "P"}, "sk": {"S": "S"}}, "SequenceNumber": "1"});
        if let Some(entity) = new {
            dynamodb["NewImage"] = json!({"entity": {"S": entity}, "count": {"N": "3"}});
        }
        if let Some(entity) = old {
            dynamodb["OldImage"] = json!({"entity": {"S": entity}});
        }
        json!({"eventName": event_name, "dynamodb": dynamodb, "size": 42, "tags": ["a", "b"]})
    }

    fn criteria(patterns: &[&str]) -> FilterCriteria {
        FilterCriteria::parse(patterns).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn exact_values_are_an_or_within_a_leaf_and_an_and_across_fields() {
        let filter = criteria(&[
            r#"{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"entity": {"S": ["post", "comment"]}}}}"#,
        ]);
        assert!(filter.matches(&record("INSERT", Some("post"), None)));
        assert!(filter.matches(&record("INSERT", Some("comment"), None)));
        assert!(!filter.matches(&record("INSERT", Some("like"), None)));
        assert!(!filter.matches(&record("MODIFY", Some("post"), Some("post"))));
        assert!(!filter.matches(&record("REMOVE", None, Some("post"))));
    }

    #[test]
    fn any_pattern_is_enough() {
        let filter = criteria(&[
            r#"{"dynamodb": {"NewImage": {"entity": {"S": ["post"]}}}}"#,
            r#"{"dynamodb": {"OldImage": {"entity": {"S": ["comment"]}}}}"#,
        ]);
        assert!(filter.matches(&record("INSERT", Some("post"), None)));
        assert!(filter.matches(&record("REMOVE", None, Some("comment"))));
        assert!(!filter.matches(&record("REMOVE", None, Some("post"))));
    }

    #[test]
    fn exists_looks_at_leaves_and_absent_parents_count_as_absent() {
        let inserts = criteria(&[
            r#"{"dynamodb": {"NewImage": {"entity": {"S": [{"exists": true}]}}, "OldImage": {"entity": {"S": [{"exists": false}]}}}}"#,
        ]);
        assert!(inserts.matches(&record("INSERT", Some("x"), None)));
        assert!(!inserts.matches(&record("MODIFY", Some("x"), Some("x"))));
        assert!(!inserts.matches(&record("REMOVE", None, Some("x"))));
        // `exists` on an object is not a leaf test.
        let on_object = criteria(&[r#"{"dynamodb": {"NewImage": [{"exists": true}]}}"#]);
        assert!(!on_object.matches(&record("INSERT", Some("x"), None)));
    }

    #[test]
    fn string_numeric_and_negative_rules() {
        let r = record("INSERT", Some("notification"), None);
        let matches = |pattern: &str| criteria(&[pattern]).matches(&r);
        assert!(matches(
            r#"{"dynamodb": {"NewImage": {"entity": {"S": [{"prefix": "notif"}]}}}}"#
        ));
        assert!(!matches(
            r#"{"dynamodb": {"NewImage": {"entity": {"S": [{"prefix": "post"}]}}}}"#
        ));
        assert!(matches(
            r#"{"dynamodb": {"NewImage": {"entity": {"S": [{"suffix": "tion"}]}}}}"#
        ));
        assert!(matches(
            r#"{"eventName": [{"equals-ignore-case": "insert"}]}"#
        ));
        assert!(matches(
            r#"{"eventName": [{"anything-but": ["REMOVE", "MODIFY"]}]}"#
        ));
        assert!(!matches(r#"{"eventName": [{"anything-but": "INSERT"}]}"#));
        assert!(matches(r#"{"size": [{"numeric": [">", 40, "<=", 42]}]}"#));
        assert!(!matches(r#"{"size": [{"numeric": ["<", 42]}]}"#));
        assert!(matches(r#"{"size": [42.0]}"#));
        // DynamoDB numbers are strings: numeric rules never match them (as on AWS).
        assert!(!matches(
            r#"{"dynamodb": {"NewImage": {"count": {"N": [{"numeric": [">", 1]}]}}}}"#
        ));
        // A list value matches when any element does.
        assert!(matches(r#"{"tags": ["b"]}"#));
        assert!(!matches(r#"{"tags": ["c"]}"#));
        // A missing field fails every rule but `exists: false`.
        assert!(!matches(r#"{"missing": [{"anything-but": "x"}]}"#));
        assert!(matches(r#"{"missing": [{"exists": false}]}"#));
    }

    #[test]
    fn what_lambda_refuses_is_refused() {
        let too_many = vec![r#"{"a": ["b"]}"#; MAX_FILTERS + 1];
        assert!(FilterCriteria::parse(&too_many).is_err());
        assert!(FilterCriteria::parse::<&str>(&[]).is_err());
        let long = format!(r#"{{"a": ["{}"]}}"#, "x".repeat(MAX_PATTERN_CHARS));
        for bad in [
            "not json",
            "[]",
            "{}",
            r#"{"a": "b"}"#,
            r#"{"a": []}"#,
            r#"{"a": {}}"#,
            r#"{"a": [{"wildcard": "x*"}]}"#,
            r#"{"a": [{"prefix": 1}]}"#,
            r#"{"a": [{"exists": "yes"}]}"#,
            r#"{"a": [{"numeric": [">"]}]}"#,
            r#"{"a": [{"numeric": ["~", 1]}]}"#,
            r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#,
            long.as_str(),
        ] {
            assert!(
                FilterCriteria::parse(&[bad]).is_err(),
                "`{bad}` was accepted"
            );
        }
    }
}
