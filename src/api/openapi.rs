//! The OpenAPI 3.1 document served at `GET /openapi.json`. Every schema is derived from the
//! request and response structs the handlers use (`utoipa::ToSchema`); the operations below
//! describe the routes (their handlers dispatch on ids, so the operations are declared here,
//! one per documented path and method). `tests/it/openapi.rs` checks that every route of the
//! router is in the document.

// The operation functions only carry their `#[utoipa::path]`; they are never called.
#![allow(dead_code)]

use axum::Json;
use utoipa::OpenApi;

use super::embeddings::{CreateEmbeddingRequest, CreateEmbeddingResponse};
use super::file_batches::{CreateVectorStoreFileBatchRequest, VectorStoreFileBatchObject};
use super::files::FileObject;
use super::models::{Model, ModelList};
use super::search::{VectorStoreSearchRequest, VectorStoreSearchResultsPage};
use super::sessions::{
    CreateSessionRequest, FileResponse, FileUploadResponse, ListBucketResponse, ListFileResponse,
};
use super::uploads::{CompleteUploadRequest, CreateUploadRequest, PartObject, UploadObject};
use super::vector_stores::{CreateVectorStoreRequest, UpdateVectorStoreRequest, VectorStoreObject};
use super::vs_files::{
    CreateVectorStoreFileRequest, UpdateVectorStoreFileAttributesRequest,
    VectorStoreFileContentResponse, VectorStoreFileObject,
};
use super::{DeletedResponse, ListResponse};

/// `{"error": {...}}` with RFC 7807's fields beside it (see the README).
#[derive(utoipa::ToSchema)]
#[schema(as = ErrorResponse)]
pub struct ErrorResponse {
    pub error: ErrorObject,
    pub status: u16,
    pub title: String,
    pub detail: String,
    pub instance: String,
}

#[derive(utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorObject {
    pub message: String,
    #[schema(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// `POST /files` as multipart: OpenAI's `CreateFileRequest`.
#[derive(utoipa::ToSchema)]
pub struct CreateFileRequest {
    #[schema(format = Binary, value_type = String)]
    pub file: Vec<u8>,
    /// `assistants`, `batch`, `fine-tune`, `vision`, `user_data`, `evals`.
    pub purpose: String,
    #[schema(rename = "expires_after[anchor]")]
    pub expires_after_anchor: Option<String>,
    #[schema(rename = "expires_after[seconds]")]
    pub expires_after_seconds: Option<i64>,
}

/// `POST /uploads/{id}/parts`: OpenAI's `AddUploadPartRequest`.
#[derive(utoipa::ToSchema)]
pub struct AddUploadPartRequest {
    #[schema(format = Binary, value_type = String)]
    pub data: Vec<u8>,
}

#[derive(utoipa::ToSchema)]
pub struct Health {
    pub status: String,
}

macro_rules! errors {
    () => {
        "400 invalid input (names the param); 404 unknown id; 409 wrong state; 413 too large; 500"
    };
}

#[utoipa::path(get, path = "/health", tag = "server", responses((status = 200, body = Health)))]
fn health() {}

#[utoipa::path(get, path = "/ready", tag = "server", description = "200 when the database, the file storage, the index and the embedder all answer; 503 naming the failed ones.",
    responses((status = 200, body = Object), (status = 503, body = Object)))]
fn ready() {}

#[utoipa::path(get, path = "/metrics", tag = "server", description = "Prometheus text format: requests by route template and status, jobs, queue, embedding, extraction, index and storage figures.",
    responses((status = 200, content_type = "text/plain", body = String)))]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "server", responses((status = 200, description = "This document", body = Object)))]
fn openapi_json() {}

#[utoipa::path(get, path = "/console", tag = "console", description = "The web console: files, vector stores and a search playground over the public `/v1` API, with the key the user types. Static (embedded in the binary); needs no key.",
    responses((status = 200, content_type = "text/html", body = String)))]
fn console_page() {}

#[utoipa::path(get, path = "/console/", tag = "console", responses((status = 308, description = "Redirects to /console")))]
fn console_slash() {}

#[utoipa::path(get, path = "/console/app.js", tag = "console", responses((status = 200, content_type = "text/javascript", body = String)))]
fn console_script() {}

#[utoipa::path(get, path = "/console/style.css", tag = "console", responses((status = 200, content_type = "text/css", body = String)))]
fn console_style() {}

#[utoipa::path(post, path = "/v1/files", tag = "files",
    description = "multipart/form-data: OpenAI's file upload. application/json: opens an upload session (llama-stack's early Files design).",
    request_body(content(
        (CreateFileRequest = "multipart/form-data"),
        (CreateSessionRequest = "application/json"),
    )),
    responses((status = 200, body = FileObject), (status = 400, body = ErrorResponse, description = errors!())))]
