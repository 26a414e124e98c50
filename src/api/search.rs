//! `POST /vector_stores/{vs}/search`.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ApiJson, ApiResult};
use super::vector_stores::store_id;
use super::vs_files::ContentText;
use super::Project;
use crate::domain::attributes::attributes_to_json;
use crate::domain::{Error, Filter, Result};
use crate::service::search::{
    rewrite_query, Ranker, SearchMode, SearchRequest, MAX_QUERIES, MAX_QUERY_CHARS, MAX_RESULTS,
};
use crate::service::{SearchService, Services};

pub fn router() -> Router<Services> {
    Router::new().route("/vector_stores/{vs}/search", post(search))
}

/// OpenAI's `VectorStoreSearchRequest`, plus llama-stack's `search_mode`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct VectorStoreSearchRequest {
    #[schema(value_type = Object)]
    pub query: Option<Query>,
    #[schema(value_type = Object)]
    pub filters: Option<Filter>,
    pub max_num_results: Option<i64>,
    pub ranking_options: Option<RankingOptions>,
    /// The keyword leg drops stop-words and question scaffolding; `search_query` shows what it
    /// searched.
    pub rewrite_query: Option<bool>,
    /// llama-stack's `vector`, `keyword` or `hybrid` (the default).
    pub search_mode: Option<String>,
}

/// `query`: one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Value")]
pub struct Query(pub Vec<String>);

impl TryFrom<Value> for Query {
    type Error = String;
    fn try_from(v: Value) -> std::result::Result<Self, String> {
        let bad = || "must be a string or an array of strings.".to_owned();
        match v {
            Value::String(s) => Ok(Query(vec![s])),
            Value::Array(items) => items
                .into_iter()
                .map(|q| match q {
                    Value::String(s) => Ok(s),
                    _ => Err(bad()),
                })
                .collect::<std::result::Result<_, _>>()
                .map(Query),
            _ => Err(bad()),
        }
    }
}

/// `ranking_options`: OpenAI's (`ranker`: `auto`, `none`, `default-2024-11-15`;
/// `score_threshold`) and llama-stack's rankers, as a name (`rrf`, `weighted`, `rerank`, with
/// `impact_factor` or `alpha` beside it) or as its object (`{"type": "rrf", "impact_factor": 60}`,
/// `{"type": "weighted", "alpha": 0.5}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RankingOptions {
    #[schema(value_type = Object)]
    pub ranker: Option<Value>,
    pub score_threshold: Option<f64>,
    pub impact_factor: Option<f64>,
    pub alpha: Option<f64>,
}

impl RankingOptions {
    /// The ranker it names; `None` for OpenAI's (the default fusion).
    fn ranker(&self) -> Result<Option<Ranker>> {
        let bad = |m: &str| Err(Error::invalid(m.to_owned(), "ranking_options"));
        let (name, impact_factor, alpha) = match &self.ranker {
            None | Some(Value::Null) => (None, self.impact_factor, self.alpha),
            Some(Value::String(s)) => (Some(s.as_str()), self.impact_factor, self.alpha),
            Some(Value::Object(o)) => (
                o.get("type").and_then(Value::as_str),
                o.get("impact_factor")
                    .and_then(Value::as_f64)
                    .or(self.impact_factor),
                o.get("alpha").and_then(Value::as_f64).or(self.alpha),
            ),
            Some(_) => return bad("'ranking_options.ranker' must be a string or an object."),
        };
        let ranker = match name {
            None | Some("none" | "auto" | "default-2024-11-15") => None,
            Some("rrf") => {
                let k = impact_factor.unwrap_or(f64::from(Ranker::DEFAULT_IMPACT_FACTOR));
                if !(k > 0.0 && k <= 1e6) {
                    return bad("'impact_factor' must be a number greater than 0.");
                }
                Some(Ranker::Rrf {
                    impact_factor: k as f32,
                })
            }
            Some("weighted") => {
                let alpha = alpha.unwrap_or(f64::from(Ranker::DEFAULT_ALPHA));
                if !(0.0..=1.0).contains(&alpha) {
                    return bad("'alpha' must be a number between 0 and 1.");
                }
                Some(Ranker::Weighted {
                    alpha: alpha as f32,
                })
            }
            Some("rerank") => Some(Ranker::Rerank),
            Some(_) => {
                return bad(
                    "'ranking_options.ranker' must be 'none', 'auto', 'default-2024-11-15', \
                     'rrf', 'weighted' or 'rerank'.",
                )
            }
        };
        Ok(ranker)
    }
}

