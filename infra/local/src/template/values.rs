//! Values in the template: scalars, lists and numbers (resolving `!Ref` to a parameter's
//! `Default`), and the logical ids an intrinsic function references.

use serde_yaml::Value;

use super::{invalid, Parser, TemplateError};

impl Parser<'_> {
    /// A plain value, or a `!Ref` to a parameter with a `Default`.
    pub(super) fn scalar(&self, value: &Value) -> Option<String> {
        if let Some(text) = plain(value) {
            return Some(text);
        }
        let name = ref_target(value)?;
        plain(self.parameters?.get(name.as_str())?.get("Default")?)
    }

    /// A list: a sequence of scalars, a comma-separated scalar (`CommaDelimitedList`
    /// parameter defaults) or `!Split [delimiter, value]`.
    pub(super) fn list(&self, value: &Value) -> Vec<String> {
        if let Value::Sequence(items) = value {
            return items.iter().flat_map(|item| self.list(item)).collect();
        }
        if let Value::Tagged(tagged) = value {
            if tagged.tag == "Split" {
                if let Some([delimiter, source]) = tagged.value.as_sequence().map(Vec::as_slice) {
                    let delimiter = plain(delimiter).unwrap_or_else(|| ",".to_owned());
                    return self
                        .scalar(source)
                        .map(|s| split(&s, &delimiter))
                        .unwrap_or_default();
                }
                return Vec::new();
            }
        }
        self.scalar(value)
            .map(|s| split(&s, ","))
            .unwrap_or_default()
    }

    pub(super) fn integer(&self, props: &Value, key: &str) -> Result<Option<i64>, TemplateError> {
        let Some(value) = props.get(key) else {
            return Ok(None);
        };
        let text = self
            .scalar(value)
            .ok_or_else(|| invalid(format!("{key} must be a number")))?;
        text.trim()
            .parse()
            .map(Some)
            .map_err(|_| invalid(format!("{key} must be a number, got `{text}`")))
    }

    pub(super) fn unsigned(&self, props: &Value, key: &str) -> Result<Option<u32>, TemplateError> {
        self.integer(props, key)?
            .map(|n| {
                u32::try_from(n)
                    .map_err(|_| invalid(format!("{key} must be non-negative, got {n}")))
            })
            .transpose()
    }

    pub(super) fn boolean(&self, props: &Value, key: &str) -> bool {
        props
            .get(key)
            .and_then(|v| self.scalar(v))
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

pub(super) fn properties(resource: &Value) -> &Value {
    static EMPTY: Value = Value::Null;
    resource.get("Properties").unwrap_or(&EMPTY)
}

pub(super) fn split(text: &str, delimiter: &str) -> Vec<String> {
    text.split(delimiter)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A literal string, number or boolean as text.
pub(super) fn plain(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The target of `!Ref X` / `{Ref: X}`.
pub(super) fn ref_target(value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str().map(str::to_owned),
        Value::Mapping(map) if map.len() == 1 => map.get("Ref")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Logical ids an expression references, in order of appearance (pseudo parameters such as
/// `AWS::Region` excluded): `!Ref X`, `!GetAtt X.Arn`, `${X}` / `${X.Arn}` in `!Sub`, and
/// their long forms, at any depth (`!Join`, `!If`…).
pub fn references(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_references(value, &mut found);
    found
}

pub(super) fn push_reference(found: &mut Vec<String>, id: &str) {
    if !id.starts_with("AWS::") && !id.is_empty() && !found.iter().any(|f| f == id) {
        found.push(id.to_owned());
    }
}

pub(super) fn collect_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            match (tag.trim_start_matches('!'), &tagged.value) {
                ("Ref", Value::String(id)) => push_reference(found, id),
                ("GetAtt", Value::String(path)) => {
                    push_reference(found, path.split('.').next().unwrap_or_default())
                }
                ("GetAtt", Value::Sequence(parts)) => {
                    if let Some(id) = parts.first().and_then(Value::as_str) {
                        push_reference(found, id);
                    }
                }
                ("Sub", inner) => sub_references(inner, found),
                (_, inner) => collect_references(inner, found),
            }
        }
        Value::Mapping(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    (Some("Ref"), Value::String(id)) => push_reference(found, id),
                    (Some("Fn::GetAtt"), Value::Sequence(parts)) => {
                        if let Some(id) = parts.first().and_then(Value::as_str) {
                            push_reference(found, id);
                        }
                    }
                    (Some("Fn::GetAtt"), Value::String(path)) => {
                        push_reference(found, path.split('.').next().unwrap_or_default())
                    }
                    (Some("Fn::Sub"), inner) => sub_references(inner, found),
                    _ => collect_references(inner, found),
                }
            }
        }
        Value::Sequence(items) => {
            for item in items {
                collect_references(item, found);
            }
        }
        _ => {}
    }
}

/// `${X}` / `${X.Attr}` variables of a `!Sub` string (or `[string, {locals}]` form, whose
/// locals are not resource references but whose values may contain some).
pub(super) fn sub_references(value: &Value, found: &mut Vec<String>) {
    let (text, locals) = match value {
        Value::String(text) => (text.as_str(), None),
        Value::Sequence(parts) => match (parts.first().and_then(Value::as_str), parts.get(1)) {
            (Some(text), locals) => (text, locals.and_then(Value::as_mapping)),
            _ => return,
        },
        _ => return,
    };
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let variable = &after[..end];
        rest = &after[end + 1..];
        // `${!Literal}` is an escaped literal, not a reference.
        if variable.starts_with('!') {
            continue;
        }
        let id = variable.split('.').next().unwrap_or_default();
        if !locals.is_some_and(|l| l.contains_key(id)) {
            push_reference(found, id);
        }
    }
    if let Some(locals) = locals {
        for inner in locals.values() {
            collect_references(inner, found);
        }
    }
}
