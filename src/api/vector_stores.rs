//! `/vector_stores`, their files, file batches and search.

use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::error::{ApiJson, ApiQuery, ApiResult};
use super::{ListResponse, Project};
use crate::app::AppState;
use crate::domain::attributes::attributes_to_json;
use crate::domain::{FileBatchRecord, FileCounts, VsFileRecord, VsFileStatus};
use crate::service::vector_stores::{self as stores, ListParams, StoreView};
use crate::service::vs_files;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/vector_stores", post(create).get(list))
        .route(
            "/vector_stores/{vs}",
            get(retrieve).post(modify).delete(delete),
        )
        .route("/vector_stores/{vs}/search", post(search))
        .route("/vector_stores/{vs}/files", post(attach).get(list_files))
        .route(
            "/vector_stores/{vs}/files/{file}",
            get(retrieve_file).post(update_file).delete(detach_file),
        )
        .route(
            "/vector_stores/{vs}/files/{file}/content",
            get(file_content),
        )
        .route("/vector_stores/{vs}/file_batches", post(create_batch))
        .route(
            "/vector_stores/{vs}/file_batches/{batch}",
            get(retrieve_batch),
        )
        .route(
            "/vector_stores/{vs}/file_batches/{batch}/cancel",
            post(cancel_batch),
        )
        .route(
            "/vector_stores/{vs}/file_batches/{batch}/files",
            get(list_batch_files),
        )
}

/// What the SDK's pollers wait between polls of an in-progress object.
const POLL_AFTER_MS: &str = "500";

fn with_poll_hint(body: Value, in_progress: bool) -> Response {
    let mut res = Json(body).into_response();
    if in_progress {
        res.headers_mut().insert(
            HeaderName::from_static("openai-poll-after-ms"),
            HeaderValue::from_static(POLL_AFTER_MS),
        );
    }
    res
}

fn counts_json(c: &FileCounts) -> Value {
    json!({
        "in_progress": c.in_progress,
        "completed": c.completed,
        "failed": c.failed,
        "cancelled": c.cancelled,
        "total": c.total(),
    })
}

fn store_json(v: &StoreView) -> Value {
    let s = &v.store;
    json!({
        "id": s.id.as_str(),
        "object": "vector_store",
        "created_at": s.created_at,
        "name": s.name,
        "description": s.description,
        "usage_bytes": v.usage_bytes,
        "file_counts": counts_json(&v.counts),
        "status": v.status(),
        "expires_after": s.expires_after_days.map(|d| json!({"anchor": "last_active_at", "days": d})),
        "expires_at": s.expires_at(),
        "last_active_at": s.last_active_at,
        "metadata": s.metadata,
    })
}

fn vs_file_json(f: &VsFileRecord) -> Value {
    json!({
        "id": f.file_id.as_str(),
        "object": "vector_store.file",
        "usage_bytes": f.usage_bytes,
        "created_at": f.created_at,
        "vector_store_id": f.vector_store_id.as_str(),
        "status": f.status.as_str(),
        "last_error": f.last_error.as_ref().map(|(code, message)| json!({"code": code.as_str(), "message": message})),
        "chunking_strategy": f.chunking.to_json(),
        "attributes": attributes_to_json(&f.attributes),
    })
}

fn batch_json(b: &FileBatchRecord, c: &FileCounts) -> Value {
    json!({
        "id": b.id.as_str(),
        "object": "vector_store.files_batch",
        "created_at": b.created_at,
        "vector_store_id": b.vector_store_id.as_str(),
        "status": vs_files::batch_status(b, c),
        "file_counts": counts_json(c),
    })
}

fn list_params(q: &std::collections::HashMap<String, String>) -> ListParams<'_> {
    let get = |k: &str| q.get(k).map(String::as_str);
    ListParams {
        limit: get("limit"),
        order: get("order"),
        after: get("after"),
        before: get("before"),
    }
}

async fn create(
    State(st): State<AppState>,
    Project(p): Project,
    ApiJson(body): ApiJson,
) -> ApiResult<Response> {
    let v = stores::create(&st, &p, &body).await?;
    Ok(with_poll_hint(store_json(&v), v.counts.in_progress > 0))
}

async fn list(
    State(st): State<AppState>,
    Project(p): Project,
    ApiQuery(q): ApiQuery,
) -> ApiResult<Json<ListResponse<Value>>> {
    let page = stores::list(&st, &p, list_params(&q)).await?;
    let data = page.items.iter().map(store_json).collect();
    Ok(Json(ListResponse::new(data, page.has_more, |v| {
        v["id"].as_str().unwrap_or_default()
    })))
}

async fn retrieve(
    State(st): State<AppState>,
    Project(p): Project,
    Path(vs): Path<String>,
) -> ApiResult<Response> {
    let v = stores::get(&st, &p, &vs).await?;
    Ok(with_poll_hint(store_json(&v), v.counts.in_progress > 0))
}

async fn modify(
    State(st): State<AppState>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(body): ApiJson,
) -> ApiResult<Json<Value>> {
    let v = stores::modify(&st, &p, &vs, &body).await?;
    Ok(Json(store_json(&v)))
}

