//! Vector-store-file `attributes` and vector-store `metadata`: small, validated key/value maps.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use super::error::{Error, Result};

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

fn check_key(key: &str, param: &'static str) -> Result<()> {
    if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
        return Err(Error::invalid(
            format!("Invalid '{param}': key '{key}' must be 1 to {MAX_KEY_CHARS} characters long."),
            param,
        ));
    }
    Ok(())
}

fn check_string(key: &str, s: &str, param: &'static str) -> Result<()> {
    if s.chars().count() > MAX_STRING_CHARS {
        return Err(Error::invalid(
            format!("Invalid '{param}': the value of '{key}' is longer than {MAX_STRING_CHARS} characters."),
            param,
        ));
    }
    Ok(())
}

fn as_object<'a>(v: &'a Value, param: &'static str) -> Result<&'a serde_json::Map<String, Value>> {
    let obj = v.as_object().ok_or_else(|| {
        Error::invalid(
            format!("Invalid type for '{param}': expected an object."),
            param,
        )
    })?;
    if obj.len() > MAX_PAIRS {
        return Err(Error::invalid(
            format!(
                "Invalid '{param}': at most {MAX_PAIRS} key/value pairs are allowed, got {}.",
                obj.len()
            ),
            param,
        ));
    }
    Ok(obj)
}

/// Parses `attributes` (strings, numbers, booleans). `null` means none.
pub fn parse_attributes(v: Option<&Value>, param: &'static str) -> Result<Attributes> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Attributes::new());
    };
    let mut out = Attributes::new();
    for (key, value) in as_object(v, param)? {
        check_key(key, param)?;
        let parsed = match value {
            Value::String(s) => {
                check_string(key, s, param)?;
                AttrValue::String(s.clone())
            }
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => AttrValue::Number(n.as_f64().ok_or_else(|| {
                Error::invalid(
                    format!("Invalid '{param}': '{key}' is not a finite number."),
                    param,
                )
            })?),
            _ => {
                return Err(Error::invalid(
                    format!(
                    "Invalid '{param}': the value of '{key}' must be a string, number or boolean."
                ),
                    param,
                ))
            }
        };
        out.insert(key.clone(), parsed);
    }
    Ok(out)
}

/// Parses `metadata` (string values only). `null` means none.
pub fn parse_metadata(v: Option<&Value>, param: &'static str) -> Result<BTreeMap<String, String>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (key, value) in as_object(v, param)? {
        check_key(key, param)?;
        let Value::String(s) = value else {
            return Err(Error::invalid(
                format!("Invalid '{param}': the value of '{key}' must be a string."),
                param,
            ));
        };
        check_string(key, s, param)?;
        out.insert(key.clone(), s.clone());
    }
    Ok(out)
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
        let a = parse_attributes(Some(&json!({"a": "x", "n": 3, "b": true})), "attributes")
            .unwrap_or_default();
        assert_eq!(a.len(), 3);
        assert_eq!(a["n"], AttrValue::Number(3.0));
        assert!(parse_attributes(Some(&json!({"a": [1]})), "attributes").is_err());
        assert!(parse_attributes(Some(&json!({"a": null})), "attributes").is_err());
        assert!(parse_attributes(Some(&json!("x")), "attributes").is_err());
        assert!(parse_attributes(None, "attributes").is_ok_and(|a| a.is_empty()));
    }

    #[test]
    fn limits() {
        let many: serde_json::Map<String, Value> =
            (0..17).map(|i| (format!("k{i}"), json!(i))).collect();
        assert!(parse_attributes(Some(&Value::Object(many)), "attributes").is_err());
        assert!(parse_metadata(Some(&json!({"k".repeat(65): "v"})), "metadata").is_err());
        assert!(parse_metadata(Some(&json!({"k": "v".repeat(513)})), "metadata").is_err());
        assert!(parse_metadata(Some(&json!({"k": 1})), "metadata").is_err());
        assert!(parse_metadata(Some(&json!({"k": "v".repeat(512)})), "metadata").is_ok());
    }

    #[test]
    fn round_trips_as_json() {
        let a = parse_attributes(Some(&json!({"s": "x", "n": 1.5, "b": false})), "attributes")
            .unwrap_or_default();
        assert_eq!(
            attributes_to_json(&a),
            json!({"s": "x", "n": 1.5, "b": false})
        );
    }
}
