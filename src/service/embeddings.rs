//! `POST /embeddings` with the server's own model, so RAG apps embed queries the same way.

use std::sync::Arc;

use crate::domain::Result;
use crate::ingest::embed::Embedder;

#[derive(Clone)]
pub struct EmbeddingService {
    embedder: Arc<dyn Embedder>,
}

/// Vectors in input order, and the tokens the model read.
pub struct Embeddings {
    pub model: String,
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: usize,
}

impl EmbeddingService {
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        Self { embedder }
    }

    pub fn model(&self) -> &str {
        self.embedder.model()
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
