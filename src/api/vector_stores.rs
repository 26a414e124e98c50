//! `/vector_stores`: create, list, retrieve, modify, delete.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use super::error::{path_id, ApiJson, ApiQuery, ApiResult};
use super::{nullable, with_poll_hint, DeletedResponse, ListQuery, ListResponse, Project};
use crate::domain::attributes::MetadataParam;
use crate::domain::{ChunkingStrategy, Error, FileCounts, FileId, Resource, Result, VectorStoreId};
use crate::service::vector_stores::{CreateStore, ModifyStore, StoreView, MAX_FILE_IDS};
use crate::service::{Services, StoreService};

pub fn router() -> Router<Services> {
    Router::new()
        .route("/vector_stores", post(create).get(list))
        .route(
            "/vector_stores/{vs}",
            get(retrieve).post(modify).delete(delete),
        )
}

/// OpenAI's `CreateVectorStoreRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateVectorStoreRequest {
    pub name: Option<String>,
    pub description: Option<String>,
    pub file_ids: Option<Vec<String>>,
    #[schema(value_type = Object)]
    pub chunking_strategy: Option<ChunkingStrategy>,
    #[schema(value_type = Object)]
    pub expires_after: Option<VectorStoreExpirationAfter>,
    #[schema(value_type = Object)]
    pub metadata: Option<MetadataParam>,
    /// llama-stack's: the model and dimension the store is for. This server embeds with one
    /// model; naming another is refused, not ignored.
    pub embedding_model: Option<String>,
    pub embedding_dimension: Option<i64>,
}

/// OpenAI's `UpdateVectorStoreRequest`: absent fields stay, `null` clears.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UpdateVectorStoreRequest {
    #[serde(default, deserialize_with = "nullable")]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Object)]
    pub expires_after: Option<Option<VectorStoreExpirationAfter>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Object)]
    pub metadata: Option<Option<MetadataParam>>,
}

/// OpenAI's `VectorStoreExpirationAfter` as requested: `{anchor: "last_active_at", days: 1..=365}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "Value")]
pub struct VectorStoreExpirationAfter {
    pub days: i64,
}

/// `expires_after` as a store object shows it.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[schema(as = VectorStoreExpirationAfter)]
pub struct ExpiresAfterObject {
    pub anchor: &'static str,
    pub days: i64,
}

impl TryFrom<Value> for VectorStoreExpirationAfter {
    type Error = String;
    fn try_from(v: Value) -> std::result::Result<Self, String> {
        let obj = v.as_object().ok_or("expected an object")?;
        if obj.get("anchor").and_then(Value::as_str) != Some("last_active_at") {
            return Err("'anchor' must be 'last_active_at'".into());
        }
        let days = obj
            .get("days")
            .and_then(Value::as_i64)
            .ok_or("'days' must be an integer")?;
        if !(1..=365).contains(&days) {
            return Err("'days' must be between 1 and 365".into());
        }
        Ok(Self { days })
    }
}

/// OpenAI's `VectorStoreObject`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VectorStoreObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: i64,
    pub name: Option<String>,
    pub description: Option<String>,
    pub usage_bytes: i64,
    pub file_counts: FileCountsObject,
    pub status: &'static str,
    pub expires_after: Option<ExpiresAfterObject>,
    pub expires_at: Option<i64>,
    pub last_active_at: i64,
    pub metadata: BTreeMap<String, String>,
}

/// `file_counts` of a store or a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = VectorStoreFileCounts)]
pub struct FileCountsObject {
    pub in_progress: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub total: i64,
}

impl From<&FileCounts> for FileCountsObject {
    fn from(c: &FileCounts) -> Self {
        Self {
            in_progress: c.in_progress,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
            total: c.total(),
        }
    }
}

