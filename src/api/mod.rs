//! The OpenAI HTTP surface. One module per resource, each with a `router()`, its request and
//! response bodies as serde structs named after OpenAI's schema, and handlers that parse ids and
//! bodies into typed commands for the services. The same routes are served under `/v1` and, for
//! llama-stack clients, `/v1/openai/v1`.

pub mod console;
pub mod embeddings;
pub mod error;
pub mod file_batches;
pub mod files;
pub mod form;
pub mod gate;
pub mod models;
pub mod openapi;
pub mod search;
pub mod sessions;
mod unread;
pub mod uploads;
pub mod vector_stores;
pub mod vs_files;

use axum::extract::{FromRef, FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tower::util::MapRequestLayer;
use tower::Layer;

use crate::domain::{page, Order, ProjectId, Result};
use crate::service::{
    EmbeddingService, FileService, SearchService, Services, StoreService, UploadService,
};
use error::ApiError;

/// Body size limits of the upload routes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// `POST /files`.
    pub file: u64,
    /// `POST /uploads/{id}/parts`.
    pub part: u64,
}

pub fn router(
    services: Services,
    limits: BodyLimits,
    rate_limits: Arc<gate::RateLimits>,
) -> Router {
    let gate = gate::Gate {
        auth: services.auth.clone(),
        limits: rate_limits,
    };
    let v1 = Router::new()
        .merge(files::router(limits))
        .merge(uploads::router(limits))
        .merge(vector_stores::router())
        .merge(vs_files::router())
        .merge(file_batches::router())
        .merge(search::router())
        .merge(embeddings::router())
        .merge(models::router())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(gate, gate::gate));
    let routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(metrics))
        .route("/console", get(console::page))
        .route("/console/", get(console::slash))
        .route("/console/app.js", get(console::script))
        .route("/console/style.css", get(console::style))
        .nest("/v1", v1.clone())
        .nest(LLAMA_STACK_PREFIX, v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(problem_details))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn(unread::close_if_body_unread))
        .with_state(services);
    // Routing matches paths exactly, so the prefix's spelling is fixed before it.
    Router::new().fallback_service(MapRequestLayer::new(llama_stack_prefix).layer(routes))
}

/// What a `--role worker` replica serves: liveness, readiness and metrics, nothing of the API.
pub fn ops_router(services: Services) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(problem_details))
        .layer(middleware::from_fn(log_request))
        .with_state(services)
}

/// Where llama-stack clients find the OpenAI routes.
pub(crate) const LLAMA_STACK_PREFIX: &str = "/v1/openai/v1";

