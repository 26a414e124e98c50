//! Search: embed the query (or each of several), find the nearest chunks of one store inside the
//! index (filters included), and merge.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::try_join_all;
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::db::Metadata;
use crate::domain::{
    Attributes, Error, FileId, Filter, ProjectId, Resource, Result, VectorStoreId,
};
use crate::index::{Hit, Leg, SearchQuery, VectorIndex};
use crate::ingest::embed::Embedder;
use crate::ingest::rerank::Reranker;

/// `POST /vector_stores/{id}/search`, parsed.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// 1 to [`MAX_QUERIES`] non-empty strings.
    pub queries: Vec<String>,
    pub filter: Option<Filter>,
    /// 1 to [`MAX_RESULTS`].
    pub max_num_results: usize,
    /// 0..1; 0 keeps every hit. Compared with the score a hit is answered with.
    pub score_threshold: f32,
    pub mode: SearchMode,
    pub ranker: Ranker,
    /// The keyword leg searches each query with its stop-words and question scaffolding
    /// dropped ([`rewrite_query`]); the vector leg reads the query as given.
    pub rewrite_query: bool,
}

/// Which legs a search runs (llama-stack's `search_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Cosine similarity of the embedding model's vectors.
    Vector,
    /// BM25 over the chunk text.
    Keyword,
    /// Both, fused by the ranker.
    Hybrid,
}

impl SearchMode {
    /// What a search that names no mode runs (OpenAI's `ranker: auto`): the best of the three
    /// on the retrieval evaluation (README, "Search modes").
    pub const DEFAULT: SearchMode = SearchMode::Hybrid;

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "vector" => Some(SearchMode::Vector),
            "keyword" => Some(SearchMode::Keyword),
            "hybrid" => Some(SearchMode::Hybrid),
            _ => None,
        }
    }
}

/// How ranked lists (the legs of a hybrid search, and the sub-queries of a list query) become
/// one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ranker {
    /// Reciprocal rank fusion: each list adds `1 / (impact_factor + rank)`; the sum is divided
    /// by what a hit ranked first in every list gets, so scores are 0..1.
    Rrf { impact_factor: f32 },
    /// `alpha * vector + (1 - alpha) * keyword`, both leg scores 0..1 (a leg that did not find
    /// the hit counts 0). Sub-queries of a list query are then fused by RRF.
    Weighted { alpha: f32 },
    /// Re-scores the candidates with a cross-encoder (`--reranker-model`).
    Rerank,
}

impl Ranker {
    /// llama-stack's default, from the RRF paper.
    pub const DEFAULT_IMPACT_FACTOR: f32 = 60.0;
    pub const DEFAULT_ALPHA: f32 = 0.5;
    /// What a search that names no ranker (or OpenAI's `auto`) fuses with: the best on the
    /// retrieval evaluation (README, "Search modes"), and its scores keep an absolute meaning
    /// (an unrelated chunk scores low whatever else the store holds), which a threshold needs.
    pub const DEFAULT: Ranker = Ranker::Weighted {
        alpha: Self::DEFAULT_ALPHA,
    };
}

pub const MAX_QUERIES: usize = 16;
/// Characters per query string: OpenAI's 8,192-token input limit at about four characters a
/// token. The model reads only its first 256 tokens; the cap bounds what tokenising costs.
pub const MAX_QUERY_CHARS: usize = 32_768;
/// How stale `last_active_at` may get before a search moves it.
const TOUCH_INTERVAL_SECS: i64 = 60;
pub const MAX_RESULTS: usize = 50;
/// Hits a single-list search fetches beyond `max_num_results`.
const SPARE_HITS: usize = 8;
/// Candidates each leg brings to a fusion, at least.
const MIN_CANDIDATES: usize = 50;
/// A BM25 score of this maps to 0.5 in the keyword leg's 0..1 scale (`s / (s + K)`); about what
/// a chunk gets for two of the query's rarer terms.
const KEYWORD_HALF_SCORE: f32 = 10.0;

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
    reranker: Option<Arc<Reranker>>,
}