impl From<&StoreView> for VectorStoreObject {
    fn from(v: &StoreView) -> Self {
        let s = &v.store;
        Self {
            id: s.id.to_string(),
            object: "vector_store",
            created_at: s.created_at,
            name: s.name.clone(),
            description: s.description.clone(),
            usage_bytes: v.usage_bytes,
            file_counts: FileCountsObject::from(&v.counts),
            status: v.status(),
            expires_after: s.expires_after_days.map(|days| ExpiresAfterObject {
                anchor: "last_active_at",
                days,
            }),
            expires_at: s.expires_at(),
            last_active_at: s.last_active_at,
            metadata: s.metadata.clone(),
        }
    }
}

pub fn store_id(raw: &str) -> ApiResult<VectorStoreId> {
    path_id(raw, Resource::VectorStore, VectorStoreId::parse)
}

fn check_len(value: Option<String>, param: &'static str, max: usize) -> Result<Option<String>> {
    match value {
        Some(s) if s.chars().count() > max => Err(Error::invalid(
            format!("'{param}' must be at most {max} characters."),
            param,
        )),
        v => Ok(v),
    }
}

/// `file_ids` (at most `max`), each a file id (or a 404 naming it), first mention kept.
pub fn file_ids(
    ids: Vec<String>,
    param: &'static str,
    min: usize,
    max: usize,
) -> Result<Vec<FileId>> {
    if ids.len() < min || ids.len() > max {
        return Err(Error::invalid(
            format!(
                "'{param}' must hold {min} to {max} file ids, got {}.",
                ids.len()
            ),
            param,
        ));
    }
    let mut out: Vec<FileId> = Vec::with_capacity(ids.len());
    for s in ids {
        let id = FileId::parse(&s).ok_or_else(|| Error::not_found(Resource::File, s.as_str()))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

async fn create(
    State(stores): State<StoreService>,
    Project(p): Project,
    ApiJson(req): ApiJson<CreateVectorStoreRequest>,
) -> ApiResult<Response> {
    stores.check_embedding(req.embedding_model.as_deref(), req.embedding_dimension)?;
    let cmd = CreateStore {
        name: check_len(req.name, "name", 256)?,
        description: check_len(req.description, "description", 512)?,
        metadata: req.metadata.unwrap_or_default().0,
        expires_after_days: req.expires_after.map(|e| e.days),
        chunking: req.chunking_strategy.unwrap_or_default(),
        file_ids: file_ids(
            req.file_ids.unwrap_or_default(),
            "file_ids",
            0,
            MAX_FILE_IDS,
        )?,
    };
    let v = stores.create(&p, cmd).await?;
    Ok(with_poll_hint(
        VectorStoreObject::from(&v),
        v.counts.in_progress > 0,
    ))
}

async fn list(
    State(stores): State<StoreService>,
    Project(p): Project,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse<VectorStoreObject>>> {
    let page = stores.list(&p, q.params(VectorStoreId::parse)?).await?;
    let data = page.items.iter().map(VectorStoreObject::from).collect();
    Ok(Json(ListResponse::new(data, page.has_more, |v| &v.id)))
}

async fn retrieve(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path(vs): Path<String>,
) -> ApiResult<Response> {
    let v = stores.get(&p, &store_id(&vs)?).await?;
    Ok(with_poll_hint(
        VectorStoreObject::from(&v),
        v.counts.in_progress > 0,
    ))
}

async fn modify(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path(vs): Path<String>,
    ApiJson(req): ApiJson<UpdateVectorStoreRequest>,
) -> ApiResult<Json<VectorStoreObject>> {
    let id = store_id(&vs)?;
    let cmd = ModifyStore {
        name: req.name.map(|n| check_len(n, "name", 256)).transpose()?,
        metadata: req.metadata.map(|m| m.unwrap_or_default().0),
        expires_after_days: req.expires_after.map(|e| e.map(|e| e.days)),
    };
    let v = stores.modify(&p, &id, cmd).await?;
    Ok(Json(VectorStoreObject::from(&v)))
}

async fn delete(
    State(stores): State<StoreService>,
    Project(p): Project,
    Path(vs): Path<String>,
) -> ApiResult<Json<DeletedResponse>> {
    let id = stores.delete(&p, &store_id(&vs)?).await?;
    Ok(Json(DeletedResponse::new(id, "vector_store.deleted")))
}