/// OpenAI's `VectorStoreSearchResultsPage`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VectorStoreSearchResultsPage {
    pub object: &'static str,
    pub search_query: Vec<String>,
    pub data: Vec<VectorStoreSearchResultItem>,
    pub has_more: bool,
    pub next_page: Option<String>,
}

/// OpenAI's `VectorStoreSearchResultItem`, plus where the chunk came from (`extra`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VectorStoreSearchResultItem {
    pub file_id: String,
    pub filename: String,
    pub score: f32,
    pub attributes: Value,
    pub content: Vec<ContentText>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl VectorStoreSearchRequest {
    fn into_request(self) -> Result<SearchRequest> {
        let queries = self.query.ok_or_else(|| Error::missing("query"))?.0;
        if queries.is_empty()
            || queries.iter().any(|q| q.trim().is_empty())
            || queries.len() > MAX_QUERIES
        {
            return Err(Error::invalid(
                format!("'query' must hold 1 to {MAX_QUERIES} non-empty strings."),
                "query",
            ));
        }
        if queries.iter().any(|q| q.chars().count() > MAX_QUERY_CHARS) {
            return Err(Error::invalid(
                format!("Each 'query' string must be at most {MAX_QUERY_CHARS} characters."),
                "query",
            ));
        }
        let max_num_results = match self.max_num_results {
            None => 10,
            Some(n) if (1..=MAX_RESULTS as i64).contains(&n) => n as usize,
            Some(_) => {
                return Err(Error::invalid(
                    format!("'max_num_results' must be an integer between 1 and {MAX_RESULTS}."),
                    "max_num_results",
                ))
            }
        };
        let mut score_threshold = 0.0f32;
        let mut ranker = None;
        if let Some(r) = self.ranking_options {
            ranker = r.ranker()?;
            match r.score_threshold {
                None => {}
                Some(x) if (0.0..=1.0).contains(&x) => score_threshold = x as f32,
                Some(_) => {
                    return Err(Error::invalid(
                        "'ranking_options.score_threshold' must be a number between 0 and 1.",
                        "ranking_options",
                    ))
                }
            }
        }
        let mode = match self.search_mode.as_deref() {
            None => SearchMode::DEFAULT,
            Some(s) => SearchMode::parse(s).ok_or_else(|| {
                Error::invalid(
                    "'search_mode' must be 'vector', 'keyword' or 'hybrid'.",
                    "search_mode",
                )
            })?,
        };
        Ok(SearchRequest {
            queries,
            filter: self.filters,
            max_num_results,
            score_threshold,
            mode,
            ranker: ranker.unwrap_or(Ranker::DEFAULT),
            rewrite_query: self.rewrite_query.unwrap_or(false),
        })
    }
}

async fn search(
    State(search): State<SearchService>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(req): ApiJson<VectorStoreSearchRequest>,
) -> ApiResult<Json<VectorStoreSearchResultsPage>> {
    let id = store_id(&vs)?;
    let req = req.into_request()?;
    // As OpenAI does, a rewritten query is answered with what was searched.
    let search_query = if req.rewrite_query {
        req.queries.iter().map(|q| rewrite_query(q)).collect()
    } else {
        req.queries.clone()
    };
    let hits = search.search(&p, &id, req).await?;
    Ok(Json(VectorStoreSearchResultsPage {
        object: "vector_store.search_results.page",
        search_query,
        data: hits
            .into_iter()
            .map(|h| VectorStoreSearchResultItem {
                file_id: h.file_id.to_string(),
                filename: h.filename,
                score: h.score,
                attributes: attributes_to_json(&h.attributes),
                content: vec![ContentText::new(h.text)],
                extra: h.extra,
            })
            .collect(),
        has_more: false,
        next_page: None,
    }))
}