fn create_file() {}

#[utoipa::path(get, path = "/v1/files", tag = "files",
    params(("purpose" = Option<String>, Query), ("limit" = Option<u32>, Query), ("order" = Option<String>, Query), ("after" = Option<String>, Query)),
    responses((status = 200, body = ListResponse<FileObject>)))]
fn list_files() {}

#[utoipa::path(get, path = "/v1/files/{file_id}", tag = "files",
    description = "A file (`file-…`). Any other name is a bucket of upload-session files: its `ListFileResponse`.",
    params(("file_id" = String, Path)),
    responses((status = 200, body = FileObject), (status = 404, body = ErrorResponse)))]
fn retrieve_file() {}

#[utoipa::path(delete, path = "/v1/files/{file_id}", tag = "files", params(("file_id" = String, Path)),
    responses((status = 200, body = DeletedResponse), (status = 404, body = ErrorResponse)))]
fn delete_file() {}

#[utoipa::path(get, path = "/v1/files/{file_id}/content", tag = "files", params(("file_id" = String, Path)),
    responses((status = 200, description = "The exact bytes", content_type = "application/octet-stream", body = Vec<u8>), (status = 404, body = ErrorResponse)))]
fn file_content() {}

#[utoipa::path(get, path = "/v1/files/session:{upload_id}", tag = "upload sessions", params(("upload_id" = String, Path)),
    responses((status = 200, body = FileUploadResponse), (status = 404, body = ErrorResponse)))]
fn session_info() {}

#[utoipa::path(post, path = "/v1/files/session:{upload_id}", tag = "upload sessions", params(("upload_id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, description = "The file once complete, else null", body = Option<FileResponse>), (status = 400, body = ErrorResponse), (status = 409, body = ErrorResponse)))]
fn session_append() {}

#[utoipa::path(get, path = "/v1/files/{bucket}/{key}", tag = "upload sessions", params(("bucket" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = FileResponse), (status = 404, body = ErrorResponse)))]
fn bucket_file() {}

#[utoipa::path(delete, path = "/v1/files/{bucket}/{key}", tag = "upload sessions", params(("bucket" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = FileResponse), (status = 404, body = ErrorResponse)))]
fn delete_bucket_file() {}

#[utoipa::path(get, path = "/v1/buckets", tag = "upload sessions", responses((status = 200, body = ListBucketResponse)))]
fn list_buckets() {}

#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", request_body = CreateUploadRequest,
    responses((status = 200, body = UploadObject), (status = 400, body = ErrorResponse)))]
fn create_upload() {}

#[utoipa::path(post, path = "/v1/uploads/{upload_id}/parts", tag = "uploads", params(("upload_id" = String, Path)),
    request_body(content = AddUploadPartRequest, content_type = "multipart/form-data"),
    responses((status = 200, body = PartObject), (status = 409, body = ErrorResponse)))]
fn add_upload_part() {}

#[utoipa::path(post, path = "/v1/uploads/{upload_id}/complete", tag = "uploads", params(("upload_id" = String, Path)),
    request_body = CompleteUploadRequest,
    responses((status = 200, body = UploadObject), (status = 400, body = ErrorResponse)))]
fn complete_upload() {}

#[utoipa::path(post, path = "/v1/uploads/{upload_id}/cancel", tag = "uploads", params(("upload_id" = String, Path)),
    responses((status = 200, body = UploadObject), (status = 409, body = ErrorResponse)))]
fn cancel_upload() {}

#[utoipa::path(post, path = "/v1/vector_stores", tag = "vector stores", request_body = CreateVectorStoreRequest,
    responses((status = 200, body = VectorStoreObject), (status = 400, body = ErrorResponse)))]
fn create_vector_store() {}

#[utoipa::path(get, path = "/v1/vector_stores", tag = "vector stores",
    params(("limit" = Option<u32>, Query), ("order" = Option<String>, Query), ("after" = Option<String>, Query), ("before" = Option<String>, Query)),
    responses((status = 200, body = ListResponse<VectorStoreObject>)))]
fn list_vector_stores() {}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}", tag = "vector stores", params(("vector_store_id" = String, Path)),
    responses((status = 200, body = VectorStoreObject), (status = 404, body = ErrorResponse)))]
fn retrieve_vector_store() {}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}", tag = "vector stores", params(("vector_store_id" = String, Path)),
    request_body = UpdateVectorStoreRequest,
    responses((status = 200, body = VectorStoreObject), (status = 404, body = ErrorResponse)))]
fn modify_vector_store() {}

#[utoipa::path(delete, path = "/v1/vector_stores/{vector_store_id}", tag = "vector stores", params(("vector_store_id" = String, Path)),
    responses((status = 200, body = DeletedResponse), (status = 404, body = ErrorResponse)))]
