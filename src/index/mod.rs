//! Where chunk vectors live and are searched. [`VectorIndex`] is the seam: Qdrant's engine
//! in-process (`qdrant-edge`) by default, a Qdrant server through `qdrant-client` later. Both keep
//! every store in one collection/shard, with the same payload layout:
//!
//! | payload key       | type                 | index                                  |
//! |-------------------|----------------------|----------------------------------------|
//! | `vector_store_id` | keyword              | keyword, `is_tenant = true`            |
//! | `file_id`         | keyword              | keyword                                |
//! | `chunk_index`     | integer              | -                                      |
//! | `text`            | string               | -                                      |
//! | `attributes`      | object (user values) | filters address `attributes.<key>`     |
//! | `extra`           | object (page, …)     | -                                      |
//!
//! Every query filters on `vector_store_id`. Nothing in this trait is specific to one engine.

pub mod edge;

use async_trait::async_trait;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::{Attributes, FileId, Filter, Result, VectorStoreId};

/// One chunk's vector and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: Uuid,
    pub vector: Vec<f32>,
    pub vector_store_id: VectorStoreId,
    pub file_id: FileId,
    pub chunk_index: u32,
    pub text: String,
    pub attributes: Attributes,
    /// Where the chunk came from (page, sheet, heading…), shown to clients as-is.
    pub extra: Map<String, Value>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: Uuid,
    /// The engine's cosine similarity, -1..1 (the service maps it to 0..1).
    pub score: f32,
    pub file_id: FileId,
    pub chunk_index: u32,
    pub text: String,
    pub attributes: Attributes,
    pub extra: Map<String, Value>,
}

/// Deterministic point id: re-running a stage overwrites its points instead of duplicating them.
pub fn point_id(file: &FileId, store: &VectorStoreId, chunk_index: u32) -> Uuid {
    let name = format!("{file}/{store}/{chunk_index}");
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// Inserts or overwrites points (by id).
    async fn upsert(&self, points: Vec<Point>) -> Result<()>;

    /// The `limit` nearest points of one store that pass `filter` (on attributes), are not of
    /// `exclude_files` (deleted, awaiting their purge) and score at least `score_threshold`
    /// (cosine), best first.
    async fn search(
        &self,
        store: &VectorStoreId,
        vector: Vec<f32>,
        filter: Option<&Filter>,
        exclude_files: &[FileId],
        limit: usize,
        score_threshold: Option<f32>,
    ) -> Result<Vec<Hit>>;

    /// Deletes a file's points in one store, or in every store when `store` is `None`.
    async fn delete_file(&self, store: Option<&VectorStoreId>, file: &FileId) -> Result<()>;

    /// Deletes every point of a store.
    async fn delete_store(&self, store: &VectorStoreId) -> Result<()>;

    /// Replaces the `attributes` of a file's points in one store, without touching vectors.
    async fn set_attributes(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        attributes: &Attributes,
    ) -> Result<()>;

    /// Exact number of points, optionally restricted to a store and/or a file.
    async fn count(&self, store: Option<&VectorStoreId>, file: Option<&FileId>) -> Result<u64>;

    /// Background upkeep, called periodically: e.g. build the HNSW graph once enough points changed.
    async fn maintain(&self) -> Result<()>;

    /// Makes everything written so far durable (called on shutdown).
    async fn flush(&self) -> Result<()>;
}
