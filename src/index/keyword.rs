//! The keyword leg's sparse vectors: BM25 over Qdrant's own text pipeline (word tokenizer,
//! lowercasing, English stop-words and Snowball stemming, token ids by murmur3), through
//! `qdrant_edge::bm25_embed`. A document vector holds each term's saturated, length-normalised
//! frequency; a query vector holds 1.0 per distinct term; the engine multiplies by each term's
//! inverse document frequency at query time (`Modifier::Idf`), so the dot product is the
//! chunk's BM25 score. Every backend builds its sparse vectors here, with one configuration, so
//! a Qdrant server (with the same `Idf` modifier) scores exactly as the embedded engine does and
//! points can move between them without re-reading any text.

use qdrant_edge::bm25_embed::{EdgeBm25, EdgeBm25Config};
use qdrant_edge::external::ordered_float::NotNan;

/// The sparse vector's name in the index (the dense one is the unnamed default).
pub const SPARSE_VECTOR: &str = "bm25";

/// BM25's `avg_len`: the mean number of terms a chunk holds after stop-words are dropped. A
/// default chunk (254 model tokens) holds about 190 words, of which about 120 remain.
const AVG_TERMS: f64 = 120.0;

/// A sparse vector: term ids, ascending and distinct, and their weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sparse {
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Sparse {
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Builds documents' and queries' sparse vectors. Cheap to share; building one is not free
/// (stop-word lists, stemmer), so the index keeps one.
pub struct Keywords(EdgeBm25);

impl std::fmt::Debug for Keywords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keywords(bm25)")
    }
}

impl Keywords {
    pub fn new() -> crate::domain::Result<Self> {
        let defaults = EdgeBm25Config::default();
        let config = EdgeBm25Config {
            avg_len: NotNan::new(AVG_TERMS).unwrap_or(defaults.avg_len),
            ..defaults
        };
        EdgeBm25::new(config)
            .map(Self)
            .map_err(|e| crate::domain::Error::Internal(anyhow::anyhow!("BM25 model: {e}")))
    }

    /// A chunk's vector (term frequencies, saturated and length-normalised).
    pub fn document(&self, text: &str) -> Sparse {
        let v = self.0.embed_document(text);
        Sparse {
            indices: v.indices,
            values: v.values,
        }
    }

    /// A query's vector (1.0 per distinct term); empty when the query has no terms left after
    /// stop-words.
    pub fn query(&self, text: &str) -> Sparse {
        let v = self.0.embed_query(text);
        Sparse {
            indices: v.indices,
            values: v.values,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_and_inflections_do_not_matter_but_identifiers_do() {
        let k = Keywords::new().unwrap();
        let q = k.query("How do I configure the packages?");
        let d = k.document("Configuring a package is done by dpkg-reconfigure.");
        // "configure"/"configuring" and "packages"/"package" stem alike; "how", "do", "i" go.
        assert_eq!(q.indices.len(), 2);
        assert!(q.indices.iter().all(|t| d.indices.contains(t)));
        // An identifier's parts are terms of their own.
        let dpkg = k.query("dpkg");
        assert_eq!(dpkg.indices.len(), 1);
        assert!(d.indices.contains(&dpkg.indices[0]));
        assert!(k.query("the of and").is_empty());
    }
}
