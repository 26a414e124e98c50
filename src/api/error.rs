//! Every error leaves as `{"error": {"message", "type", "param", "code"}}` with the right status.
//! The mapping from the domain error is one exhaustive match; a 500 never shows internals.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
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
                    Resource::Model => "model_not_found",
                    Resource::Bucket => "bucket_not_found",
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
            Error::QuotaExceeded { quota, .. } => body(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                match quota {
                    crate::domain::Quota::StoredBytes => None,
                    crate::domain::Quota::FilesPerStore => Some("file_ids"),
                    crate::domain::Quota::Stores => None,
                },
                Some("quota_exceeded"),
            ),
            err @ (Error::Internal(_) | Error::Unavailable(_)) if err.is_out_of_space() => {
                tracing::error!(error = ?err, "out of disk space");
                body(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "The server is out of disk space; nothing was stored. Try again once space is freed.",
                    "server_error",
                    None,
                    Some("insufficient_storage"),
                )
            }
            Error::Internal(e) | Error::Unavailable(e) => {
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
        // The parser's own message is generic ("failed to read stream"); what went wrong
        // (a head over the limit, a stalled body) is further down the chain.
        let mut message = format!("Could not parse the multipart form: {}", e.body_text());
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            cause = c.source();
        }
        ApiError(Error::invalid(message, None))
    }
}

/// `Multipart` whose rejection (wrong content type, no boundary) is an OpenAI-shaped 400.
pub struct ApiMultipart(pub Multipart);

impl<S: Send + Sync> FromRequest<S> for ApiMultipart {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let boundary = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(super::form::boundary);
        // Without a boundary the parser refuses the request itself.
        let req = match boundary {
            Some(b) => {
                let (parts, body) = req.into_parts();
                let capped = super::form::HeadCapped::new(body.into_data_stream(), &b);
                Request::from_parts(parts, axum::body::Body::from_stream(capped))
            }
            None => req,
        };
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

/// A JSON object body deserialized into `T`. Malformed JSON, a body that is not an object, and
/// a field of the wrong type or value are OpenAI-shaped 400s; the error's `param` is the
/// top-level field at fault.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
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
        if !value.is_object() {
            return Err(ApiError(Error::invalid(
                "The request body must be a JSON object.",
                None,
            )));
        }
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| ApiError(field_error(&e)))
    }
}

/// `Invalid 'files[0].attributes': <why>`, with `param` the top-level field (`files`).
fn field_error(e: &serde_path_to_error::Error<serde_json::Error>) -> Error {
    let path = e.path().to_string();
    let why = e.inner().to_string();
    // serde_json's messages end with a position in the (already parsed) value; drop it.
    let why = why
        .rfind(" at line ")
        .map_or(why.as_str(), |i| &why[..i])
        .to_owned();
    let top = e.path().iter().next().and_then(|seg| match seg {
        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
        _ => None,
    });
    match top {
        Some(param) => Error::Invalid {
            message: format!("Invalid '{path}': {why}"),
            param: Some(param),
            code: None,
        },
        None => Error::invalid(format!("Invalid request body: {why}"), None),
    }
}

/// Query parameters deserialized into `T` (fields as strings; each handler parses the ones it
/// knows and names bad ones).
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
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

/// An id from the path, or a 404 for `kind` naming it as given.
pub fn path_id<T>(
    raw: &str,
    kind: Resource,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ApiError> {
    parse(raw).ok_or_else(|| ApiError(Error::not_found(kind, raw)))
}
