//! The payload layout of a point (the table in [`super`]'s docs), shared by every engine, so a
//! point written by one reads the same in another.

use anyhow::{anyhow, Context as _};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::keyword::Keywords;
use super::{Hit, Point, StoredPoint};
use crate::domain::{Attributes, Error, FileId, Result};

pub(crate) const STORE_KEY: &str = "vector_store_id";
pub(crate) const FILE_KEY: &str = "file_id";
pub(crate) const PROJECT_KEY: &str = "project_id";
pub(crate) const CHUNK_KEY: &str = "chunk_index";
pub(crate) const TEXT_KEY: &str = "text";
pub(crate) const ATTRIBUTES_KEY: &str = "attributes";
pub(crate) const EXTRA_KEY: &str = "extra";

/// A point's id, dense vector and payload.
pub(crate) fn split(p: Point) -> Result<(Uuid, Vec<f32>, Map<String, Value>)> {
    let mut payload = Map::new();
    payload.insert(
        STORE_KEY.into(),
        Value::String(p.vector_store_id.as_str().into()),
    );
    payload.insert(
        PROJECT_KEY.into(),
        Value::String(p.project_id.as_str().into()),
    );
    payload.insert(FILE_KEY.into(), Value::String(p.file_id.as_str().into()));
    payload.insert(CHUNK_KEY.into(), Value::from(p.chunk_index));
    payload.insert(TEXT_KEY.into(), Value::String(p.text));
    payload.insert(
        ATTRIBUTES_KEY.into(),
        serde_json::to_value(&p.attributes).context("attributes to JSON")?,
    );
    payload.insert(EXTRA_KEY.into(), Value::Object(p.extra));
    Ok((p.id, p.vector, payload))
}

/// A point as an index stores it, its keyword vector made from its text.
pub(crate) fn stored(p: Point, keywords: &Keywords) -> Result<StoredPoint> {
    let sparse = keywords.document(&p.text);
    let (id, vector, payload) = split(p)?;
    Ok(StoredPoint {
        id,
        vector,
        keywords: Some(sparse),
        payload,
    })
}

/// The distinct attribute maps the points carry (a file's points share theirs): the keys an
/// index gives payload indexes to before writing them.
pub(crate) fn distinct_attributes(points: &[StoredPoint]) -> Vec<Attributes> {
    let mut seen: Vec<&Value> = Vec::new();
    for p in points {
        if let Some(a) = p.payload.get(ATTRIBUTES_KEY) {
            if !seen.contains(&a) {
                seen.push(a);
            }
        }
    }
    seen.into_iter()
        .filter_map(|a| serde_json::from_value(a.clone()).ok())
        .collect()
}

/// Refuses a vector of other dimensions than the index's.
pub(crate) fn check_dims(v: &[f32], dims: usize) -> Result<()> {
    if v.len() != dims {
        return Err(Error::Internal(anyhow!(
            "vector has {} dimensions, the index expects {dims}",
            v.len()
        )));
    }
    Ok(())
}

/// A found point, from its payload.
pub(crate) fn hit(id: Uuid, score: f32, mut payload: Map<String, Value>) -> Result<Hit> {
    let bad = |what: String| Error::Internal(anyhow!("vector index: point {id}: {what}"));
    let mut take = |key: &str| payload.remove(key).unwrap_or(Value::Null);
    let file_id = match take(FILE_KEY) {
        Value::String(s) => FileId::from_db(s),
        other => return Err(bad(format!("bad file_id {other}"))),
    };
    let chunk_index = take(CHUNK_KEY)
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| bad("bad chunk_index".into()))?;
    let text = match take(TEXT_KEY) {
        Value::String(s) => s,
        other => return Err(bad(format!("bad text {other}"))),
    };
    let attributes = match take(ATTRIBUTES_KEY) {
        Value::Null => Attributes::new(),
        v => serde_json::from_value(v).map_err(|e| bad(format!("bad attributes: {e}")))?,
    };
    let extra = match take(EXTRA_KEY) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    Ok(Hit {
        id,
        score,
        file_id,
        chunk_index,
        text,
        attributes,
        extra,
    })
}
