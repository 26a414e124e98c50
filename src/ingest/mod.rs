//! The ingestion pipeline: extract -> chunk -> embed -> index.

pub mod chunk;
pub mod embed;
pub mod local;
pub mod remote;
pub mod rerank;
pub mod worker;

use std::sync::Arc;

use chunk::Chunker;
use embed::Embedder;

/// The CPU-heavy parts of ingestion and search, chosen once in `app.rs`.
#[derive(Clone)]
pub struct Pipeline {
    pub embedder: Arc<dyn Embedder>,
    pub chunker: Arc<Chunker>,
    /// The cross-encoder of `--reranker-model`, if one was given.
    pub reranker: Option<Arc<rerank::Reranker>>,
}

/// Which vectors ingestion makes for chunks: the embedder's, each chunk read after its section's
/// title ([`Chunker::embedding_input`]). Cached chunk vectors are reused only under the same id,
/// so vectors embedded before titles were read are never mixed with those after.
pub fn chunk_vectors_id(embedder: &dyn Embedder) -> String {
    format!("{}+section-titles", embedder.vectors_id())
}

impl Pipeline {
    /// The chunk size `auto` uses: the embedding model's window.
    pub fn auto_chunk_tokens(&self) -> u32 {
        u32::try_from(self.embedder.max_input_tokens()).unwrap_or(u32::MAX)
    }
}