fn delete_vector_store() {}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/files", tag = "vector stores", params(("vector_store_id" = String, Path)),
    request_body = CreateVectorStoreFileRequest,
    responses((status = 200, body = VectorStoreFileObject), (status = 404, body = ErrorResponse)))]
fn create_vector_store_file() {}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/files", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("filter" = Option<String>, Query), ("limit" = Option<u32>, Query), ("order" = Option<String>, Query), ("after" = Option<String>, Query), ("before" = Option<String>, Query)),
    responses((status = 200, body = ListResponse<VectorStoreFileObject>)))]
fn list_vector_store_files() {}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path)),
    responses((status = 200, body = VectorStoreFileObject), (status = 404, body = ErrorResponse)))]
fn retrieve_vector_store_file() {}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path)),
    request_body = UpdateVectorStoreFileAttributesRequest,
    responses((status = 200, body = VectorStoreFileObject), (status = 404, body = ErrorResponse)))]
fn update_vector_store_file() {}

#[utoipa::path(delete, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path)),
    responses((status = 200, body = DeletedResponse), (status = 404, body = ErrorResponse)))]
fn delete_vector_store_file() {}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/files/{file_id}/content", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("file_id" = String, Path), ("page" = Option<String>, Query), ("limit" = Option<u32>, Query),
        ("include_embeddings" = Option<bool>, Query), ("include_metadata" = Option<bool>, Query)),
    responses((status = 200, body = VectorStoreFileContentResponse), (status = 404, body = ErrorResponse)))]
fn vector_store_file_content() {}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/file_batches", tag = "vector stores",
    params(("vector_store_id" = String, Path)), request_body = CreateVectorStoreFileBatchRequest,
    responses((status = 200, body = VectorStoreFileBatchObject), (status = 400, body = ErrorResponse)))]
fn create_file_batch() {}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("batch_id" = String, Path)),
    responses((status = 200, body = VectorStoreFileBatchObject), (status = 404, body = ErrorResponse)))]
fn retrieve_file_batch() {}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("batch_id" = String, Path)),
    responses((status = 200, body = VectorStoreFileBatchObject), (status = 404, body = ErrorResponse)))]
fn cancel_file_batch() {}

#[utoipa::path(get, path = "/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files", tag = "vector stores",
    params(("vector_store_id" = String, Path), ("batch_id" = String, Path), ("filter" = Option<String>, Query), ("limit" = Option<u32>, Query), ("order" = Option<String>, Query), ("after" = Option<String>, Query), ("before" = Option<String>, Query)),
    responses((status = 200, body = ListResponse<VectorStoreFileObject>)))]
fn list_file_batch_files() {}

#[utoipa::path(post, path = "/v1/vector_stores/{vector_store_id}/search", tag = "vector stores",
    params(("vector_store_id" = String, Path)), request_body = VectorStoreSearchRequest,
    responses((status = 200, body = VectorStoreSearchResultsPage), (status = 400, body = ErrorResponse)))]
fn search_vector_store() {}

#[utoipa::path(post, path = "/v1/embeddings", tag = "embeddings", request_body = CreateEmbeddingRequest,
    responses((status = 200, body = CreateEmbeddingResponse), (status = 404, body = ErrorResponse, description = "model_not_found")))]
fn create_embedding() {}

#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, body = ModelList)))]
fn list_models() {}

#[utoipa::path(get, path = "/v1/models/{model}", tag = "models", params(("model" = String, Path)),
    responses((status = 200, body = Model), (status = 404, body = ErrorResponse)))]
fn retrieve_model() {}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ragstore",
        description = "OpenAI-compatible Files, Uploads, Vector Stores, Embeddings and Models. Every `/v1/…` route is also served under `/v1/openai/v1/…` (llama-stack's prefix)."
    ),
    paths(
        health,
        ready,
        metrics,
        openapi_json,
        console_page,
        console_slash,
        console_script,
        console_style,
        create_file,
        list_files,
        retrieve_file,
        delete_file,
        file_content,
        session_info,
        session_append,
        bucket_file,
        delete_bucket_file,
        list_buckets,
        create_upload,
        add_upload_part,
        complete_upload,
        cancel_upload,
        create_vector_store,
        list_vector_stores,
        retrieve_vector_store,
        modify_vector_store,
        delete_vector_store,
        create_vector_store_file,
        list_vector_store_files,
        retrieve_vector_store_file,
        update_vector_store_file,
        delete_vector_store_file,
        vector_store_file_content,
        create_file_batch,
        retrieve_file_batch,
        cancel_file_batch,
        list_file_batch_files,
        search_vector_store,
        create_embedding,
        list_models,
        retrieve_model,
    ),
    components(schemas(ListFileResponse, FileUploadResponse))
)]
pub struct ApiDoc;

/// `GET /openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
