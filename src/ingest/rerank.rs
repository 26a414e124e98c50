//! Optional reranking with a cross-encoder the operator brings (`--reranker-model DIR`): the
//! top candidates of a search are re-scored, each (query, chunk) pair read together by the
//! model, with fastembed's `TextRerank` on the process's ONNX Runtime.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{anyhow, Context};
use fastembed::{
    OnnxSource, RerankInitOptionsUserDefined, TextRerank, TokenizerFiles, UserDefinedRerankingModel,
};

use crate::domain::{Error, Result};

/// Pairs per model run.
const BATCH: usize = 16;
/// Tokens of a (query, chunk) pair the model reads, at most (BERT-style cross-encoders' window;
/// the tokenizer's `model_max_length` lowers it).
const MAX_PAIR_TOKENS: usize = 512;

/// A cross-encoder loaded from a directory: `model.onnx` (or `onnx/model.onnx`, as Hugging Face
/// exports lay it out) whose output `logits` has one relevance logit per pair, with the
/// tokenizer's `tokenizer.json`, `config.json`, `special_tokens_map.json` and
/// `tokenizer_config.json`.
pub struct Reranker {
    model: Arc<Mutex<TextRerank>>,
    name: String,
}

impl Reranker {
    /// Loads the model in `dir` on the ONNX Runtime in `models_dir`, with `threads` threads.
    pub fn load(dir: &Path, models_dir: &Path, threads: usize) -> anyhow::Result<Self> {
        let onnx = [dir.join("model.onnx"), dir.join("onnx").join("model.onnx")]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| {
                anyhow!(
                    "--reranker-model {}: no model.onnx (nor onnx/model.onnx) in it",
                    dir.display()
                )
            })?;
        let read = |name: &str| -> anyhow::Result<Vec<u8>> {
            let path: PathBuf = dir.join(name);
            std::fs::read(&path).with_context(|| {
                format!(
                    "--reranker-model {}: cannot read {name} (the model's tokenizer files sit \
                     beside model.onnx)",
                    dir.display()
                )
            })
        };
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        let mut options = RerankInitOptionsUserDefined::default();
        options.environment = Some(crate::ingest::local::onnx_runtime(models_dir)?);
        options.intra_threads = Some(threads.max(1));
        options.max_length = MAX_PAIR_TOKENS;
        let model = TextRerank::try_new_from_user_defined(
            UserDefinedRerankingModel::new(OnnxSource::File(onnx), tokenizer_files),
            options,
        )
        .map_err(|e| anyhow!("--reranker-model {}: {e}", dir.display()))?;
        let name = dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into());
        Ok(Self {
            model: Arc::new(Mutex::new(model)),
            name,
        })
    }

    /// The model's directory name, for the log.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The relevance of each text to `query`, in the texts' order: the logistic of the model's
    /// logit, 0..1 (sentence-transformers' CrossEncoder reads a one-logit model the same way).
    /// Runs off the async reactor.
    pub async fn scores(&self, query: &str, texts: Vec<String>) -> Result<Vec<f32>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let model = self.model.clone();
        let query = query.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut model = model.lock().unwrap_or_else(PoisonError::into_inner);
            let ranked = model
                .rerank(
                    query.as_str(),
                    texts.iter().map(String::as_str).collect::<Vec<_>>(),
                    false,
                    Some(BATCH),
                )
                .map_err(|e| Error::Internal(anyhow!("reranker: {e}")))?;
            let mut scores = vec![0.0f32; texts.len()];
            for r in ranked {
                if let Some(s) = scores.get_mut(r.index) {
                    *s = logistic(r.score);
                }
            }
            Ok(scores)
        })
        .await
        .map_err(|e| Error::Internal(anyhow!("reranker task: {e}")))?
    }
}

fn logistic(logit: f32) -> f32 {
    if logit.is_nan() {
        return 0.0;
    }
    1.0 / (1.0 + (-logit).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logits_become_0_to_1_in_order() {
        assert_eq!(logistic(0.0), 0.5);
        assert!(logistic(-50.0) >= 0.0 && logistic(-50.0) < 1e-6);
        assert!(logistic(50.0) <= 1.0 && logistic(50.0) > 0.999_999);
        assert!(logistic(1.0) > logistic(0.5));
        assert_eq!(logistic(f32::NAN), 0.0);
    }
}
