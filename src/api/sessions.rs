//! llama-stack's early upload sessions, beside OpenAI's `/files` routes: `POST /files` with a
//! JSON body opens a session, `POST /files/session:{id}` appends the request body at its
//! offset (`GET` tells the offset, to resume after a lost connection), and the finished file is
//! named by a bucket and a key: `GET /files/{bucket}`, `GET|DELETE /files/{bucket}/{key}`,
//! `GET /buckets`. A bucket never looks like a file id (those start with `file-`), which is how
//! the shared paths tell the two apart.

use axum::body::Body;
use axum::extract::{FromRequest, OriginalUri, Request, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::error::{ApiJson, ApiResult};
use crate::domain::{BucketObject, Error, FileRecord, UploadId};
use crate::service::uploads::Session;
use crate::service::UploadService;

/// `{bucket, key, mime_type, size}`
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateSessionRequest {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub mime_type: Option<String>,
    pub size: Option<i64>,
}

/// The design's `FileUploadResponse`: where to send the bytes, and how many have arrived.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileUploadResponse {
    pub id: String,
    pub url: String,
    pub offset: i64,
    pub size: i64,
}

/// The design's `FileResponse`, plus the file's `id` (to attach it to vector stores).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileResponse {
    pub bucket: String,
    pub key: String,
    pub mime_type: String,
    pub url: String,
    pub bytes: i64,
    pub created_at: i64,
    pub id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListFileResponse {
    pub data: Vec<FileResponse>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BucketResponse {
    pub name: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListBucketResponse {
    pub data: Vec<BucketResponse>,
}

/// Where the routes of this request live: `http://host/v1` or `http://host/v1/openai/v1`.
pub struct Base(String);

impl Base {
    pub fn of(headers: &HeaderMap, uri: &OriginalUri) -> Self {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        // The prefix's spelling was fixed before routing.
        let path = uri.0.path();
        let llama = path.starts_with(super::LLAMA_STACK_PREFIX)
            && path[super::LLAMA_STACK_PREFIX.len()..].starts_with('/');
        let prefix = if llama {
            super::LLAMA_STACK_PREFIX
        } else {
            "/v1"
        };
        Base(format!("{scheme}://{host}{prefix}"))
    }
}

fn session_response(base: &Base, s: &Session) -> FileUploadResponse {
    FileUploadResponse {
        id: s.upload.id.to_string(),
        url: format!("{}/files/session:{}", base.0, s.upload.id),
        offset: s.offset,
        size: s.upload.bytes,
    }
}

pub fn file_response(base: &Base, object: &BucketObject, file: &FileRecord) -> FileResponse {
    FileResponse {
        bucket: object.bucket.clone(),
        key: object.key.clone(),
        mime_type: object.mime_type.clone(),
        url: format!("{}/files/{}/content", base.0, file.id),
        bytes: file.bytes,
        created_at: file.created_at,
        id: file.id.to_string(),
    }
}

/// The upload id of `session:{id}`, if `raw` is one.
pub fn session_id(raw: &str) -> Option<ApiResult<UploadId>> {
    let id = raw.strip_prefix("session:")?;
    Some(
        UploadId::parse(id)
            .ok_or_else(|| Error::not_found(crate::domain::Resource::Upload, id).into()),
    )
}

/// `POST /files` with a JSON body.
pub async fn open(
    uploads: UploadService,
    project: &crate::domain::ProjectId,
    base: Base,
    req: Request,
) -> ApiResult<Json<FileUploadResponse>> {
    let ApiJson(body) = ApiJson::<CreateSessionRequest>::from_request(req, &()).await?;
    let bucket = body.bucket.ok_or_else(|| Error::missing("bucket"))?;
    let key = body.key.ok_or_else(|| Error::missing("key"))?;
    let mime_type = body.mime_type.ok_or_else(|| Error::missing("mime_type"))?;
    let size = body.size.ok_or_else(|| Error::missing("size"))?;
    let session = uploads
        .open_session(project, &bucket, &key, mime_type, size)
        .await?;
    Ok(Json(session_response(&base, &session)))
}

/// `GET /files/session:{id}`
pub async fn info(
    uploads: &UploadService,
    project: &crate::domain::ProjectId,
    base: Base,
    id: UploadId,
) -> ApiResult<Json<FileUploadResponse>> {
    let session = uploads.session(project, &id).await?;
    Ok(Json(session_response(&base, &session)))
}

/// `POST /files/session:{id}`: appends the body; the file once complete, else `null`.
pub async fn append(
    uploads: &UploadService,
    project: &crate::domain::ProjectId,
    base: Base,
    id: UploadId,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Json<Option<FileResponse>>> {
    // Refused before any byte is read if the session cannot take them.
    let session = uploads.open_for_append(project, &id).await?;
    let room = (session.upload.bytes - session.offset).max(0) as u64;
    let overrun = |len: u64| {
        Error::invalid(
            format!(
                "The body is {len} bytes or more, but session {id} holds {} of its {} bytes: it would overrun the size.",
                session.offset, session.upload.bytes
            ),
            None,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > room) {
        return Err(overrun(len).into());
    }
    let mut writer = uploads.staging().writer(false);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| Error::invalid(format!("Could not read the request body: {e}"), None))?;
        if writer.len() + chunk.len() as u64 > room {
            return Err(overrun(writer.len() + chunk.len() as u64).into());
        }
        writer.write(chunk).await?;
    }
    let staged = writer.finish().await?;
    let (session, file) = uploads.append(session, staged).await?;
    Ok(Json(
        file.map(|f| file_response(&base, &session.object, &f)),
    ))
}

/// `GET /files/{bucket}`
pub async fn list_bucket(
    uploads: &UploadService,
    project: &crate::domain::ProjectId,
    base: Base,
    bucket: &str,
) -> ApiResult<Json<ListFileResponse>> {
    let objects = uploads.list_bucket(project, bucket).await?;
    Ok(Json(ListFileResponse {
        data: objects
            .iter()
            .map(|(o, f)| file_response(&base, o, f))
            .collect(),
    }))
}

/// `GET /buckets`
pub async fn list_buckets(
    State(uploads): State<UploadService>,
    super::Project(project): super::Project,
) -> ApiResult<Json<ListBucketResponse>> {
    let names = uploads.list_buckets(&project).await?;
    Ok(Json(ListBucketResponse {
        data: names
            .into_iter()
            .map(|name| BucketResponse { name })
            .collect(),
    }))
}