/// How many of the fused candidates a cross-encoder re-scores for `max_num_results` answers:
/// twice as many, at least 20, at most [`MAX_RESULTS`] (each costs a model run over the query
/// and the chunk together).
fn rerank_candidates(max_num_results: usize) -> usize {
    (2 * max_num_results).clamp(20, MAX_RESULTS)
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
            reranker: None,
        }
    }

    /// With the cross-encoder that `ranker: "rerank"` uses (`--reranker-model`).
    pub fn with_reranker(mut self, reranker: Option<Arc<Reranker>>) -> Self {
        self.reranker = reranker;
        self
    }

    /// Runs the request's legs for each query, fuses them (see [`Ranker`]), and keeps what
    /// scores at least the threshold, best first.
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
        let reranker = match (req.ranker, &self.reranker) {
            (Ranker::Rerank, None) => {
                return Err(Error::invalid(
                    "ranker 'rerank' needs a cross-encoder: start the server with \
                     --reranker-model DIR (an ONNX cross-encoder with its tokenizer.json).",
                    "ranking_options",
                ))
            }
            (Ranker::Rerank, Some(r)) => Some(r.clone()),
            _ => None,
        };
        // A rerank re-scores what the default fusion brings.
        let fusion = if reranker.is_some() {
            Ranker::DEFAULT
        } else {
            req.ranker
        };
        let dense = req.mode != SearchMode::Keyword;
        let keyword = req.mode != SearchMode::Vector;
        let lists = req.queries.len() * (usize::from(dense) + usize::from(keyword));
        // One list is answered as its leg ranks it; a fusion or a rerank needs more candidates.
        // (A few spare hits take the place of any dropped by [`Self::answerable`].)
        let limit = if lists == 1 && reranker.is_none() {
            req.max_num_results + SPARE_HITS
        } else {
            (3 * req.max_num_results).max(MIN_CANDIDATES)
        };
        let excluded = self.meta.files_pending_purge(&store.id).await?;
        let scope = |leg| SearchQuery {
            store: store.id.clone(),
            project: store.project_id.clone(),
            leg,
            filter: req.filter.clone(),
            exclude_files: excluded.clone(),
            limit,
            score_threshold: None,
        };
        // The keyword legs need no embedding: they run while the queries are embedded and their
        // vector legs run (each index search on a thread of its own).
        let dense_legs = async {
            if !dense {
                return Ok(Vec::new());
            }
            let vectors = self.embedder.embed(req.queries.clone()).await?;
            try_join_all(vectors.into_iter().map(|v| async {
                let mut hits = self.index.search(&scope(Leg::Dense(v))).await?;
                for h in &mut hits {
                    h.score = h.score.clamp(0.0, 1.0);
                }
                Ok::<_, Error>(hits)
            }))
            .await
        };
        let keyword_legs = async {
            if !keyword {
                return Ok(Vec::new());
            }
            try_join_all(req.queries.iter().map(|q| async {
                let text = if req.rewrite_query {
                    rewrite_query(q)
                } else {
                    q.clone()
                };
                let mut hits = self.index.search(&scope(Leg::Keyword(text))).await?;
                for h in &mut hits {
                    h.score = keyword_score(h.score);
                }
                Ok::<_, Error>(hits)
            }))
            .await
        };
        let (dense_hits, keyword_hits) = tokio::try_join!(dense_legs, keyword_legs)?;
        // Per query: its vector leg's hits, then its keyword leg's, each scored 0..1.
        let mut dense_hits = dense_hits.into_iter();
        let mut keyword_hits = keyword_hits.into_iter();
        let per_query: Vec<Vec<Vec<Hit>>> = req
            .queries
            .iter()
            .map(|_| {
                dense_hits
                    .next()
                    .into_iter()
                    .chain(keyword_hits.next())
                    .collect()
            })
            .collect();
        let mut hits = fuse(per_query, req.mode, fusion);
        if let Some(reranker) = reranker {
            hits.truncate(rerank_candidates(req.max_num_results));
            rerank(&reranker, &req.queries, &mut hits).await?;
        }
        hits.retain(|h| h.score >= req.score_threshold);
        let names = self.answerable(&mut hits, req.max_num_results).await?;
        hits.truncate(req.max_num_results);
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
                score: h.score,
                attributes: h.attributes,
                text: h.text,
                extra: h.extra,
            })
            .collect())
    }
}

impl SearchService {
    /// The names of the files of the first `max` hits, after dropping every hit whose file has
    /// no row: a point written by a job that outlived its file's purge (a worker cut off from the
    /// database past its lease) is never answered, whatever the index still holds. Usually one
    /// lookup of the first `max` hits' files; a dropped hit brings the next ones in.
    async fn answerable(&self, hits: &mut Vec<Hit>, max: usize) -> Result<HashMap<FileId, String>> {
        let mut names: HashMap<FileId, String> = HashMap::new();
        let mut checked: std::collections::HashSet<FileId> = std::collections::HashSet::new();
        loop {
            let mut ids: Vec<FileId> = hits
                .iter()
                .take(max)
                .filter(|h| !checked.contains(&h.file_id))
                .map(|h| h.file_id.clone())
                .collect();
            if ids.is_empty() {
                return Ok(names);
            }
            ids.sort();
            ids.dedup();
            names.extend(self.meta.filenames(&ids).await?);
            checked.extend(ids);
            hits.retain(|h| names.contains_key(&h.file_id) || !checked.contains(&h.file_id));
        }
    }
}

/// Scores each hit by the cross-encoder: its best relevance to any of the queries, 0..1.
async fn rerank(reranker: &Reranker, queries: &[String], hits: &mut [Hit]) -> Result<()> {
    let texts: Vec<String> = hits.iter().map(|h| h.text.clone()).collect();
    let mut best = vec![0.0f32; hits.len()];
    for q in queries {
        let scores = reranker.scores(q, texts.clone()).await?;
        for (b, s) in best.iter_mut().zip(scores) {
            *b = b.max(s);
        }
    }
    for (h, s) in hits.iter_mut().zip(best) {
        h.score = s.clamp(0.0, 1.0);
    }
    best_first(hits);
    Ok(())
}

