//! `POST /embeddings` with the server's own model, so RAG apps embed queries the same way.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use super::error::{ApiJson, ApiResult};
use crate::app::AppState;
use crate::domain::Error;

pub fn router() -> Router<AppState> {
    Router::new().route("/embeddings", post(create))
}

pub const MAX_INPUTS: usize = 2048;

async fn create(State(st): State<AppState>, ApiJson(body): ApiJson) -> ApiResult<Json<Value>> {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_INPUTS => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Error::invalid("'input' must be a string or an array of strings (token arrays are not supported).", "input"))?,
        None | Some(Value::Null) => return Err(Error::missing("input").into()),
        Some(_) => {
            return Err(Error::invalid(format!("'input' must be a string or an array of 1 to {MAX_INPUTS} strings."), "input").into())
        }
    };
    if inputs.iter().any(String::is_empty) {
        return Err(Error::invalid("'input' must not contain empty strings.", "input").into());
    }
    let embedder = &st.pipeline.embedder;
    match body.get("model") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => return Err(Error::missing("model").into()),
        Some(_) => return Err(Error::invalid("'model' must be a string.", "model").into()),
    }
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Error::invalid(
                format!("Invalid 'encoding_format': '{other}'. Use 'float' or 'base64'."),
                "encoding_format",
            )
            .into())
        }
    };
    if let Some(d) = body.get("dimensions").filter(|v| !v.is_null()) {
        if d.as_u64() != Some(embedder.dims() as u64) {
            return Err(Error::invalid(
                format!("'dimensions' must be {} for this model.", embedder.dims()),
                "dimensions",
            )
            .into());
        }
    }
    let tokens: usize = inputs
        .iter()
        .map(|t| st.pipeline.chunker.count_tokens(t))
        .sum();
    let vectors = embedder.embed(inputs).await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": embedder.model(),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}
