//! `/uploads`: create, add parts (multipart, in parallel), complete, cancel.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{multipart_error, path_id, ApiJson, ApiMultipart, ApiResult};
use super::files::{stage_field, FileObject};
use super::{body_limit, BodyLimits, Project};
use crate::domain::{
    Error, FileExpiry, FileRecord, PartId, PartRecord, Purpose, Resource, UploadId, UploadRecord,
};
use crate::service::uploads::{not_a_part, parse_md5, NewUpload};
use crate::service::{Services, UploadService};
use crate::storage::StagedFile;

pub fn router(limits: BodyLimits) -> Router<Services> {
    Router::new()
        .route("/uploads", post(create))
        .route(
            "/uploads/{upload_id}/parts",
            post(add_part).layer(DefaultBodyLimit::max(body_limit(limits.part))),
        )
        .route("/uploads/{upload_id}/complete", post(complete))
        .route("/uploads/{upload_id}/cancel", post(cancel))
}

/// OpenAI's `CreateUploadRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateUploadRequest {
    pub filename: Option<String>,
    pub purpose: Option<String>,
    pub bytes: Option<i64>,
    pub mime_type: Option<String>,
    pub expires_after: Option<FileExpiresAfter>,
}

/// `expires_after` of a file made by an upload: `{anchor: "created_at", seconds}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FileExpiresAfter {
    pub anchor: Option<String>,
    pub seconds: Option<i64>,
}

/// OpenAI's `CompleteUploadRequest`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CompleteUploadRequest {
    pub part_ids: Option<Vec<String>>,
    pub md5: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Upload)]
pub struct UploadObject {
    pub id: String,
    pub object: &'static str,
    pub bytes: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub filename: String,
    pub purpose: &'static str,
    pub status: &'static str,
    pub file: Option<FileObject>,
}

impl UploadObject {
    fn new(u: &UploadRecord, now: i64, file: Option<&FileRecord>) -> Self {
        Self {
            id: u.id.to_string(),
            object: "upload",
            bytes: u.bytes,
            created_at: u.created_at,
            expires_at: u.expires_at,
            filename: u.filename.clone(),
            purpose: u.purpose.as_str(),
            status: u.effective_status(now).as_str(),
            file: file.map(FileObject::from),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = UploadPart)]
pub struct PartObject {
    pub id: String,
    pub object: &'static str,
    pub created_at: i64,
    pub upload_id: String,
}

impl From<&PartRecord> for PartObject {
    fn from(p: &PartRecord) -> Self {
        Self {
            id: p.id.to_string(),
            object: "upload.part",
            created_at: p.created_at,
            upload_id: p.upload_id.to_string(),
        }
    }
}

fn upload_id(raw: &str) -> ApiResult<UploadId> {
    path_id(raw, Resource::Upload, UploadId::parse)
}

async fn create(
    State(uploads): State<UploadService>,
    Project(project): Project,
    ApiJson(req): ApiJson<CreateUploadRequest>,
) -> ApiResult<Json<UploadObject>> {
    let filename = req.filename.ok_or_else(|| Error::missing("filename"))?;
    let purpose = req.purpose.ok_or_else(|| Error::missing("purpose"))?;
    let purpose = Purpose::from_request(&purpose, "purpose")?;
    let bytes = req.bytes.ok_or_else(|| Error::missing("bytes"))?;
    let mime_type = req.mime_type.ok_or_else(|| Error::missing("mime_type"))?;
    let expiry = match req.expires_after {
        None => None,
        Some(e) => FileExpiry::from_parts(
            e.anchor.as_deref(),
            e.seconds.map(|s| s.to_string()).as_deref(),
        )?,
    };
    let upload = uploads
        .create(
            &project,
            NewUpload {
                filename,
                purpose,
                bytes,
                mime_type,
                expiry,
            },
        )
        .await?;
    Ok(Json(UploadObject::new(&upload, uploads.now(), None)))
}

async fn add_part(
    State(uploads): State<UploadService>,
    Project(project): Project,
    Path(raw_id): Path<String>,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<Json<PartObject>> {
    // Refuse before reading any bytes if the upload cannot take them.
    let upload = uploads
        .accepting_parts(&project, &upload_id(&raw_id)?)
        .await?;
    let mut data: Option<StagedFile> = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("data") {
            if data.is_some() {
                return Err(
                    Error::invalid("Only one 'data' field may be sent per part.", "data").into(),
                );
            }
            let max = uploads.max_part_bytes();
            data = Some(stage_field(uploads.staging(), field, max, "data").await?);
        }
    }
    let staged = data.ok_or_else(|| Error::missing("data"))?;
    let part = uploads.add_part(&upload, staged).await?;
    Ok(Json(PartObject::from(&part)))
}

async fn complete(
    State(uploads): State<UploadService>,
    Project(project): Project,
    Path(raw_id): Path<String>,
    ApiJson(req): ApiJson<CompleteUploadRequest>,
) -> ApiResult<Json<UploadObject>> {
    let id = upload_id(&raw_id)?;
    let part_ids = req
        .part_ids
        .ok_or_else(|| Error::missing("part_ids"))?
        .iter()
        .map(|p| PartId::parse(p).ok_or_else(|| not_a_part(p, &id)))
        .collect::<Result<Vec<_>, _>>()?;
    let md5 = req
        .md5
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(parse_md5)
        .transpose()?;
    let (upload, file) = uploads.complete(&project, &id, &part_ids, md5).await?;
    Ok(Json(UploadObject::new(&upload, uploads.now(), Some(&file))))
}

async fn cancel(
    State(uploads): State<UploadService>,
    Project(project): Project,
    Path(raw_id): Path<String>,
) -> ApiResult<Json<UploadObject>> {
    let upload = uploads.cancel(&project, &upload_id(&raw_id)?).await?;
    Ok(Json(UploadObject::new(&upload, uploads.now(), None)))
}