/// `/v1/openAi/v1/…` (as llama-stack's Files docs spell it), `/v1/OpenAI/v1/…`: the `openai`
/// segment of the llama-stack prefix is matched whatever its case.
fn llama_stack_prefix(mut req: Request) -> Request {
    let path = req.uri().path();
    let Some(segment) = path
        .strip_prefix("/v1/")
        .and_then(|rest| rest.get(..6))
        .filter(|s| s.eq_ignore_ascii_case("openai") && *s != "openai")
    else {
        return req;
    };
    let rest = &path["/v1/".len() + segment.len()..];
    if !(rest.is_empty() || rest.starts_with('/')) {
        return req;
    }
    let mut fixed = format!("/v1/openai{rest}");
    if let Some(q) = req.uri().query() {
        fixed.push('?');
        fixed.push_str(q);
    }
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = fixed.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = axum::http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

macro_rules! substate {
    ($($ty:ty => $field:ident),* $(,)?) => {
        $(impl FromRef<Services> for $ty {
            fn from_ref(s: &Services) -> Self {
                s.$field.clone()
            }
        })*
    };
}

substate!(
    FileService => files,
    UploadService => uploads,
    StoreService => stores,
    SearchService => search,
    EmbeddingService => embeddings,
    crate::service::readiness::ReadinessService => readiness,
    crate::service::metrics::MetricsService => metrics,
);

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// 200 when the database, the file storage, the index and the embedder all answer; 503 with
/// the failed ones named otherwise.
async fn ready(
    axum::extract::State(readiness): axum::extract::State<
        crate::service::readiness::ReadinessService,
    >,
) -> Response {
    let checks = readiness.check().await;
    let ok = checks.iter().all(|c| c.ok);
    let failed: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.name).collect();
    let body = serde_json::json!({
        "status": if ok { "ready" } else { "not_ready" },
        "failed": failed,
        "checks": checks,
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The path as the client sent it (nesting strips the `/v1` prefix from `req.uri()`).
fn original_path(req: &Request) -> &str {
    req.extensions()
        .get::<OriginalUri>()
        .map_or(req.uri().path(), |u| u.0.path())
}

async fn not_found(req: Request) -> Response {
    invalid_url(req.method(), original_path(&req))
}

async fn method_not_allowed(req: Request) -> Response {
    method_not_allowed_for(req.method(), original_path(&req))
}

/// 404 for a path no route serves.
pub(crate) fn invalid_url(method: &axum::http::Method, path: &str) -> Response {
    error::body(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({method} {path})"),
        "invalid_request_error",
        None,
        Some("not_found"),
    )
}

/// 405 for a method the path does not take.
pub(crate) fn method_not_allowed_for(method: &axum::http::Method, path: &str) -> Response {
    error::body(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method {method} is not allowed for {path}"),
        "invalid_request_error",
        None,
        Some("method_not_allowed"),
    )
}

/// Error bodies as both OpenAI and RFC 7807 (llama-stack's spec) describe them: OpenAI's
/// `{"error": {...}}` with the problem's `status`, `title`, `detail` and `instance` beside it
/// (the SDKs ignore extra keys); a client that accepts `application/problem+json` gets the
/// problem alone, with that content type (`code` and `param` kept as extension members).
async fn problem_details(req: Request, next: Next) -> Response {
    let pure = req
        .headers()
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/problem+json"));
    let instance = original_path(&req).to_owned();
    let response = next.run(req).await;
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status().as_u16() < 400 || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return error::body(
            parts.status,
            "The server could not complete the error response.",
            "server_error",
            None,
            None,
        );
    };
    let Ok(serde_json::Value::Object(mut problem)) = serde_json::from_slice(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let Some(serde_json::Value::Object(error)) = problem.get("error").cloned() else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let title = parts.status.canonical_reason().unwrap_or("Error");
    let detail = error.get("message").cloned().unwrap_or_default();
    let fields = [
        ("status", serde_json::Value::from(parts.status.as_u16())),
        ("title", serde_json::Value::from(title)),
        ("detail", detail),
        ("instance", serde_json::Value::from(instance)),
    ];
    if pure {
        problem = serde_json::Map::new();
        problem.insert("type".into(), "about:blank".into());
        for key in ["code", "param"] {
            if let Some(v) = error.get(key) {
                problem.insert(key.into(), v.clone());
            }
        }
        parts.headers.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
    }
    for (k, v) in fields {
        problem.insert(k.into(), v);
    }
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Error bodies are a few hundred bytes; this bounds reading one back.
const MAX_ERROR_BODY: usize = 64 << 10;

/// `GET /metrics`: Prometheus text format.
async fn metrics(
    axum::extract::State(m): axum::extract::State<crate::service::metrics::MetricsService>,
) -> Response {
    match m.render().await {
        Ok(Some(text)) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(None) => error::body(
            StatusCode::SERVICE_UNAVAILABLE,
            "This process exports no metrics (another metrics recorder was installed first).",
            "server_error",
            None,
            None,
        ),
        Err(e) => ApiError(e).into_response(),
    }
}

/// One line per request: method, path, status, latency; and the request metrics, by route
/// template.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(req).await;
    crate::metrics::http_request(
        crate::metrics::method_label(&method),
        route,
        response.status().as_u16(),
        start.elapsed(),
    );
    tracing::info!(
        target: "ragstore::http",
        %method,
        path,
        status = response.status().as_u16(),
        latency_ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// The project a request acts for: its API key's (or the default project's, on a server
/// running without keys), as the gate found it.
pub struct Project(pub ProjectId);

impl<S: Send + Sync> FromRequestParts<S> for Project {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match gate::caller_of(parts) {
            Some(c) => Ok(Project(c.project.clone())),
            // Every /v1 route is behind the gate; a handler outside it is a bug, not a guest.
            None => Err(ApiError(crate::domain::Error::Internal(anyhow::anyhow!(
                "a request reached a handler without passing the gate"
            )))),
        }
    }
}

/// `{object: "list", data, first_id, last_id, has_more}`
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T: Serialize> {
    pub object: &'static str,
    pub data: Vec<T>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

impl<T: Serialize> ListResponse<T> {
    pub fn new(data: Vec<T>, has_more: bool, id_of: impl Fn(&T) -> &str) -> Self {
        Self {
            object: "list",
            first_id: data.first().map(|d| id_of(d).to_owned()),
            last_id: data.last().map(|d| id_of(d).to_owned()),
            data,
            has_more,
        }
    }
}

/// `{id, object: "…deleted", deleted: true}`
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DeleteResponse)]
pub struct DeletedResponse {
    pub id: String,
    pub object: &'static str,
    pub deleted: bool,
}

impl DeletedResponse {
    pub fn new(id: impl ToString, object: &'static str) -> Self {
        Self {
            id: id.to_string(),
            object,
            deleted: true,
        }
    }
}

/// The query of a cursor-paged listing (`limit`, `order`, `after`, `before`), as sent.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub limit: Option<String>,
    pub order: Option<String>,
    pub after: Option<String>,
    pub before: Option<String>,
    /// Vector-store file listings: by status.
    pub filter: Option<String>,
}

impl ListQuery {
    /// `limit` (1..=100, default 20), `order`, and the cursors parsed as ids of the listing's
    /// kind; a cursor that cannot be one names no object.
    pub fn params<Id>(
        &self,
        parse: impl Fn(&str) -> Option<Id>,
    ) -> Result<crate::service::vector_stores::ListParams<Id>> {
        let cursor = |param: &'static str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    parse(s).ok_or_else(|| crate::service::vector_stores::no_such_cursor(param))
                })
                .transpose()
        };
        Ok(crate::service::vector_stores::ListParams {
            limit: page::parse_limit(self.limit.as_deref(), 20, 100)?,
            order: Order::parse(self.order.as_deref())?,
            after: cursor("after", &self.after)?,
            before: cursor("before", &self.before)?,
        })
    }
}

/// What the SDK's pollers wait between polls of an in-progress object.
const POLL_AFTER_MS: &str = "500";

/// `body` as JSON, with the `openai-poll-after-ms` hint while the object is in progress.
pub fn with_poll_hint<T: Serialize>(body: T, in_progress: bool) -> Response {
    let mut res = Json(body).into_response();
    if in_progress {
        res.headers_mut().insert(
            HeaderName::from_static("openai-poll-after-ms"),
            HeaderValue::from_static(POLL_AFTER_MS),
        );
    }
    res
}

/// The body limit of a route whose payload may be `max` bytes, plus room for the form's framing.
pub fn body_limit(max: u64) -> usize {
    usize::try_from(max.saturating_add(1 << 20)).unwrap_or(usize::MAX)
}

/// `Some(Some(v))` for a value, `Some(None)` for an explicit `null`, `None` (with
/// `#[serde(default)]`) when absent: for fields that `null` clears.
pub fn nullable<'de, T, D>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
