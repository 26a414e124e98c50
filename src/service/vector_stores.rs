//! Vector stores: create, list, retrieve, modify, delete, search.

use serde_json::Value;
use std::collections::HashMap;

use crate::app::AppState;
use crate::db::{ListWindow, Position};
use crate::domain::attributes::parse_metadata;
use crate::domain::{
    page, Attributes, Chunking, Error, FileCounts, FileId, Filter, JobKind, NewJob, Order, Page,
    ProjectId, Resource, Result, VectorStoreId, VectorStoreRecord,
};
use crate::service::vs_files;

/// A store with what its object shows.
#[derive(Debug, Clone)]
pub struct StoreView {
    pub store: VectorStoreRecord,
    pub counts: FileCounts,
    pub usage_bytes: i64,
    pub expired: bool,
}

impl StoreView {
    pub fn status(&self) -> &'static str {
        if self.expired {
            "expired"
        } else if self.counts.in_progress > 0 {
            "in_progress"
        } else {
            "completed"
        }
    }
}

pub async fn view(st: &AppState, store: VectorStoreRecord) -> Result<StoreView> {
    let (counts, usage_bytes) = st.meta.store_stats(&store.id).await?;
    let expired = store.is_expired(st.clock.now());
    Ok(StoreView {
        store,
        counts,
        usage_bytes,
        expired,
    })
}

pub fn parse_id(id: &str) -> Result<VectorStoreId> {
    VectorStoreId::parse(id).ok_or_else(|| Error::not_found(Resource::VectorStore, id))
}

pub async fn get_record(st: &AppState, project: &ProjectId, id: &str) -> Result<VectorStoreRecord> {
    let vid = parse_id(id)?;
    st.meta
        .get_vector_store(project, &vid)
        .await?
        .ok_or_else(|| Error::not_found(Resource::VectorStore, id))
}

pub async fn get(st: &AppState, project: &ProjectId, id: &str) -> Result<StoreView> {
    let store = get_record(st, project, id).await?;
    view(st, store).await
}

fn opt_string(
    body: &serde_json::Map<String, Value>,
    key: &'static str,
    max: usize,
) -> Result<Option<String>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(Error::invalid(
            format!("'{key}' must be at most {max} characters."),
            key,
        )),
        Some(_) => Err(Error::invalid(
            format!("Invalid type for '{key}': expected a string."),
            key,
        )),
    }
}

/// `expires_after: {anchor: "last_active_at", days: 1..=365}`; `Some(None)` when explicitly null.
fn parse_expires_after(body: &serde_json::Map<String, Value>) -> Result<Option<Option<i64>>> {
    let Some(v) = body.get("expires_after") else {
        return Ok(None);
    };
    if v.is_null() {
        return Ok(Some(None));
    }
    let bad = |m: &str| Error::invalid(format!("Invalid 'expires_after': {m}"), "expires_after");
    let obj = v.as_object().ok_or_else(|| bad("expected an object"))?;
    if obj.get("anchor").and_then(Value::as_str) != Some("last_active_at") {
        return Err(bad("'anchor' must be 'last_active_at'"));
    }
    let days = obj
        .get("days")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("'days' must be an integer"))?;
    if !(1..=365).contains(&days) {
        return Err(bad("'days' must be between 1 and 365"));
    }
    Ok(Some(Some(days)))
}

pub const MAX_FILE_IDS: usize = 500;

