//! Search: embed the query (or each of several), find the nearest chunks of one store inside the
//! index (filters included), and merge.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::db::Metadata;
use crate::domain::{
    Attributes, Error, FileId, Filter, ProjectId, Resource, Result, VectorStoreId,
};
use crate::index::{SearchQuery, VectorIndex};
use crate::ingest::embed::Embedder;

/// `POST /vector_stores/{id}/search`, parsed.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// 1 to [`MAX_QUERIES`] non-empty strings.
    pub queries: Vec<String>,
    pub filter: Option<Filter>,
    /// 1 to [`MAX_RESULTS`].
    pub max_num_results: usize,
    /// 0..1; 0 keeps every hit.
    pub score_threshold: f32,
}

pub const MAX_QUERIES: usize = 16;
/// Characters per query string: OpenAI's 8,192-token input limit at about four characters a
/// token. The model reads only its first 256 tokens; the cap bounds what tokenising costs.
pub const MAX_QUERY_CHARS: usize = 32_768;
/// How stale `last_active_at` may get before a search moves it.
const TOUCH_INTERVAL_SECS: i64 = 60;
pub const MAX_RESULTS: usize = 50;

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub file_id: FileId,
    pub filename: String,
    /// 0..1, best first.
    pub score: f32,
    pub attributes: Attributes,
    pub text: String,
    /// Where the chunk came from (page, section, …).
    pub extra: Map<String, Value>,
}

#[derive(Clone)]
pub struct SearchService {
    meta: Arc<dyn Metadata>,
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
    clock: Arc<dyn Clock>,
}

impl SearchService {
    pub fn new(
        meta: Arc<dyn Metadata>,
        index: Arc<dyn VectorIndex>,
        embedder: Arc<dyn Embedder>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            meta,
            index,
            embedder,
            clock,
        }
    }

    /// Searches the store once per query, keeps each chunk's best score, and maps cosine
    /// similarity to 0..1.
    pub async fn search(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
        req: SearchRequest,
    ) -> Result<Vec<SearchHit>> {
        let store = self
            .meta
            .get_vector_store(project, id)
            .await?
            .ok_or_else(|| Error::not_found(Resource::VectorStore, id.as_str()))?;
        let now = self.clock.now();
        if store.is_expired(now) {
            return Err(Error::invalid(
                format!("Vector store {id} has expired and can no longer be searched."),
                None,
            ));
        }
        let vectors = self.embedder.embed(req.queries.clone()).await?;
        let excluded = self.meta.files_pending_purge(&store.id).await?;
        let mut best: HashMap<uuid::Uuid, crate::index::Hit> = HashMap::new();
        for vector in vectors {
            let query = SearchQuery {
                store: store.id.clone(),
                project: store.project_id.clone(),
                vector,
                filter: req.filter.clone(),
                exclude_files: excluded.clone(),
                limit: req.max_num_results,
                // Cosine can be negative; those hits score 0 and pass a threshold of 0.
                score_threshold: (req.score_threshold > 0.0).then_some(req.score_threshold),
            };
            for h in self.index.search(&query).await? {
                match best.get(&h.id) {
                    Some(old) if old.score >= h.score => {}
                    _ => {
                        best.insert(h.id, h);
                    }
                }
            }
        }
        let mut hits: Vec<_> = best.into_values().collect();
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_index.cmp(&b.chunk_index))
        });
        hits.truncate(req.max_num_results);

        let mut ids: Vec<FileId> = hits.iter().map(|h| h.file_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let names: HashMap<FileId, String> = self.meta.filenames(&ids).await?.into_iter().collect();
        // Expiry counts in days: a search writes `last_active_at` at most once a minute, so a
        // busy store is not rewritten (and fsynced) on every search.
        if now - store.last_active_at >= TOUCH_INTERVAL_SECS {
            self.meta.touch_vector_store(&store.id, now).await?;
        }
        Ok(hits
            .into_iter()
            .map(|h| SearchHit {
                filename: names.get(&h.file_id).cloned().unwrap_or_default(),
                file_id: h.file_id,
                score: h.score.clamp(0.0, 1.0),
                attributes: h.attributes,
                text: h.text,
                extra: h.extra,
            })
            .collect())
    }
}
