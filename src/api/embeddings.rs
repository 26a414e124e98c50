//! `POST /embeddings` with the server's own model, so RAG apps embed queries the same way.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{ApiJson, ApiResult};
use crate::domain::Error;
use crate::service::{EmbeddingService, Services};

pub fn router() -> Router<Services> {
    Router::new().route("/embeddings", post(create))
}

pub const MAX_INPUTS: usize = 2048;
/// Characters per input: OpenAI's 8,192-token limit per input at about four characters a token
/// (the local model reads only the first 256 tokens of each; the cap bounds tokenising).
pub const MAX_INPUT_CHARS: usize = 32_768;
/// Characters per request: OpenAI's 300,000 tokens per request, at the same rate.
pub const MAX_REQUEST_CHARS: usize = 1_200_000;

/// OpenAI's `CreateEmbeddingRequest` (string inputs; token arrays are not supported).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateEmbeddingRequest {
    #[schema(value_type = Object)]
    pub input: Option<Input>,
    pub model: Option<String>,
    pub encoding_format: Option<String>,
    pub dimensions: Option<Value>,
}

/// `input`: a string or 1 to [`MAX_INPUTS`] strings.
#[derive(Debug, Deserialize)]
#[serde(try_from = "Value")]
pub struct Input(pub Vec<String>);

impl TryFrom<Value> for Input {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        let bad = || {
            format!("must be a string or an array of 1 to {MAX_INPUTS} strings (token arrays are not supported).")
        };
        match v {
            Value::String(s) => Ok(Input(vec![s])),
            Value::Array(items) if !items.is_empty() && items.len() <= MAX_INPUTS => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    _ => Err(bad()),
                })
                .collect::<Result<_, _>>()
                .map(Input),
            _ => Err(bad()),
        }
    }
}

/// OpenAI's `CreateEmbeddingResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreateEmbeddingResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingObject>,
    pub model: String,
    pub usage: Usage,
}

/// OpenAI's `Embedding`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Embedding)]
pub struct EmbeddingObject {
    pub object: &'static str,
    pub index: usize,
    pub embedding: Vector,
}

/// Floats, or base64 of little-endian f32s.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = EmbeddingUsage)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

async fn create(
    State(embeddings): State<EmbeddingService>,
    ApiJson(req): ApiJson<CreateEmbeddingRequest>,
) -> ApiResult<Json<CreateEmbeddingResponse>> {
    let inputs = req.input.ok_or_else(|| Error::missing("input"))?.0;
    if inputs.iter().any(String::is_empty) {
        return Err(Error::invalid("'input' must not contain empty strings.", "input").into());
    }
    let mut total = 0;
    for input in &inputs {
        let n = input.chars().count();
        if n > MAX_INPUT_CHARS {
            return Err(Error::invalid(
                format!("Each 'input' string must be at most {MAX_INPUT_CHARS} characters."),
                "input",
            )
            .into());
        }
        total += n;
    }
    if total > MAX_REQUEST_CHARS {
        return Err(Error::invalid(
            format!("The inputs of one request must hold at most {MAX_REQUEST_CHARS} characters in all."),
            "input",
        )
        .into());
    }
    let model = req.model.ok_or_else(|| Error::missing("model"))?;
    embeddings.check_model(&model)?;
    let base64 = match req.encoding_format.as_deref() {
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
    if let Some(d) = req.dimensions.filter(|v| !v.is_null()) {
        if d.as_u64() != Some(embeddings.dims() as u64) {
            return Err(Error::invalid(
                format!("'dimensions' must be {} for this model.", embeddings.dims()),
                "dimensions",
            )
            .into());
        }
    }
    let out = embeddings.embed(inputs).await?;
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(v)
            };
            EmbeddingObject {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    Ok(Json(CreateEmbeddingResponse {
        object: "list",
        data,
        model: out.model,
        usage: Usage {
            prompt_tokens: out.prompt_tokens,
            total_tokens: out.prompt_tokens,
        },
    }))
}