pub async fn create(
    st: &AppState,
    project: &ProjectId,
    body: &serde_json::Map<String, Value>,
) -> Result<StoreView> {
    let name = opt_string(body, "name", 256)?;
    let description = opt_string(body, "description", 512)?;
    let metadata = parse_metadata(body.get("metadata"), "metadata")?;
    let expires_after_days = parse_expires_after(body)?.flatten();
    let chunking = Chunking::parse(
        body.get("chunking_strategy"),
        st.pipeline.auto_chunk_tokens(),
        "chunking_strategy",
    )?;
    let file_ids = vs_files::parse_file_ids(body.get("file_ids"), "file_ids", 0, MAX_FILE_IDS)?;
    let now = st.clock.now();
    let store = VectorStoreRecord {
        id: VectorStoreId::generate(),
        project_id: project.clone(),
        name,
        description,
        metadata,
        created_at: now,
        last_active_at: now,
        expires_after_days,
    };
    let mut files = Vec::with_capacity(file_ids.len());
    for file_id in &file_ids {
        vs_files::check_attachable(st, project, file_id).await?;
        files.push(vs_files::new_attachment(
            &store,
            file_id,
            None,
            chunking,
            Attributes::new(),
            now,
        ));
    }
    st.meta.create_vector_store(&store, &files).await?;
    if !files.is_empty() {
        st.jobs_notify.notify_one();
    }
    tracing::info!(vector_store_id = %store.id, files = files.len(), "vector store created");
    view(st, store).await
}

pub struct ListParams<'a> {
    pub limit: Option<&'a str>,
    pub order: Option<&'a str>,
    pub after: Option<&'a str>,
    pub before: Option<&'a str>,
}

/// Parses `limit` (1..=100, default 20), `order`, and resolves `after`/`before` cursors.
pub async fn window<'a, F, Fut>(p: &ListParams<'a>, position: F) -> Result<ListWindow>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Position>>>,
{
    let limit = page::parse_limit(p.limit, 20, 100)?;
    let order = Order::parse(p.order)?;
    let resolve = |param: &'static str, v: Option<&'a str>| {
        let fut = v.map(&position);
        async move {
            match fut {
                None => Ok(None),
                Some(f) => f.await?.map(Some).ok_or_else(|| {
                    Error::invalid(
                        format!("Invalid value for '{param}': no such object."),
                        param,
                    )
                }),
            }
        }
    };
    let after = resolve("after", p.after).await?;
    let before = resolve("before", p.before).await?;
    Ok(ListWindow {
        order,
        after,
        before,
        limit: limit + 1,
    })
}

pub async fn list(
    st: &AppState,
    project: &ProjectId,
    p: ListParams<'_>,
) -> Result<Page<StoreView>> {
    let w = window(&p, |id| async move {
        match VectorStoreId::parse(id) {
            Some(v) => st.meta.vector_store_position(project, &v).await,
            None => Ok(None),
        }
    })
    .await?;
    let rows = st.meta.list_vector_stores(project, &w).await?;
    let page = Page::from_overfetch(rows, w.limit - 1);
    let mut items = Vec::with_capacity(page.items.len());
    for s in page.items {
        items.push(view(st, s).await?);
    }
    Ok(Page {
        items,
        has_more: page.has_more,
    })
}

pub async fn modify(
    st: &AppState,
    project: &ProjectId,
    id: &str,
    body: &serde_json::Map<String, Value>,
) -> Result<StoreView> {
    let mut store = get_record(st, project, id).await?;
    if body.contains_key("name") {
        store.name = opt_string(body, "name", 256)?;
    }
    if body.contains_key("metadata") {
        store.metadata = parse_metadata(body.get("metadata"), "metadata")?;
    }
    if let Some(expiry) = parse_expires_after(body)? {
        store.expires_after_days = expiry;
    }
    store.last_active_at = st.clock.now();
    st.meta.update_vector_store(&store).await?;
    view(st, store).await
}

pub async fn delete(st: &AppState, project: &ProjectId, id: &str) -> Result<VectorStoreId> {
    let vid = parse_id(id)?;
    let purge = NewJob {
        kind: JobKind::PurgeStore,
        project_id: project.clone(),
        file_id: None,
        vector_store_id: Some(vid.clone()),
    };
    if !st
        .meta
        .delete_vector_store(project, &vid, &purge, st.clock.now())
        .await?
    {
        return Err(Error::not_found(Resource::VectorStore, id));
    }
    st.jobs_notify.notify_one();
    tracing::info!(vector_store_id = %vid, "vector store deleted");
    Ok(vid)
}

// --- search ----------------------------------------------------------------------------------

pub struct SearchRequest {
    pub queries: Vec<String>,
    pub filter: Option<Filter>,
    pub max_num_results: usize,
    pub score_threshold: f32,
}