/// A BM25 score on 0..1: `s / (s + K)`, K = [`KEYWORD_HALF_SCORE`]. Monotone, so it keeps the
/// leg's order; absolute, so a threshold means the same in every store.
fn keyword_score(bm25: f32) -> f32 {
    let s = bm25.max(0.0);
    s / (s + KEYWORD_HALF_SCORE)
}

/// Makes one ranking of each query's legs. One list: as its leg scored it. A hybrid query with
/// the weighted ranker: its legs' scores blended. Then, when more than one list is left (legs
/// under RRF, or several queries), reciprocal rank fusion over them, normalised to 0..1. Ties go
/// to the earlier chunk.
fn fuse(per_query: Vec<Vec<Vec<Hit>>>, mode: SearchMode, ranker: Ranker) -> Vec<Hit> {
    let mut lists: Vec<Vec<Hit>> = Vec::new();
    for legs in per_query {
        match ranker {
            Ranker::Weighted { alpha } if mode == SearchMode::Hybrid && legs.len() == 2 => {
                lists.push(blend(legs, alpha));
            }
            _ => lists.extend(legs),
        }
    }
    let impact_factor = match ranker {
        Ranker::Rrf { impact_factor } => impact_factor,
        _ => Ranker::DEFAULT_IMPACT_FACTOR,
    };
    let mut hits = if lists.len() == 1 {
        lists.pop().unwrap_or_default()
    } else {
        reciprocal_rank_fusion(lists, impact_factor)
    };
    best_first(&mut hits);
    hits
}

fn best_first(hits: &mut [Hit]) {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.file_id.cmp(&b.file_id))
            .then(a.chunk_index.cmp(&b.chunk_index))
    });
}

/// `alpha * vector + (1 - alpha) * keyword` per chunk (0 for a leg that did not find it), best
/// first (a list that RRF then ranks).
fn blend(legs: Vec<Vec<Hit>>, alpha: f32) -> Vec<Hit> {
    let mut merged: HashMap<uuid::Uuid, (Hit, f32)> = HashMap::new();
    for (i, leg) in legs.into_iter().enumerate() {
        let weight = if i == 0 { alpha } else { 1.0 - alpha };
        for h in leg {
            let part = weight * h.score;
            merged
                .entry(h.id)
                .and_modify(|(_, s)| *s += part)
                .or_insert((h, part));
        }
    }
    let mut hits: Vec<Hit> = merged
        .into_values()
        .map(|(mut h, s)| {
            h.score = s.clamp(0.0, 1.0);
            h
        })
        .collect();
    best_first(&mut hits);
    hits
}

/// Each list adds `1 / (k + rank)` (rank from 1) to its chunks; the sum is divided by
/// `lists / (k + 1)`, what a chunk ranked first everywhere gets.
fn reciprocal_rank_fusion(lists: Vec<Vec<Hit>>, k: f32) -> Vec<Hit> {
    let best = lists.len() as f32 / (k + 1.0);
    let mut merged: HashMap<uuid::Uuid, (Hit, f32)> = HashMap::new();
    for list in lists {
        for (rank, h) in list.into_iter().enumerate() {
            let part = 1.0 / (k + rank as f32 + 1.0);
            merged
                .entry(h.id)
                .and_modify(|(_, s)| *s += part)
                .or_insert((h, part));
        }
    }
    merged
        .into_values()
        .map(|(mut h, s)| {
            h.score = (s / best).clamp(0.0, 1.0);
            h
        })
        .collect()
}

/// Words that carry no topic: question scaffolding and English function words.
const SCAFFOLDING: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "describe",
    "do", "does", "explain", "find", "for", "from", "give", "how", "i", "in", "is", "it", "me",
    "my", "of", "on", "or", "please", "should", "show", "tell", "that", "the", "there", "this",
    "to", "use", "used", "using", "way", "what", "when", "where", "which", "who", "why", "will",
    "with", "would", "you", "your",
];

/// `rewrite_query: true`: the query reduced to the words that name what is sought. Words are
/// split on whitespace and stripped of surrounding punctuation (`?`, `,`, quotes, brackets, a
/// final `.`); those in [`SCAFFOLDING`] (compared case-insensitively) go, and identifiers
/// (`dpkg-reconfigure`, `--no-install-recommends`, `/etc/fstab`) stay whole. A query with nothing
/// left is kept as given.
pub fn rewrite_query(q: &str) -> String {
    let kept: Vec<&str> = q
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| "?!,;:\"'()[]".contains(c))
                .trim_end_matches('.')
        })
        .filter(|w| !w.is_empty() && !SCAFFOLDING.contains(&w.to_lowercase().as_str()))
        .collect();
    if kept.is_empty() {
        q.trim().to_owned()
    } else {
        kept.join(" ")
    }
}
