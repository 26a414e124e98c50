//! Where chunk vectors live and are searched. [`VectorIndex`] is the seam: Qdrant's engine
//! in-process (`qdrant-edge`, [`edge`]) by default, or a Qdrant server through `qdrant-client`
//! ([`qdrant`], `--qdrant-url`). Both keep every store in one collection/shard, with the same
//! payload layout ([`payload`]) and the same filters ([`filter`]), so points copy between them
//! as they are ([`migrate`]):
//!
//! | payload key       | type                 | index                                  |
//! |-------------------|----------------------|----------------------------------------|
//! | `vector_store_id` | keyword              | keyword, `is_tenant = true`            |
//! | `project_id`      | keyword              | keyword                                |
//! | `file_id`         | keyword              | keyword                                |
//! | `chunk_index`     | integer              | -                                      |
//! | `text`            | string               | -                                      |
//! | `attributes`      | object (user values) | filters address `attributes.<key>`     |
//! | `extra`           | object (page, …)     | -                                      |
//!
//! Each point holds two vectors: the embedding model's dense vector (unnamed, cosine) and the
//! chunk text's BM25 sparse vector (`bm25`, IDF applied by the engine; see [`keyword`]). A
//! search runs one leg at a time; fusing legs is the search service's business.
//!
//! Every query filters on `vector_store_id` and on `project_id` (a store's project): a search can
//! only ever see the caller's project, whatever store id it names. Nothing in this trait is
//! specific to one engine.

pub mod edge;
pub(crate) mod filter;
pub mod keyword;
pub mod migrate;
pub(crate) mod payload;
pub mod qdrant;

use async_trait::async_trait;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::domain::{Attributes, FileId, Filter, ProjectId, Result, VectorStoreId};
use keyword::Sparse;

/// One chunk's vector and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: Uuid,
    pub vector: Vec<f32>,
    pub vector_store_id: VectorStoreId,
    /// The store's project.
    pub project_id: ProjectId,
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
    /// The leg's raw score: cosine similarity (-1..1) for [`Leg::Dense`], BM25 (0..) for
    /// [`Leg::Keyword`]. The service maps both to 0..1.
    pub score: f32,
    pub file_id: FileId,
    pub chunk_index: u32,
    pub text: String,
    pub attributes: Attributes,
    pub extra: Map<String, Value>,
}

/// What one leg of a search ranks by.
#[derive(Debug, Clone, PartialEq)]
pub enum Leg {
    /// Cosine similarity to this vector, of the index's dimensions.
    Dense(Vec<f32>),
    /// BM25 of the chunk text against this query text (the index builds its sparse vector).
    Keyword(String),
}

/// One leg of a search inside one store; nothing in it is specific to one engine.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    pub store: VectorStoreId,
    /// The caller's project: only its points are candidates.
    pub project: ProjectId,
    pub leg: Leg,
    /// On attributes; validated by the domain before it gets here.
    pub filter: Option<Filter>,
    /// Files deleted or detached whose points await their purge.
    pub exclude_files: Vec<FileId>,
    pub limit: usize,
    /// Least raw score kept (cosine, or BM25).
    pub score_threshold: Option<f32>,
}

/// What one round of [`VectorIndex::index_keywords`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KeywordRound {
    /// Points given their keyword vector in this round.
    pub indexed: u64,
    /// Where the next round starts; `None`: the store is done.
    pub next: Option<Uuid>,
}

/// A point as an index stores it: what copying an index to another engine moves, with no
/// re-embedding and no re-reading of text.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPoint {
    pub id: Uuid,
    /// The dense vector.
    pub vector: Vec<f32>,
    /// The keyword vector; `None` for a point written before keyword vectors existed (the
    /// keyword job gives it one).
    pub keywords: Option<Sparse>,
    /// The payload, keys as in the layout above.
    pub payload: Map<String, Value>,
}

/// One page of [`VectorIndex::export_points`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportPage {
    pub points: Vec<StoredPoint>,
    /// Where the next page starts; `None`: that was the last.
    pub next: Option<Uuid>,
}

/// Deterministic point id: re-running a stage overwrites its points instead of duplicating them.
pub fn point_id(file: &FileId, store: &VectorStoreId, chunk_index: u32) -> Uuid {
    let name = format!("{file}/{store}/{chunk_index}");
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// Every write is durable when it returns: a crash right after loses none of it, and what a
/// delete removed never comes back. Upkeep (building graphs, compacting) is the
/// implementation's own business.
#[async_trait]
pub trait VectorIndex: Send + Sync + 'static {
    /// Inserts or overwrites points (by id).
    async fn upsert(&self, points: Vec<Point>) -> Result<()>;

    /// The `limit` best points of the query's leg in its store that pass its filter, are not of
    /// its excluded files and score at least its threshold, best first. A keyword leg sees only
    /// points that have their keyword vector (all but those written before it existed, until
    /// [`VectorIndex::index_keywords`] gets to them), and finds nothing for a query made only
    /// of stop-words.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<Hit>>;

    /// Gives up to `limit` points of `store` with ids from `from` on, written before keyword
    /// vectors existed, their keyword vector (from their text). Idempotent; a point deleted
    /// meanwhile stays deleted. Call with the returned `next` until it is `None`.
    async fn index_keywords(
        &self,
        store: &VectorStoreId,
        from: Option<Uuid>,
        limit: usize,
    ) -> Result<KeywordRound>;

    /// How many points of `store` have no keyword vector yet.
    async fn missing_keywords(&self, store: &VectorStoreId) -> Result<u64>;

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

    /// Marks the points of `store` that do not carry `project` (points written before projects
    /// were recorded in the index) as `project`'s; returns how many it marked.
    async fn adopt_store(&self, store: &VectorStoreId, project: &ProjectId) -> Result<u64>;

    /// Exact number of points, optionally restricted to a store and/or a file.
    async fn count(&self, store: Option<&VectorStoreId>, file: Option<&FileId>) -> Result<u64>;

    /// Up to `limit` points, every store's, with ids from `from` on in id order, as stored.
    async fn export_points(&self, from: Option<Uuid>, limit: usize) -> Result<ExportPage>;

    /// Writes points as another index exported them (inserting or overwriting by id), keyword
    /// vectors as they were.
    async fn import_points(&self, points: Vec<StoredPoint>) -> Result<()>;

    /// Does the implementation's upkeep (building graphs, compacting) now rather than on its own
    /// schedule. Never needed for correctness; benchmarks use it to measure a built index.
    async fn maintain(&self) -> Result<()>;
}
