//! Every error leaves as `{"error": {"message", "type", "param", "code"}}` with the right status.
//! The mapping from the domain error is one exhaustive match; a 500 never shows internals.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::domain::{Error, Resource};

#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn body(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = json!({
        "error": { "message": message, "type": kind, "param": param, "code": code }
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        match &self.0 {
            Error::Invalid { param, code, .. } => body(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                param.as_deref(),
                *code,
            ),
            Error::NotFound { kind, .. } => body(
                StatusCode::NOT_FOUND,
                &message,
                "invalid_request_error",
                None,
                Some(match kind {
                    Resource::File => "file_not_found",
                    Resource::Upload => "upload_not_found",
                    Resource::Part => "part_not_found",
                    Resource::VectorStore => "vector_store_not_found",
                    Resource::VectorStoreFile => "vector_store_file_not_found",
                    Resource::FileBatch => "file_batch_not_found",
                }),
            ),
            Error::Conflict { param, .. } => body(
                StatusCode::CONFLICT,
                &message,
                "invalid_request_error",
                param.as_deref(),
                Some("conflict"),
            ),
            Error::TooLarge { param, .. } => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                &message,
                "invalid_request_error",
                param.as_deref(),
                Some("payload_too_large"),
            ),
            Error::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The server had an error while processing your request. Check the server logs for details.",
                    "server_error",
                    None,
                    None,
                )
            }
        }
    }
}

/// A multipart error while reading a field: over the body limit is 413, anything else 400.
pub fn multipart_error(e: MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(Error::too_large(
            "The request body is larger than this endpoint accepts.",
            None,
        ))
    } else {
        ApiError(Error::invalid(
            format!("Could not parse the multipart form: {}", e.body_text()),
            None,
        ))
    }
}

/// `Multipart` whose rejection (wrong content type, no boundary) is an OpenAI-shaped 400.
pub struct ApiMultipart(pub Multipart);

impl<S: Send + Sync> FromRequest<S> for ApiMultipart {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Multipart::from_request(req, state)
            .await
            .map(ApiMultipart)
            .map_err(|e: MultipartRejection| {
                ApiError(Error::invalid(
                    format!(
                        "Expected a multipart/form-data request body: {}",
                        e.body_text()
                    ),
                    None,
                ))
            })
    }
}

/// A JSON object body whose rejection is an OpenAI-shaped 400. Fields are checked by hand so each
/// error names its `param`.
pub struct ApiJson(pub serde_json::Map<String, serde_json::Value>);

impl<S: Send + Sync> FromRequest<S> for ApiJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state)
            .await
            .map_err(|e: JsonRejection| {
                let status = e.status();
                let message = format!(
                    "We could not parse the JSON body of your request: {}",
                    e.body_text()
                );
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError(Error::too_large(message, None))
                } else {
                    ApiError(Error::invalid(message, None))
                }
            })?;
        match value {
            serde_json::Value::Object(map) => Ok(ApiJson(map)),
            _ => Err(ApiError(Error::invalid(
                "The request body must be a JSON object.",
                None,
            ))),
        }
    }
}

/// Query parameters as strings; each handler parses the ones it knows and names bad ones.
pub struct ApiQuery(pub std::collections::HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for ApiQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e: QueryRejection| {
                ApiError(Error::invalid(
                    format!("Invalid query string: {}", e.body_text()),
                    None,
                ))
            })
    }
}
