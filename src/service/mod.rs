//! The use cases. Handlers parse and shape; services decide, in this order: validate, publish the
//! bytes, commit the row. A row is only ever written for bytes that are already durable.
//!
//! Each service holds the seams it uses and nothing else; `app.rs` builds them.

pub mod auth;
pub mod embeddings;
pub mod file_batches;
pub mod files;
pub mod fine_tune;
pub mod jsonl;
pub mod maintenance;
pub mod metrics;
pub mod readiness;
pub mod search;
pub mod uploads;
pub mod vector_stores;
pub mod vs_files;

pub use embeddings::EmbeddingService;
pub use files::FileService;
pub use search::SearchService;
pub use uploads::UploadService;
pub use vector_stores::StoreService;

/// Every service the HTTP API calls.
#[derive(Clone)]
pub struct Services {
    pub files: FileService,
    pub uploads: UploadService,
    pub stores: StoreService,
    pub search: SearchService,
    pub embeddings: EmbeddingService,
    pub readiness: readiness::ReadinessService,
    pub auth: auth::AuthService,
    pub metrics: metrics::MetricsService,
}
