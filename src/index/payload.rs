//! The payload layout of a point (the table in [`super`]'s docs), shared by every engine, so a
//! point written by one reads the same in another.

use anyhow::{anyhow, Context as _};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Hit, Point};
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

/// The attributes a stored payload carries (none if it has none, or they do not parse).
pub(crate) fn attributes_of(payload: &Map<String, Value>) -> Attributes {
    payload
        .get(ATTRIBUTES_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
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
