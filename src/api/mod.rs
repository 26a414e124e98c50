//! The OpenAI HTTP surface. One module per resource, each with a `router()`; the same routes are
//! served under `/v1` and, for llama-stack clients, `/v1/openai/v1`.

pub mod embeddings;
pub mod error;
pub mod files;
pub mod json;
pub mod uploads;
pub mod vector_stores;

use axum::extract::{FromRequestParts, OriginalUri, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::time::Instant;

use crate::app::AppState;
use crate::config::Config;
use crate::domain::ProjectId;
use error::ApiError;

pub fn router(state: AppState) -> Router {
    let v1 = v1_routes(&state.config);
    Router::new()
        .route("/health", get(health))
        .nest("/v1", v1.clone())
        .nest("/v1/openai/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

fn v1_routes(config: &Config) -> Router<AppState> {
    Router::new()
        .merge(files::router(config))
        .merge(uploads::router(config))
        .merge(vector_stores::router())
        .merge(embeddings::router())
        .method_not_allowed_fallback(method_not_allowed)
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The path as the client sent it (nesting strips the `/v1` prefix from `req.uri()`).
fn original_path(req: &Request) -> &str {
    req.extensions()
        .get::<OriginalUri>()
        .map_or(req.uri().path(), |u| u.0.path())
}

async fn not_found(req: Request) -> Response {
    error::body(
        StatusCode::NOT_FOUND,
        &format!("Invalid URL ({} {})", req.method(), original_path(&req)),
        "invalid_request_error",
        None,
        Some("not_found"),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    error::body(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!(
            "Method {} is not allowed for {}",
            req.method(),
            original_path(&req)
        ),
        "invalid_request_error",
        None,
        Some("method_not_allowed"),
    )
}

/// One line per request: method, path, status, latency.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
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

/// The project a request acts for. Until API keys land every request belongs to the default
/// project, whatever `Authorization` header it carries.
pub struct Project(pub ProjectId);

impl<S: Send + Sync> FromRequestParts<S> for Project {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Project(ProjectId::default_project()))
    }
}

/// `{object: "list", data, first_id, last_id, has_more}`
#[derive(Debug, Serialize)]
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

/// The body limit of a route whose payload may be `max` bytes, plus room for the form's framing.
pub fn body_limit(max: u64) -> usize {
    usize::try_from(max.saturating_add(1 << 20)).unwrap_or(usize::MAX)
}
