//! `/uploads`: create, add parts (multipart, in parallel), complete, cancel.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;

use super::error::{multipart_error, ApiJson, ApiMultipart, ApiResult};
use super::files::{stage_field, FileObject};
use super::json::{opt_object, opt_str, req_i64, req_str, req_str_array};
use super::{body_limit, Project};
use crate::app::AppState;
use crate::config::Config;
use crate::domain::{Error, FileExpiry, FileRecord, PartRecord, Purpose, UploadRecord};
use crate::service::uploads::{self, NewUpload};
use crate::storage::StagedFile;

pub fn router(config: &Config) -> Router<AppState> {
    Router::new()
        .route("/uploads", post(create))
        .route(
            "/uploads/{upload_id}/parts",
            post(add_part).layer(DefaultBodyLimit::max(body_limit(config.max_part_bytes))),
        )
        .route("/uploads/{upload_id}/complete", post(complete))
        .route("/uploads/{upload_id}/cancel", post(cancel))
}

#[derive(Debug, Serialize)]
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

#[derive(Debug, Serialize)]
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

async fn create(
    State(st): State<AppState>,
    Project(project): Project,
    ApiJson(body): ApiJson,
) -> ApiResult<Json<UploadObject>> {
    let filename = req_str(&body, "filename")?.to_owned();
    let purpose = Purpose::from_request(req_str(&body, "purpose")?, "purpose")?;
    let bytes = req_i64(&body, "bytes")?;
    let mime_type = req_str(&body, "mime_type")?.to_owned();
    let expiry = match opt_object(&body, "expires_after")? {
        None => None,
        Some(e) => {
            let seconds = match e.get("seconds") {
                None | Some(serde_json::Value::Null) => None,
                Some(v) => Some(v.to_string()),
            };
            FileExpiry::from_parts(opt_str(e, "anchor")?, seconds.as_deref())?
        }
    };
    let upload = uploads::create(
        &st,
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
    Ok(Json(UploadObject::new(&upload, st.clock.now(), None)))
}

async fn add_part(
    State(st): State<AppState>,
    Project(project): Project,
    Path(upload_id): Path<String>,
    ApiMultipart(mut form): ApiMultipart,
) -> ApiResult<Json<PartObject>> {
    // Refuse before reading any bytes if the upload cannot take them.
    let upload = uploads::accepting_parts(&st, &project, &upload_id).await?;
    let mut data: Option<StagedFile> = None;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        if field.name() == Some("data") {
            if data.is_some() {
                return Err(
                    Error::invalid("Only one 'data' field may be sent per part.", "data").into(),
                );
            }
            data = Some(stage_field(&st.staging, field, st.config.max_part_bytes, "data").await?);
        }
    }
    let staged = data.ok_or_else(|| Error::missing("data"))?;
    let part = uploads::add_part(&st, &upload, staged).await?;
    Ok(Json(PartObject::from(&part)))
}

async fn complete(
    State(st): State<AppState>,
    Project(project): Project,
    Path(upload_id): Path<String>,
    ApiJson(body): ApiJson,
) -> ApiResult<Json<UploadObject>> {
    let part_ids = req_str_array(&body, "part_ids")?;
    let md5 = opt_str(&body, "md5")?.filter(|s| !s.is_empty());
    let (upload, file) = uploads::complete(&st, &project, &upload_id, &part_ids, md5).await?;
    Ok(Json(UploadObject::new(
        &upload,
        st.clock.now(),
        Some(&file),
    )))
}

async fn cancel(
    State(st): State<AppState>,
    Project(project): Project,
    Path(upload_id): Path<String>,
) -> ApiResult<Json<UploadObject>> {
    let upload = uploads::cancel(&st, &project, &upload_id).await?;
    Ok(Json(UploadObject::new(&upload, st.clock.now(), None)))
}