async fn delete(
    State(st): State<AppState>,
    Project(p): Project,
    Path(vs): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = stores::delete(&st, &p, &vs).await?;
    Ok(Json(
        json!({"id": id.as_str(), "object": "vector_store.deleted", "deleted": true}),
    ))
}

async fn search(
    State(st): State<AppState>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(body): ApiJson,
) -> ApiResult<Json<Value>> {
    let req = stores::parse_search(&body)?;
    let queries = req.queries.clone();
    let hits = stores::search(&st, &p, &vs, req).await?;
    let data: Vec<Value> = hits
        .iter()
        .map(|h| {
            let mut item = json!({
                "file_id": h.file_id.as_str(),
                "filename": h.filename,
                "score": h.score,
                "attributes": attributes_to_json(&h.attributes),
                "content": [{"type": "text", "text": h.text}],
            });
            if !h.extra.is_empty() {
                item["extra"] = Value::Object(h.extra.clone());
            }
            item
        })
        .collect();
    Ok(Json(json!({
        "object": "vector_store.search_results.page",
        "search_query": queries,
        "data": data,
        "has_more": false,
        "next_page": null,
    })))
}

async fn attach(
    State(st): State<AppState>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(body): ApiJson,
) -> ApiResult<Response> {
    let f = vs_files::attach(&st, &p, &vs, &body).await?;
    Ok(with_poll_hint(
        vs_file_json(&f),
        f.status == VsFileStatus::InProgress,
    ))
}

/// A page of a store's files (or of one batch's), as the list endpoints return it.
async fn list_vs_files(
    st: &AppState,
    p: &crate::domain::ProjectId,
    vs: &str,
    batch: Option<&str>,
    q: &std::collections::HashMap<String, String>,
) -> ApiResult<Json<ListResponse<Value>>> {
    let filter = q.get("filter").map(String::as_str);
    let page = vs_files::list(st, p, vs, batch, filter, list_params(q)).await?;
    let data = page.items.iter().map(vs_file_json).collect();
    Ok(Json(ListResponse::new(data, page.has_more, |v| {
        v["id"].as_str().unwrap_or_default()
    })))
}

async fn list_files(
    State(st): State<AppState>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiQuery(q): ApiQuery,
) -> ApiResult<Json<ListResponse<Value>>> {
    list_vs_files(&st, &p, &vs, None, &q).await
}

async fn retrieve_file(
    State(st): State<AppState>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let f = vs_files::get(&st, &p, &vs, &file).await?;
    Ok(with_poll_hint(
        vs_file_json(&f),
        f.status == VsFileStatus::InProgress,
    ))
}

async fn update_file(
    State(st): State<AppState>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
    ApiJson(body): ApiJson,
) -> ApiResult<Json<Value>> {
    let f = vs_files::update(&st, &p, &vs, &file, &body).await?;
    Ok(Json(vs_file_json(&f)))
}

async fn detach_file(
    State(st): State<AppState>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let id = vs_files::detach(&st, &p, &vs, &file).await?;
    Ok(Json(
        json!({"id": id.as_str(), "object": "vector_store.file.deleted", "deleted": true}),
    ))
}

async fn file_content(
    State(st): State<AppState>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
    ApiQuery(q): ApiQuery,
) -> ApiResult<Json<Value>> {
    let limit = crate::domain::page::parse_limit(q.get("limit").map(String::as_str), 100, 1000)?;
    let (texts, has_more, next) = vs_files::content(
        &st,
        &p,
        &vs,
        &file,
        q.get("page").map(String::as_str),
        limit,
    )
    .await?;
    let data: Vec<Value> = texts
        .into_iter()
        .map(|t| json!({"type": "text", "text": t}))
        .collect();
    Ok(Json(json!({
        "object": "vector_store.file_content.page",
        "data": data,
        "has_more": has_more,
        "next_page": next,
    })))
}

async fn create_batch(
    State(st): State<AppState>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(body): ApiJson,
) -> ApiResult<Response> {
    let (b, c) = vs_files::create_batch(&st, &p, &vs, &body).await?;
    Ok(with_poll_hint(batch_json(&b, &c), c.in_progress > 0))
}

async fn retrieve_batch(
    State(st): State<AppState>,
    Project(p): Project,
    Path((vs, batch)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (b, c) = vs_files::get_batch(&st, &p, &vs, &batch).await?;
    Ok(with_poll_hint(batch_json(&b, &c), c.in_progress > 0))
}

async fn cancel_batch(
    State(st): State<AppState>,
    Project(p): Project,
    Path((vs, batch)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (b, c) = vs_files::cancel_batch(&st, &p, &vs, &batch).await?;
    Ok(Json(batch_json(&b, &c)))
}

async fn list_batch_files(
    State(st): State<AppState>,
    Project(p): Project,
    Path((vs, batch)): Path<(String, String)>,
    ApiQuery(q): ApiQuery,
) -> ApiResult<Json<ListResponse<Value>>> {
    list_vs_files(&st, &p, &vs, Some(&batch), &q).await
}
