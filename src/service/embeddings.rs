//! `POST /embeddings` with the server's own model, so RAG apps embed queries the same way.

use std::sync::Arc;

use crate::domain::{Error, Resource, Result};
use crate::ingest::embed::Embedder;

#[derive(Clone)]
pub struct EmbeddingService {
    embedder: Arc<dyn Embedder>,
    /// When this server started serving the model (the model list's `created`).
    created_at: i64,
}

/// Vectors in input order, and the tokens the model read.
pub struct Embeddings {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

impl EmbeddingService {
    pub fn new(embedder: Arc<dyn Embedder>, created_at: i64) -> Self {
        Self {
            embedder,
            created_at,
        }
    }

    pub fn model(&self) -> &str {
        self.embedder.model()
    }

    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    pub fn max_input_tokens(&self) -> usize {
        self.embedder.max_input_tokens()
    }

    /// The model is this server's: its id, or the id under its publisher's name as Hugging Face
    /// and llama-stack spell it (`sentence-transformers/all-MiniLM-L6-v2`). Any other name is a
    /// model this server does not have.
    pub fn check_model(&self, name: &str) -> Result<()> {
        check_model(self.embedder.model(), name)
    }

    pub fn dims(&self) -> usize {
        self.embedder.dims()
    }

    pub async fn embed(&self, inputs: Vec<String>) -> Result<Embeddings> {
        // Tokenizing is CPU work: never on the reactor, where it would stall every request.
        let tokens = self.embedder.tokens();
        let (inputs, prompt_tokens) = tokio::task::spawn_blocking(move || {
            let n = inputs.iter().map(|t| tokens.count(t)).sum::<usize>();
            (inputs, n)
        })
        .await?;
        let vectors = self.embedder.embed(inputs).await?;
        Ok(Embeddings {
            model: self.embedder.model().to_owned(),
            vectors,
            prompt_tokens,
        })
    }
}

/// `name` names the model `ours`: its id, or that id under `sentence-transformers/`.
pub fn check_model(ours: &str, name: &str) -> Result<()> {
    let bare = name.rsplit_once('/').map_or(name, |(_, n)| n);
    if name == ours || (bare == ours && name.starts_with("sentence-transformers/")) {
        Ok(())
    } else {
        Err(Error::not_found(Resource::Model, name))
    }
}
