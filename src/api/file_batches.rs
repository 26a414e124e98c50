//! `/vector_stores/{vs}/file_batches`: create, retrieve, cancel, list files.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{path_id, ApiJson, ApiQuery, ApiResult};
use super::vector_stores::{file_ids, store_id, FileCountsObject};
use super::vs_files::{list_page, VectorStoreFileObject};
use super::{with_poll_hint, ListQuery, ListResponse, Project};
use crate::domain::attributes::AttributesParam;
use crate::domain::{
    ChunkingStrategy, Error, FileBatchId, FileBatchRecord, FileCounts, FileId, Resource,
};
use crate::service::file_batches::{batch_status, BatchFile, MAX_BATCH_FILES};
use crate::service::{Services, StoreService};

pub fn router() -> Router<Services> {
    Router::new()
        .route("/vector_stores/{vs}/file_batches", post(create))
        .route("/vector_stores/{vs}/file_batches/{batch}", get(retrieve))
        .route(
            "/vector_stores/{vs}/file_batches/{batch}/cancel",
            post(cancel),
        )
        .route(
            "/vector_stores/{vs}/file_batches/{batch}/files",
            get(list_files),
        )
}

/// OpenAI's `CreateVectorStoreFileBatchRequest`: `file_ids` or `files`, not both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateVectorStoreFileBatchRequest {
    pub file_ids: Option<Vec<String>>,
    pub files: Option<Vec<BatchFileParam>>,
    /// For `file_ids`, and `files` entries without their own.
    #[schema(value_type = Object)]
    pub attributes: Option<AttributesParam>,
    #[schema(value_type = Object)]
    pub chunking_strategy: Option<ChunkingStrategy>,
}

/// One entry of `files`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BatchFileParam {
    pub file_id: String,
    #[schema(value_type = Object)]
    pub attributes: Option<AttributesParam>,
    #[schema(value_type = Object)]
    pub chunking_strategy: Option<ChunkingStrategy>,
}

/// OpenAI's `VectorStoreFileBatchObject`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = VectorStoreFileBatchObject)]
pub struct VectorStoreFileBatchObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: i64,
    pub vector_store_id: String,
    pub status: &'static str,
    pub file_counts: FileCountsObject,
}

impl VectorStoreFileBatchObject {
    fn new(b: &FileBatchRecord, c: &FileCounts) -> Self {
        Self {
            id: b.id.to_string(),
            object: "vector_store.files_batch",
            created_at: b.created_at,
            vector_store_id: b.vector_store_id.to_string(),
            status: batch_status(b, c),
            file_counts: FileCountsObject::from(c),
        }
    }
}

fn batch_id(raw: &str) -> Result<FileBatchId, super::error::ApiError> {
    path_id(raw, Resource::FileBatch, FileBatchId::parse)
}

async fn create(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(req): ApiJson<CreateVectorStoreFileBatchRequest>,
) -> super::error::ApiResult<Response> {
    let vs = store_id(&vs)?;
    let attributes = req.attributes.unwrap_or_default().0;
    let chunking = req.chunking_strategy.unwrap_or_default();
    let files: Vec<BatchFile> = match (req.file_ids, req.files) {
        (Some(_), Some(_)) => {
            return Err(
                Error::invalid("Send either 'file_ids' or 'files', not both.", "files").into(),
            )
        }
        (None, None) => return Err(Error::missing("file_ids").into()),
        (Some(ids), None) => file_ids(ids, "file_ids", 1, MAX_BATCH_FILES)?
            .into_iter()
            .map(|file_id| BatchFile {
                file_id,
                attributes: attributes.clone(),
                chunking,
            })
            .collect(),
        (None, Some(items)) => {
            if !(1..=MAX_BATCH_FILES).contains(&items.len()) {
                return Err(Error::invalid(
                    format!("'files' must be an array of 1 to {MAX_BATCH_FILES} objects."),
                    "files",
                )
                .into());
            }
            items
                .into_iter()
                .map(|f| {
                    Ok(BatchFile {
                        file_id: FileId::parse(&f.file_id)
                            .ok_or_else(|| Error::not_found(Resource::File, f.file_id.as_str()))?,
                        attributes: f.attributes.map_or_else(|| attributes.clone(), |a| a.0),
                        chunking: f.chunking_strategy.unwrap_or(chunking),
                    })
                })
                .collect::<Result<_, Error>>()?
        }
    };
    let (b, c) = stores.create_batch(&p, &vs, files).await?;
    Ok(with_poll_hint(
        VectorStoreFileBatchObject::new(&b, &c),
        c.in_progress > 0,
    ))
}

async fn retrieve(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path((vs, batch)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (b, c) = stores
        .get_batch(&p, &store_id(&vs)?, &batch_id(&batch)?)
        .await?;
    Ok(with_poll_hint(
        VectorStoreFileBatchObject::new(&b, &c),
        c.in_progress > 0,
    ))
}

async fn cancel(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path((vs, batch)): Path<(String, String)>,
) -> ApiResult<Json<VectorStoreFileBatchObject>> {
    let (b, c) = stores
        .cancel_batch(&p, &store_id(&vs)?, &batch_id(&batch)?)
        .await?;
    Ok(Json(VectorStoreFileBatchObject::new(&b, &c)))
}

async fn list_files(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path((vs, batch)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse<VectorStoreFileObject>>> {
    let (vs, batch) = (store_id(&vs)?, batch_id(&batch)?);
    list_page(&stores, &p, &vs, Some(&batch), &q).await
}
