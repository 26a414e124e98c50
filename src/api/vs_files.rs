//! `/vector_stores/{vs}/files`: attach, list, retrieve, update attributes, detach, content.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{path_id, ApiJson, ApiQuery, ApiResult};
use super::vector_stores::store_id;
use super::{with_poll_hint, DeletedResponse, ListQuery, ListResponse, Project};
use crate::domain::attributes::{attributes_to_json, AttributesParam};
use crate::domain::{
    page, ChunkingStrategy, Error, FileBatchId, FileId, ProjectId, Resource, Result, VectorStoreId,
    VsFileRecord, VsFileStatus,
};
use crate::index::point_id;
use crate::service::vs_files::AttachFile;
use crate::service::{Services, StoreService};

pub fn router() -> Router<Services> {
    Router::new()
        .route(
            "/vector_stores/{vs}/files",
            axum::routing::post(attach).get(list),
        )
        .route(
            "/vector_stores/{vs}/files/{file}",
            get(retrieve).post(update).delete(detach),
        )
        .route("/vector_stores/{vs}/files/{file}/content", get(content))
}

/// OpenAI's `CreateVectorStoreFileRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateVectorStoreFileRequest {
    pub file_id: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Option<AttributesParam>,
    #[schema(value_type = Object)]
    pub chunking_strategy: Option<ChunkingStrategy>,
}

/// OpenAI's `UpdateVectorStoreFileAttributesRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateVectorStoreFileAttributesRequest {
    #[serde(default, deserialize_with = "super::nullable")]
    #[schema(value_type = Object)]
    pub attributes: Option<Option<AttributesParam>>,
}

/// OpenAI's `VectorStoreFileObject`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VectorStoreFileObject {
    pub id: String,
    pub object: &'static str,
    pub usage_bytes: i64,
    pub created_at: i64,
    pub vector_store_id: String,
    pub status: &'static str,
    pub last_error: Option<LastError>,
    pub chunking_strategy: Value,
    pub attributes: Value,
    /// ragstore's own (the SDKs ignore unknown fields): how far ingestion has got.
    pub progress: Progress,
}

/// Chunks in the index so far, and how many the file has (`null` until its chunking is done).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub chunks_indexed: u32,
    pub chunks_total: Option<u32>,
}

/// `last_error` of a failed vector-store file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = VectorStoreFileLastError)]
pub struct LastError {
    pub code: &'static str,
    pub message: String,
}

impl From<&VsFileRecord> for VectorStoreFileObject {
    fn from(f: &VsFileRecord) -> Self {
        Self {
            id: f.file_id.to_string(),
            object: "vector_store.file",
            usage_bytes: f.usage_bytes,
            created_at: f.created_at,
            vector_store_id: f.vector_store_id.to_string(),
            status: f.status.as_str(),
            last_error: f.last_error.as_ref().map(|(code, message)| LastError {
                code: code.as_str(),
                message: message.clone(),
            }),
            chunking_strategy: f.chunking.to_json(),
            attributes: attributes_to_json(&f.attributes),
            progress: Progress {
                chunks_indexed: f.chunks_indexed,
                chunks_total: f.chunks_total,
            },
        }
    }
}

/// OpenAI's `VectorStoreFileContentResponse`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VectorStoreFileContentResponse {
    pub object: &'static str,
    pub data: Vec<ContentText>,
    pub has_more: bool,
    pub next_page: Option<String>,
}

/// `{type: "text", text}`, and with llama-stack's `include_embeddings` / `include_metadata`
/// the chunk's `embedding`, `chunk_metadata` and `metadata`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = VectorStoreFileContentItem)]
pub struct ContentText {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_metadata: Option<ChunkMetadata>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
}

impl ContentText {
    pub fn new(text: String) -> Self {
        Self {
            kind: "text",
            text,
            embedding: None,
            chunk_metadata: None,
            metadata: None,
        }
    }
}

/// llama-stack's `ChunkMetadata`, as far as ragstore knows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChunkMetadata {
    /// The chunk's point id in the index.
    pub chunk_id: String,
    /// The file.
    pub document_id: String,
    /// The file's name.
    pub source: String,
    pub chunk_embedding_model: String,
    pub chunk_embedding_dimension: usize,
}

/// The `{vs}` and `{file}` of a vector-store-file route.
fn ids(vs: &str, file: &str) -> ApiResult<(VectorStoreId, FileId)> {
    Ok((
        store_id(vs)?,
        path_id(file, Resource::VectorStoreFile, FileId::parse)?,
    ))
}

pub fn parse_status_filter(s: Option<&str>) -> Result<Option<VsFileStatus>> {
    s.map(|s| {
        VsFileStatus::parse(s).ok_or_else(|| {
            Error::invalid(
                format!("Invalid value for 'filter': '{s}'. Supported values are: 'in_progress', 'completed', 'failed', 'cancelled'."),
                "filter",
            )
        })
    })
    .transpose()
}

fn poll(f: &VsFileRecord) -> Response {
    with_poll_hint(
        VectorStoreFileObject::from(f),
        f.status == VsFileStatus::InProgress,
    )
}