pub struct SearchHit {
    pub file_id: FileId,
    pub filename: String,
    pub score: f32,
    pub attributes: Attributes,
    pub text: String,
    pub extra: serde_json::Map<String, Value>,
}

pub fn parse_search(body: &serde_json::Map<String, Value>) -> Result<SearchRequest> {
    let queries = match body.get("query") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|q| q.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Error::invalid("'query' must be a string or an array of strings.", "query")
            })?,
        None | Some(Value::Null) => return Err(Error::missing("query")),
        Some(_) => {
            return Err(Error::invalid(
                "'query' must be a string or an array of strings.",
                "query",
            ))
        }
    };
    if queries.is_empty() || queries.iter().any(|q| q.trim().is_empty()) || queries.len() > 16 {
        return Err(Error::invalid(
            "'query' must hold 1 to 16 non-empty strings.",
            "query",
        ));
    }
    let max_num_results = match body.get("max_num_results") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_i64() {
            Some(n) if (1..=50).contains(&n) => n as usize,
            _ => {
                return Err(Error::invalid(
                    "'max_num_results' must be an integer between 1 and 50.",
                    "max_num_results",
                ))
            }
        },
    };
    let filter = match body.get("filters") {
        None | Some(Value::Null) => None,
        Some(f) => Some(Filter::parse(f)?),
    };
    let mut score_threshold = 0.0f32;
    if let Some(r) = body.get("ranking_options").filter(|v| !v.is_null()) {
        let r = r.as_object().ok_or_else(|| {
            Error::invalid("'ranking_options' must be an object.", "ranking_options")
        })?;
        match r.get("ranker") {
            None | Some(Value::Null) => {}
            Some(Value::String(s))
                if ["none", "auto", "default-2024-11-15"].contains(&s.as_str()) => {}
            Some(_) => {
                return Err(Error::invalid(
                    "'ranking_options.ranker' must be 'none', 'auto' or 'default-2024-11-15'.",
                    "ranking_options",
                ))
            }
        }
        if let Some(t) = r.get("score_threshold").filter(|v| !v.is_null()) {
            match t.as_f64() {
                Some(x) if (0.0..=1.0).contains(&x) => score_threshold = x as f32,
                _ => {
                    return Err(Error::invalid(
                        "'ranking_options.score_threshold' must be a number between 0 and 1.",
                        "ranking_options",
                    ))
                }
            }
        }
    }
    match body.get("search_mode") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == "vector" => {}
        Some(_) => {
            return Err(Error::invalid(
                "'search_mode' must be 'vector'; keyword and hybrid search are not available yet.",
                "search_mode",
            ))
        }
    }
    Ok(SearchRequest {
        queries,
        filter,
        max_num_results,
        score_threshold,
    })
}

/// Embeds each query, searches the store inside the index (filters included), merges by best
/// score, and maps cosine similarity to 0..1.
pub async fn search(
    st: &AppState,
    project: &ProjectId,
    id: &str,
    req: SearchRequest,
) -> Result<Vec<SearchHit>> {
    let mut store = get_record(st, project, id).await?;
    let now = st.clock.now();
    if store.is_expired(now) {
        return Err(Error::invalid(
            format!("Vector store {id} has expired and can no longer be searched."),
            None,
        ));
    }
    let vectors = st.pipeline.embedder.embed(req.queries.clone()).await?;
    let excluded = st.meta.files_pending_purge(&store.id).await?;
    let mut best: HashMap<uuid::Uuid, crate::index::Hit> = HashMap::new();
    for v in vectors {
        let hits = st
            .index
            .search(
                &store.id,
                v,
                req.filter.as_ref(),
                &excluded,
                req.max_num_results,
                // Cosine can be negative; those hits score 0 and pass a threshold of 0.
                (req.score_threshold > 0.0).then_some(req.score_threshold),
            )
            .await?;
        for h in hits {
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
    let names: HashMap<FileId, String> = st.meta.filenames(&ids).await?.into_iter().collect();
    store.last_active_at = now;
    st.meta.update_vector_store(&store).await?;
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
