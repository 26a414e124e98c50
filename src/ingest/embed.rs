//! Text -> vectors. [`Embedder`] is the seam: a local ONNX model through fastembed (default), or
//! any OpenAI-compatible `/v1/embeddings` endpoint.

use async_trait::async_trait;

use super::chunk::Tokens;
use crate::domain::Result;

#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// The model name reported by `/v1/embeddings`.
    fn model(&self) -> &str;

    /// Which vectors this embedder makes: cached chunk vectors are reused only by an embedder
    /// with the same id. The model name, unless one model can run in more than one way.
    fn vectors_id(&self) -> &str {
        self.model()
    }

    /// Vector dimensions.
    fn dims(&self) -> usize;

    /// The most tokens the model reads at once (its window); `auto` chunking fits inside it.
    fn max_input_tokens(&self) -> usize;

    /// How this model counts tokens: chunks are sized with it, so a chunk of N tokens is what
    /// the model reads.
    fn tokens(&self) -> Tokens;

    /// One L2-normalised vector per text, in order. A text longer than the window is embedded from
    /// all of its text (the normalised mean of its windows' vectors), never truncated.
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>>;

    /// [`Embedder::embed`] for ingestion: may wait behind interactive calls (a search's query)
    /// so those never queue behind a whole file's worth of runs.
    async fn embed_bulk(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        self.embed(texts).await
    }
}

/// Scales `v` to unit length in place; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
