//! `chunking_strategy`: `auto` or `static {max_chunk_size_tokens, chunk_overlap_tokens}`.

use serde::Deserialize;
use serde_json::Value;

/// The numbers a file is chunked with. Responses always report these as `static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Chunking {
    pub max_tokens: u32,
    pub overlap_tokens: u32,
}

pub const MIN_CHUNK_TOKENS: u32 = 100;
pub const MAX_CHUNK_TOKENS: u32 = 4096;

impl Chunking {
    /// `auto` is model-aware: OpenAI's 800/400 would overflow a small model's window and be cut,
    /// so the chunk fills the window (`model_max_tokens`, capped at 800). A chunk that fills a
    /// model's window overlaps the next by a quarter of it (254/64 for MiniLM: measured in the
    /// README, "Why `auto` is 254 tokens with 64 of overlap"); a model reading more than 800
    /// tokens gets OpenAI's 800/400.
    pub fn auto(model_max_tokens: u32) -> Self {
        let max_tokens = model_max_tokens.clamp(MIN_CHUNK_TOKENS, 800);
        let overlap_tokens = if model_max_tokens > 800 {
            max_tokens / 2
        } else {
            max_tokens.div_ceil(4)
        };
        Chunking {
            max_tokens,
            overlap_tokens,
        }
    }

    /// A stable key naming this chunking, for caching chunks and embeddings per file.
    pub fn key(&self) -> String {
        format!("static-{}-{}", self.max_tokens, self.overlap_tokens)
    }

    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "type": "static",
            "static": {
                "max_chunk_size_tokens": self.max_tokens,
                "chunk_overlap_tokens": self.overlap_tokens,
            }
        })
    }
}

/// A request's `chunking_strategy`: `auto` (the server's choice for its model) or explicit numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Value")]
pub enum ChunkingStrategy {
    #[default]
    Auto,
    Static(Chunking),
}

impl ChunkingStrategy {
    /// The numbers to chunk with; `auto` fills a window of `model_max_tokens`.
    pub fn resolve(self, model_max_tokens: u32) -> Chunking {
        match self {
            ChunkingStrategy::Auto => Chunking::auto(model_max_tokens),
            ChunkingStrategy::Static(c) => c,
        }
    }

    /// Parses `{type: auto}` or `{type: static, static: {max_chunk_size_tokens,
    /// chunk_overlap_tokens}}`; `null` is `auto`. The error is the reason, without the field name.
    pub fn parse(v: &Value) -> Result<Self, String> {
        if v.is_null() {
            return Ok(ChunkingStrategy::Auto);
        }
        let obj = v.as_object().ok_or("expected an object")?;
        match obj.get("type").and_then(Value::as_str) {
            Some("auto") => Ok(ChunkingStrategy::Auto),
            Some("static") => {
                let s = obj
                    .get("static")
                    .and_then(Value::as_object)
                    .ok_or("a 'static' strategy needs a 'static' object")?;
                let num = |k: &str| -> Result<i64, String> {
                    s.get(k)
                        .and_then(Value::as_i64)
                        .ok_or_else(|| format!("'{k}' must be an integer"))
                };
                let max = num("max_chunk_size_tokens")?;
                let overlap = num("chunk_overlap_tokens")?;
                if !(i64::from(MIN_CHUNK_TOKENS)..=i64::from(MAX_CHUNK_TOKENS)).contains(&max) {
                    return Err(format!(
                        "max_chunk_size_tokens must be between {MIN_CHUNK_TOKENS} and {MAX_CHUNK_TOKENS}, got {max}"
                    ));
                }
                if overlap < 0 || overlap > max / 2 {
                    return Err(format!(
                        "chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens ({}), got {overlap}",
                        max / 2
                    ));
                }
                Ok(ChunkingStrategy::Static(Chunking {
                    max_tokens: max as u32,
                    overlap_tokens: overlap as u32,
                }))
            }
            Some("other") => Err("the 'other' strategy cannot be requested".into()),
            _ => Err("'type' must be 'auto' or 'static'".into()),
        }
    }
}

impl TryFrom<Value> for ChunkingStrategy {
    type Error = String;
    fn try_from(v: Value) -> Result<Self, String> {
        ChunkingStrategy::parse(&v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auto_fits_the_model() {
        assert_eq!(
            Chunking::auto(254),
            Chunking {
                max_tokens: 254,
                overlap_tokens: 64
            }
        );
        assert_eq!(
            Chunking::auto(800),
            Chunking {
                max_tokens: 800,
                overlap_tokens: 200
            }
        );
        assert_eq!(
            Chunking::auto(8192),
            Chunking {
                max_tokens: 800,
                overlap_tokens: 400
            }
        );
        assert_eq!(
            ChunkingStrategy::parse(&Value::Null).map(|s| s.resolve(256)),
            Ok(Chunking::auto(256))
        );
    }

    #[test]
    fn static_bounds() {
        let s = |m: i64, o: i64| json!({"type": "static", "static": {"max_chunk_size_tokens": m, "chunk_overlap_tokens": o}});
        assert!(ChunkingStrategy::parse(&s(100, 50)).is_ok());
        assert!(ChunkingStrategy::parse(&s(4096, 2048)).is_ok());
        assert!(ChunkingStrategy::parse(&s(99, 0)).is_err());
        assert!(ChunkingStrategy::parse(&s(4097, 0)).is_err());
        assert!(ChunkingStrategy::parse(&s(200, 101)).is_err());
        assert!(ChunkingStrategy::parse(&s(200, -1)).is_err());
        assert!(ChunkingStrategy::parse(&json!({"type": "magic"})).is_err());
    }
}
