//! Search `filters`: comparisons on attributes, combined with and/or to any depth. Parsed and
//! validated here; each index translates the tree into its own filter, so filtering happens inside
//! the index, not after retrieval.

use serde::Deserialize;
use serde_json::Value;

use super::attributes::check_attribute_key;

/// Why a filter is refused (the message, without the field name).
type Result<T, E = String> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    String(String),
    Number(f64),
    Bool(bool),
}

/// Parsed from a request with [`Filter::parse`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub enum Filter {
    /// `eq`/`ne` take any scalar; `gt`..`lte` a number; `in`/`nin` a non-empty list of strings or
    /// numbers (stored in `values`).
    Compare {
        key: String,
        op: CompareOp,
        values: Vec<Scalar>,
    },
    And(Vec<Filter>),
    Or(Vec<Filter>),
}

/// Deep enough for any real query, shallow enough that recursion stays bounded.
pub const MAX_DEPTH: usize = 32;
/// Total comparison nodes in one filter.
pub const MAX_NODES: usize = 1024;

impl Filter {
    pub fn parse(v: &Value) -> Result<Filter> {
        let mut nodes = 0;
        parse_node(v, 0, &mut nodes)
    }
}

impl TryFrom<Value> for Filter {
    type Error = String;

    fn try_from(v: Value) -> Result<Self> {
        Filter::parse(&v)
    }
}

fn bad(msg: impl std::fmt::Display) -> String {
    msg.to_string()
}

fn scalar(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::String(s.clone())),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => n.as_f64().map(Scalar::Number),
        _ => None,
    }
}

fn parse_node(v: &Value, depth: usize, nodes: &mut usize) -> Result<Filter> {
    if depth >= MAX_DEPTH {
        return Err(bad(format!("nested deeper than {MAX_DEPTH} levels")));
    }
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(bad(format!("more than {MAX_NODES} conditions")));
    }
    let obj = v
        .as_object()
        .ok_or_else(|| bad("each filter must be an object"))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("each filter needs a string 'type'"))?;
    let op = match kind {
        "and" | "or" => {
            let items = obj
                .get("filters")
                .and_then(Value::as_array)
                .ok_or_else(|| bad(format!("a '{kind}' filter needs an array 'filters'")))?;
            if items.is_empty() {
                return Err(bad(format!("a '{kind}' filter needs at least one filter")));
            }
            let children = items
                .iter()
                .map(|c| parse_node(c, depth + 1, nodes))
                .collect::<Result<Vec<_>>>()?;
            return Ok(if kind == "and" {
                Filter::And(children)
            } else {
                Filter::Or(children)
            });
        }
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "gt" => CompareOp::Gt,
        "gte" => CompareOp::Gte,
        "lt" => CompareOp::Lt,
        "lte" => CompareOp::Lte,
        "in" => CompareOp::In,
        "nin" => CompareOp::Nin,
        other => {
            return Err(bad(format!(
                "unknown type '{other}' (expected eq, ne, gt, gte, lt, lte, in, nin, and, or)"
            )))
        }
    };
    let key = obj
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad(format!("a '{kind}' filter needs a non-empty string 'key'")))?
        .to_owned();
    check_attribute_key(&key)?;
    let value = obj
        .get("value")
        .ok_or_else(|| bad(format!("a '{kind}' filter needs a 'value'")))?;
    let values = match op {
        CompareOp::Eq | CompareOp::Ne => vec![scalar(value).ok_or_else(|| {
            bad(format!(
                "'{kind}' on '{key}' needs a string, number or boolean value"
            ))
        })?],
        CompareOp::Gt | CompareOp::Gte | CompareOp::Lt | CompareOp::Lte => match scalar(value) {
            Some(s @ Scalar::Number(_)) => vec![s],
            _ => return Err(bad(format!("'{kind}' on '{key}' needs a number value"))),
        },
        CompareOp::In | CompareOp::Nin => {
            let items = value
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| bad(format!("'{kind}' on '{key}' needs a non-empty array value")))?;
            let values: Vec<Scalar> = items
                .iter()
                .map(|i| match scalar(i) {
                    Some(s @ (Scalar::String(_) | Scalar::Number(_))) => Ok(s),
                    _ => Err(bad(format!("'{kind}' on '{key}' takes strings or numbers"))),
                })
                .collect::<Result<_>>()?;
            values
        }
    };
    Ok(Filter::Compare { key, op, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_nested_filters() {
        let f = Filter::parse(&json!({"type": "and", "filters": [
            {"type": "eq", "key": "author", "value": "ann"},
            {"type": "or", "filters": [
                {"type": "gte", "key": "year", "value": 2020},
                {"type": "in", "key": "tag", "value": ["a", "b"]}
            ]}
        ]}))
        .unwrap_or(Filter::And(vec![]));
        let Filter::And(children) = f else {
            panic!("not and")
        };
        assert_eq!(children.len(), 2);
        assert_eq!(
            children[0],
            Filter::Compare {
                key: "author".into(),
                op: CompareOp::Eq,
                values: vec![Scalar::String("ann".into())]
            }
        );
    }

    #[test]
    fn rejects_bad_filters() {
        for bad in [
            json!("x"),
            json!({"type": "eq", "key": "a"}),
            json!({"type": "eq", "value": 1}),
            json!({"type": "like", "key": "a", "value": 1}),
            json!({"type": "gt", "key": "a", "value": "b"}),
            json!({"type": "in", "key": "a", "value": []}),
            json!({"type": "in", "key": "a", "value": [true]}),
            json!({"type": "and", "filters": []}),
            json!({"type": "or"}),
            json!({"type": "eq", "key": "a", "value": {"x": 1}}),
            json!({"type": "eq", "key": "a\"b", "value": 1}),
            json!({"type": "eq", "key": "k".repeat(65), "value": 1}),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let mut f = json!({"type": "eq", "key": "a", "value": 1});
        for _ in 0..40 {
            f = json!({"type": "and", "filters": [f]});
        }
        assert!(Filter::parse(&f).is_err());
    }
}
