//! Vector-store-file `attributes` and vector-store `metadata`: small, validated key/value maps.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One attribute value: the spec allows strings, numbers and booleans.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Number(f64),
    String(String),
}

/// Whole numbers go out as integers (`2019`, not `2019.0`), as clients sent them.
impl Serialize for AttrValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            AttrValue::Bool(b) => s.serialize_bool(*b),
            AttrValue::String(v) => s.serialize_str(v),
            AttrValue::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
                s.serialize_i64(*n as i64)
            }
            AttrValue::Number(n) => s.serialize_f64(*n),
        }
    }
}

pub type Attributes = BTreeMap<String, AttrValue>;

pub const MAX_PAIRS: usize = 16;
pub const MAX_KEY_CHARS: usize = 64;
pub const MAX_STRING_CHARS: usize = 512;

/// Why a map is refused (the message, without the field name).
type Result<T, E = String> = std::result::Result<T, E>;

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(format!(
            "key '{key}' must be 1 to {MAX_KEY_CHARS} characters long."
        ));
    }
    Ok(())
}

/// An attribute key: also a filter key, so it must be expressible in every index's filter
/// syntax. Checked before anything is written, so no index can refuse it later.
pub fn check_attribute_key(key: &str) -> Result<()> {
    check_key(key)?;
    if key.contains(['"', '\\']) || key.chars().any(char::is_control) {
        return Err(format!(
            "key '{}' must not contain '\"', '\\' or control characters.",
            key.escape_debug()
        ));
    }
    Ok(())
}

fn check_string(key: &str, s: &str) -> Result<()> {
    if s.chars().count() > MAX_STRING_CHARS {
        return Err(format!(
            "the value of '{key}' is longer than {MAX_STRING_CHARS} characters."
        ));
    }
    Ok(())
}

fn as_object(v: &Value) -> Result<&serde_json::Map<String, Value>> {
    let obj = v
        .as_object()
        .ok_or_else(|| "expected an object.".to_owned())?;
    if obj.len() > MAX_PAIRS {
        return Err(format!(
            "at most {MAX_PAIRS} key/value pairs are allowed, got {}.",
            obj.len()
        ));
    }
    Ok(obj)
}

/// Parses `attributes` (strings, numbers, booleans). `null` means none.
pub fn parse_attributes(v: &Value) -> Result<Attributes> {
    if v.is_null() {
        return Ok(Attributes::new());
    }
    let mut out = Attributes::new();
    for (key, value) in as_object(v)? {
        check_attribute_key(key)?;
        let parsed = match value {
            Value::String(s) => {
                check_string(key, s)?;
                AttrValue::String(s.clone())
            }
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => AttrValue::Number(
                n.as_f64()
                    .ok_or_else(|| format!("'{key}' is not a finite number."))?,
            ),
            _ => {
                return Err(format!(
                    "the value of '{key}' must be a string, number or boolean."
                ))
            }
        };
        out.insert(key.clone(), parsed);
    }
    Ok(out)
}

/// Parses `metadata` (string values only). `null` means none.
pub fn parse_metadata(v: &Value) -> Result<BTreeMap<String, String>> {
    if v.is_null() {
        return Ok(BTreeMap::new());
    }
    let mut out = BTreeMap::new();
    for (key, value) in as_object(v)? {
        check_key(key)?;
        let Value::String(s) = value else {
            return Err(format!("the value of '{key}' must be a string."));
        };
        check_string(key, s)?;
        out.insert(key.clone(), s.clone());
    }
    Ok(out)
}

/// `attributes` of a request, checked by [`parse_attributes`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct AttributesParam(pub Attributes);

impl TryFrom<Value> for AttributesParam {
    type Error = String;
    fn try_from(v: Value) -> Result<Self> {
        parse_attributes(&v).map(Self)
    }
}

/// `metadata` of a request, checked by [`parse_metadata`].
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub struct MetadataParam(pub BTreeMap<String, String>);

impl TryFrom<Value> for MetadataParam {
    type Error = String;
    fn try_from(v: Value) -> Result<Self> {
        parse_metadata(&v).map(Self)
    }
}

pub fn attributes_to_json(a: &Attributes) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attributes_accept_scalars_only() {
        let a = parse_attributes(&json!({"a": "x", "n": 3, "b": true})).unwrap_or_default();
        assert_eq!(a.len(), 3);
        assert_eq!(a["n"], AttrValue::Number(3.0));
        assert!(parse_attributes(&json!({"a": [1]})).is_err());
        assert!(parse_attributes(&json!({"a": null})).is_err());
        assert!(parse_attributes(&json!("x")).is_err());
        assert!(
            parse_attributes(&json!({"a\"b": 1})).is_err(),
            "unfilterable key"
        );
        assert!(
            parse_attributes(&json!({"a\\b": 1})).is_err(),
            "unfilterable key"
        );
        assert!(parse_attributes(&Value::Null).is_ok_and(|a| a.is_empty()));
    }

    #[test]
    fn limits() {
        let many: serde_json::Map<String, Value> =
            (0..17).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(parse_attributes(&Value::Object(many)).is_err());
        assert!(parse_metadata(&json!({"k".repeat(65): "v"})).is_err());
        assert!(parse_metadata(&json!({"k": "v".repeat(513)})).is_err());
        assert!(parse_metadata(&json!({"k": 1})).is_err());
        assert!(parse_metadata(&json!({"k": "v".repeat(512)})).is_ok());
    }

    #[test]
    fn round_trips_as_json() {
        let a = parse_attributes(&json!({"s": "x", "n": 1.5, "b": false})).unwrap_or_default();
        assert_eq!(
            attributes_to_json(&a),
            json!({"s": "x", "n": 1.5, "b": false})
        );
    }
}