async fn attach(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(req): ApiJson<CreateVectorStoreFileRequest>,
) -> ApiResult<Response> {
    let id = store_id(&vs)?;
    let file_id = req.file_id.ok_or_else(|| Error::missing("file_id"))?;
    let cmd = AttachFile {
        file_id: FileId::parse(&file_id)
            .ok_or_else(|| Error::not_found(Resource::File, file_id.as_str()))?,
        attributes: req.attributes.unwrap_or_default().0,
        chunking: req.chunking_strategy.unwrap_or_default(),
    };
    Ok(poll(&stores.attach(&p, &id, cmd).await?))
}

/// A page of a store's files, or of one batch's, as both list routes return it.
pub async fn list_page(
    stores: &StoreService,
    p: &ProjectId,
    store: &VectorStoreId,
    batch: Option<&FileBatchId>,
    q: &ListQuery,
) -> ApiResult<Json<ListResponse<VectorStoreFileObject>>> {
    let status = parse_status_filter(q.filter.as_deref())?;
    let page = stores
        .list_files(p, store, batch, status, q.params(FileId::parse)?)
        .await?;
    let data = page.items.iter().map(VectorStoreFileObject::from).collect();
    Ok(Json(ListResponse::new(data, page.has_more, |f| &f.id)))
}

async fn list(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse<VectorStoreFileObject>>> {
    list_page(&stores, &p, &store_id(&vs)?, None, &q).await
}

async fn retrieve(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (vs, file) = ids(&vs, &file)?;
    Ok(poll(&stores.get_file(&p, &vs, &file).await?))
}

async fn update(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateVectorStoreFileAttributesRequest>,
) -> ApiResult<Json<VectorStoreFileObject>> {
    let (vs, file) = ids(&vs, &file)?;
    let attributes = req
        .attributes
        .ok_or_else(|| Error::missing("attributes"))?
        .unwrap_or_default()
        .0;
    let f = stores.update_file(&p, &vs, &file, attributes).await?;
    Ok(Json(VectorStoreFileObject::from(&f)))
}

async fn detach(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
) -> ApiResult<Json<DeletedResponse>> {
    let (vs, file) = ids(&vs, &file)?;
    let id = stores.detach(&p, &vs, &file).await?;
    Ok(Json(DeletedResponse::new(id, "vector_store.file.deleted")))
}

/// `GET …/content` query, as sent.
#[derive(Debug, Deserialize)]
struct ContentQuery {
    page: Option<String>,
    limit: Option<String>,
    include_embeddings: Option<String>,
    include_metadata: Option<String>,
}

/// A boolean query flag: `true`/`false` (as the SDKs send them), `1`/`0`.
fn flag(value: Option<&str>, param: &'static str) -> ApiResult<bool> {
    match value.map(str::trim) {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => Ok(false),
        Some(v) => Err(Error::invalid(
            format!("Invalid value for '{param}': '{v}'. It must be true or false."),
            param,
        )
        .into()),
    }
}

/// A page of the file's chunks, as many as fit in several MB (all of an ordinary document),
/// or `limit` chunks; `next_page` continues.
async fn content(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path((vs, file)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ContentQuery>,
) -> ApiResult<Json<VectorStoreFileContentResponse>> {
    let (vs, file) = ids(&vs, &file)?;
    let limit = match q.limit.as_deref() {
        None => None,
        Some(l) => Some(page::parse_limit(Some(l), 0, 100_000)?),
    };
    let embeddings = flag(q.include_embeddings.as_deref(), "include_embeddings")?;
    let metadata = flag(q.include_metadata.as_deref(), "include_metadata")?;
    let offset: u32 = match q.page.as_deref() {
        None => 0,
        Some(p) => p.parse().map_err(|_| {
            Error::invalid(
                "Invalid value for 'page': not a page token from this API.",
                "page",
            )
        })?,
    };
    let page = stores
        .content(&p, &vs, &file, offset, limit, embeddings)
        .await?;
    let attributes = match attributes_to_json(&page.attributes) {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let data = page
        .chunks
        .into_iter()
        .map(|c| {
            let (chunk_metadata, metadata) = if metadata {
                let mut m = serde_json::Map::new();
                m.insert("file_id".into(), Value::from(file.as_str()));
                m.insert("filename".into(), Value::from(page.filename.as_str()));
                m.insert("chunk_index".into(), Value::from(c.index));
                m.extend(c.location);
                m.extend(attributes.clone());
                (
                    Some(ChunkMetadata {
                        chunk_id: point_id(&file, &vs, c.index).to_string(),
                        document_id: file.to_string(),
                        source: page.filename.clone(),
                        chunk_embedding_model: page.model.clone(),
                        chunk_embedding_dimension: page.dims,
                    }),
                    Some(m),
                )
            } else {
                (None, None)
            };
            ContentText {
                embedding: c.embedding,
                chunk_metadata,
                metadata,
                ..ContentText::new(c.text)
            }
        })
        .collect();
    Ok(Json(VectorStoreFileContentResponse {
        object: "vector_store.file_content.page",
        data,
        has_more: page.has_more,
        next_page: page.next_page,
    }))
}
