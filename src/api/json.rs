//! Field access on a JSON object body, with errors that name the parameter.

use serde_json::{Map, Value};

use crate::domain::{Error, Result};

pub type Object = Map<String, Value>;

fn wrong_type(param: &'static str, expected: &str) -> Error {
    Error::invalid(
        format!("Invalid type for '{param}': expected {expected}."),
        param,
    )
}

pub fn opt_str<'a>(obj: &'a Object, param: &'static str) -> Result<Option<&'a str>> {
    match obj.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(param, "a string")),
    }
}

pub fn req_str<'a>(obj: &'a Object, param: &'static str) -> Result<&'a str> {
    opt_str(obj, param)?.ok_or_else(|| Error::missing(param))
}

pub fn req_i64(obj: &Object, param: &'static str) -> Result<i64> {
    match obj.get(param) {
        None | Some(Value::Null) => Err(Error::missing(param)),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| wrong_type(param, "an integer")),
        Some(_) => Err(wrong_type(param, "an integer")),
    }
}

pub fn opt_object<'a>(obj: &'a Object, param: &'static str) -> Result<Option<&'a Object>> {
    match obj.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(wrong_type(param, "an object")),
    }
}

pub fn req_str_array(obj: &Object, param: &'static str) -> Result<Vec<String>> {
    match obj.get(param) {
        None | Some(Value::Null) => Err(Error::missing(param)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(wrong_type(param, "an array of strings")),
            })
            .collect(),
        Some(_) => Err(wrong_type(param, "an array of strings")),
    }
}
