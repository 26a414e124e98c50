//! `GET /models` and `GET /models/{id}`: the embedding model this server runs, as OpenAI's model
//! list shows models, so clients (llama-stack's, LiteLLM, most OpenAI-compatible tools) find it.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::error::ApiResult;
use crate::service::{EmbeddingService, Services};

pub fn router() -> Router<Services> {
    Router::new()
        .route("/models", get(list))
        // Ids may hold a slash (`sentence-transformers/all-MiniLM-L6-v2`).
        .route("/models/{*id}", get(retrieve))
}

/// OpenAI's `Model`, with llama-stack's fields for an embedding model alongside (extra keys
/// are ignored by OpenAI's SDKs).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Model {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub owned_by: &'static str,
    /// llama-stack (0.2): the same id, what kind of model, and its shape.
    pub identifier: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub model_type: &'static str,
    pub provider_id: &'static str,
    pub provider_resource_id: String,
    pub metadata: ModelMetadata,
    /// llama-stack (0.3 on) reads them from here.
    pub custom_metadata: CustomMetadata,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CustomMetadata {
    pub model_type: &'static str,
    pub provider_id: &'static str,
    pub provider_resource_id: String,
    pub embedding_dimension: usize,
    pub context_length: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelMetadata {
    pub embedding_dimension: usize,
    pub context_length: usize,
}

/// `{object: "list", data}`
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ListModelsResponse)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<Model>,
}

fn model(embeddings: &EmbeddingService) -> Model {
    Model {
        id: embeddings.model().to_owned(),
        object: "model",
        created: embeddings.created_at(),
        owned_by: "ragstore",
        identifier: embeddings.model().to_owned(),
        kind: "model",
        model_type: "embedding",
        provider_id: "ragstore",
        provider_resource_id: embeddings.model().to_owned(),
        metadata: ModelMetadata {
            embedding_dimension: embeddings.dims(),
            context_length: embeddings.max_input_tokens(),
        },
        custom_metadata: CustomMetadata {
            model_type: "embedding",
            provider_id: "ragstore",
            provider_resource_id: embeddings.model().to_owned(),
            embedding_dimension: embeddings.dims(),
            context_length: embeddings.max_input_tokens(),
        },
    }
}

async fn list(State(embeddings): State<EmbeddingService>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: vec![model(&embeddings)],
    })
}

async fn retrieve(
    State(embeddings): State<EmbeddingService>,
    Path(id): Path<String>,
) -> ApiResult<Json<Model>> {
    embeddings.check_model(&id)?;
    Ok(Json(model(&embeddings)))
}
