//! The only place SQL lives. Two seams: [`Metadata`] (rows: files, uploads, vector stores, the
//! per-file caches) and [`JobQueue`] (the durable ingestion queue). SQLite in the data dir by
//! default, PostgreSQL (shared by replicas) with `--database-url`; nothing above knows which
//! database answers.
//!
//! Implementations store and load. Every decision (which jobs a delete cancels, which purge it
//! enqueues, what status a file takes when its job ends) is made in `domain/` or `service/` and
//! handed down complete; what an implementation owns is atomicity: each method is one
//! transaction, and the promises written on it hold with any number of concurrent callers, in
//! one process or several. `tests/it/metadata_contract.rs` checks every promise.

pub mod jobs;
pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::Arc;

use crate::domain::{
    Attributes, BucketObject, Cascade, Chunking, FileBatchId, FileBatchRecord, FileCounts, FileId,
    FileRecord, FileStatus, IndexCollection, IngestErrorCode, JobKind, KeyId, KeyRecord, NewJob,
    Order, PartId, PartRecord, ProjectId, ProjectRecord, Purpose, QuotaOverrides, Quotas, Result,
    UploadId, UploadRecord, UploadStatus, VectorStoreId, VectorStoreRecord, VsFileRecord,
    VsFileStatus,
};
pub use jobs::{JobQueue, QueueStats, Wakeup};

/// Everything the services need from the metadata database.
pub trait Metadata: FileMetadata + StoreMetadata + CacheMetadata + AuthMetadata {}
impl<T: FileMetadata + StoreMetadata + CacheMetadata + AuthMetadata> Metadata for T {}

/// The metadata database and its job queue (one object behind both seams).
pub struct Database {
    pub meta: Arc<dyn Metadata>,
    pub queue: Arc<dyn JobQueue>,
    /// Other processes may use it too (PostgreSQL): what it holds running or half-written may
    /// be theirs, not abandoned.
    pub shared: bool,
}

/// Opens PostgreSQL at `url` (a `postgres://` URL, checked by the configuration) or else SQLite
/// at `sqlite_path`, migrated. `wakeup`, for a server: PostgreSQL wakes it when any process
/// writes a job (SQLite's writers are this process's, which wake it themselves).
pub async fn open(
    url: Option<&str>,
    sqlite_path: &Path,
    wakeup: Option<Wakeup>,
) -> Result<Database> {
    Ok(match url {
        Some(url) => {
            let db = Arc::new(postgres::PgMetadata::connect(url, wakeup).await?);
            Database {
                meta: db.clone(),
                queue: db,
                shared: true,
            }
        }
        None => {
            let db = Arc::new(sqlite::SqliteMetadata::open(sqlite_path).await?);
            Database {
                meta: db.clone(),
                queue: db,
                shared: false,
            }
        }
    })
}

/// Filters and cursor of `GET /files`.
#[derive(Debug, Clone)]
pub struct FileListQuery {
    pub purpose: Option<Purpose>,
    pub order: Order,
    /// Rows strictly after this `(created_at, id)` in `order`.
    pub after: Option<(i64, FileId)>,
    /// Rows to return; implementations return up to `limit` rows.
    pub limit: u32,
}

/// A cursor position in a listing ordered by `(created_at, id)`.
pub type Position = (i64, String);

#[derive(Debug, Clone)]
pub struct ListWindow {
    pub order: Order,
    pub after: Option<Position>,
    pub before: Option<Position>,
    /// Rows to return (callers ask for one more than they show, to learn `has_more`).
    pub limit: u32,
}

/// What the server holds, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Bytes of files not deleted, in every project.
    pub stored_bytes: i64,
    /// Stores with the most indexed chunks, and how many each has.
    pub top_stores: Vec<(VectorStoreId, i64)>,
}

/// What attaching a file to a store did.
#[derive(Debug, Clone, PartialEq)]
pub enum Attached {
    /// A new row and its ingest job.
    New(VsFileRecord),
    /// The file was already in the store; nothing changed.
    Existing(VsFileRecord),
    /// The file (or the store) is deleted, expired or of another project; nothing was written.
    Gone,
}

/// The extracted text of a file, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum FileText {
    Ok {
        storage_key: String,
        format: String,
        /// Where parts of the text came from (pages, sheets, headings).
        sections: Vec<ragstore_extract::Section>,
    },
    Failed {
        code: IngestErrorCode,
        message: String,
    },
}

/// One chunk of a file under one chunking.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRow {
    pub idx: u32,
    pub text: String,
    pub extra: Map<String, Value>,
    pub embedding: Option<Vec<f32>>,
}

#[async_trait]
pub trait FileMetadata: Send + Sync + 'static {
    // --- files ---------------------------------------------------------------------------------

    /// Inserts the file row and, in the same transaction, its first job (text extraction),
    /// unless the project's live files would then hold more than `max_bytes`: then
    /// [`Error::QuotaExceeded`](crate::domain::Error::QuotaExceeded) and nothing is written.
    async fn insert_file(
        &self,
        file: &FileRecord,
        job: Option<&NewJob>,
        max_bytes: i64,
    ) -> Result<()>;

    /// A file the client can see: not deleted and not past `expires_at`.
    async fn get_file(
        &self,
        project: &ProjectId,
        id: &FileId,
        now: i64,
    ) -> Result<Option<FileRecord>>;

    /// The `(created_at, id)` position of any file row still present (even deleted), for cursors.
    async fn file_position(
        &self,
        project: &ProjectId,
        id: &FileId,
    ) -> Result<Option<(i64, FileId)>>;

    /// Visible files in `(created_at, id)` order; rows sharing a `created_at` are never skipped or
    /// repeated across pages.
    async fn list_files(
        &self,
        project: &ProjectId,
        q: &FileListQuery,
        now: i64,
    ) -> Result<Vec<FileRecord>>;

    /// In one transaction: marks the file deleted (whether or not it has expired), removes it from
    /// every vector store and applies `cascade`. `None` (and nothing written) if it was already
    /// deleted or is not in `project`.
    async fn delete_file(
        &self,
        project: &ProjectId,
        id: &FileId,
        cascade: &Cascade,
        now: i64,
    ) -> Result<Option<FileRecord>>;

    /// Files not yet deleted whose `expires_at` is at or before `now`.
    async fn expired_files(&self, now: i64, limit: u32) -> Result<Vec<FileRecord>>;

    /// Removes the row of a file already marked deleted (a live file's row stays).
    async fn purge_file_row(&self, id: &FileId) -> Result<()>;

    /// Whether any row (live or deleted) refers to this file id.
    async fn file_row_exists(&self, id: &FileId) -> Result<bool>;

    /// Sets a file's (deprecated) `status` and `status_details`.
    async fn set_file_status(
        &self,
        id: &FileId,
        status: FileStatus,
        details: Option<&str>,
    ) -> Result<()>;

    /// Filenames of the given files (deleted ones included), for search results.
    async fn filenames(&self, ids: &[FileId]) -> Result<Vec<(FileId, String)>>;

    // --- uploads -------------------------------------------------------------------------------

    async fn insert_upload(&self, upload: &UploadRecord) -> Result<()>;

    async fn get_upload(&self, project: &ProjectId, id: &UploadId) -> Result<Option<UploadRecord>>;

    /// Inserts the part only while its upload is pending and unexpired at `now`, and only if the
    /// parts stored so far plus this one stay within `max_total` bytes. Atomic against concurrent
    /// parts, completion and cancellation of the same upload: parts racing each other never
    /// store more than `max_total` together. `false` (nothing written) if refused.
    async fn insert_part(&self, part: &PartRecord, now: i64, max_total: i64) -> Result<bool>;

    /// The upload's parts, in the order they were stored.
    async fn parts_of(&self, upload: &UploadId) -> Result<Vec<PartRecord>>;

    async fn part_exists(&self, id: &PartId) -> Result<bool>;

    /// In one transaction: the pending, unexpired upload becomes completed and the file row (with
    /// its job) is inserted. `false` (and nothing written) if the upload was no longer pending;
    /// a quota error (nothing written) if the project's live files would hold more than
    /// `max_bytes`.
    async fn complete_upload(
        &self,
        upload: &UploadId,
        file: &FileRecord,
        job: Option<&NewJob>,
        now: i64,
        max_bytes: i64,
    ) -> Result<bool>;

    /// Moves a pending upload to `to`; `false` if it was not pending.
    async fn finish_pending_upload(&self, upload: &UploadId, to: UploadStatus) -> Result<bool>;

    /// Marks pending uploads past `expires_at` expired; returns how many.
    async fn expire_uploads(&self, now: i64) -> Result<u64>;

    /// Uploads that are no longer pending but still have part rows.
    async fn finished_uploads_with_parts(&self, limit: u32) -> Result<Vec<UploadId>>;

    async fn delete_parts(&self, upload: &UploadId) -> Result<()>;

    // --- upload sessions (llama-stack's buckets and keys) ---------------------------------------

    /// In one transaction: inserts the session's upload and names it `bucket`/`key`, unless that
    /// key already holds an object (a completed upload whose file is visible at `now`) or a live
    /// session (pending, unexpired); what a dead one left under the key is replaced. `false`
    /// (nothing written) if the key is taken.
    async fn insert_session(
        &self,
        upload: &UploadRecord,
        bucket: &str,
        key: &str,
        now: i64,
    ) -> Result<bool>;

    /// The bucket and key a session's upload writes.
    async fn get_session(
        &self,
        project: &ProjectId,
        upload: &UploadId,
    ) -> Result<Option<BucketObject>>;

    /// The object under `bucket`/`key`, with its file, if it exists (visible at `now`).
    async fn get_bucket_object(
        &self,
        project: &ProjectId,
        bucket: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<(BucketObject, FileRecord)>>;

    /// The objects of a bucket, by key.
    async fn list_bucket(
        &self,
        project: &ProjectId,
        bucket: &str,
        now: i64,
    ) -> Result<Vec<(BucketObject, FileRecord)>>;

    /// The buckets that hold at least one object, by name.
    async fn list_buckets(&self, project: &ProjectId, now: i64) -> Result<Vec<String>>;

    /// Forgets the name of a session's upload (after its file was deleted).
    async fn delete_bucket_object(&self, upload: &UploadId) -> Result<()>;

    /// A trivial query: the database answers.
    async fn ping(&self) -> Result<()>;

    /// Closes connections cleanly (checkpoints the SQLite WAL).
    async fn close(&self);
}

#[async_trait]
pub trait StoreMetadata: Send + Sync + 'static {
    // --- stores --------------------------------------------------------------------------------

    /// Inserts the store and, in the same transaction, attaches `files` (each with its job) as
    /// [`StoreMetadata::attach_file`] would. Returns the files left out because they were gone.
    /// A quota error (nothing written) if the project would then hold more than
    /// `quotas.stores` stores, or the store more than `quotas.files_per_store` files.
    async fn create_vector_store(
        &self,
        store: &VectorStoreRecord,
        files: &[(VsFileRecord, NewJob)],
        now: i64,
        quotas: &Quotas,
    ) -> Result<Vec<FileId>>;

    /// A store not deleted.
    async fn get_vector_store(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
    ) -> Result<Option<VectorStoreRecord>>;

    async fn vector_store_position(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
    ) -> Result<Option<Position>>;

    async fn list_vector_stores(
        &self,
        project: &ProjectId,
        w: &ListWindow,
    ) -> Result<Vec<VectorStoreRecord>>;

    /// Writes name, description, metadata, expiry and last_active_at of a store not deleted.
    async fn update_vector_store(&self, store: &VectorStoreRecord) -> Result<()>;

    /// Moves `last_active_at` forward to `at` (never back), touching nothing else: a search
    /// racing a modify cannot undo it.
    async fn touch_vector_store(&self, id: &VectorStoreId, at: i64) -> Result<()>;

    /// In one transaction: marks the store deleted, detaches its files and applies `cascade`.
    /// `false` (nothing written) if it did not exist.
    async fn delete_vector_store(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
        cascade: &Cascade,
        now: i64,
    ) -> Result<bool>;

    /// File counts by status and the summed usage bytes of a store.
    async fn store_stats(&self, id: &VectorStoreId) -> Result<(FileCounts, i64)>;

    /// Records where the vectors of `c.model` live on `c.engine`, unless a record is there
    /// already; returns the record that holds (the first replica's, if several start at once).
    async fn record_collection(&self, c: &IndexCollection) -> Result<IndexCollection>;

    /// Every recorded collection, oldest first.
    async fn index_collections(&self) -> Result<Vec<IndexCollection>>;

    /// Every store not deleted, with its project.
    async fn live_stores(&self) -> Result<Vec<(VectorStoreId, ProjectId)>>;

    /// For metrics: bytes of live files, and the `top` stores holding the most indexed chunks
    /// with their counts.
    async fn usage(&self, top: u32) -> Result<Usage>;

    /// Removes the rows of a deleted store once its points are gone.
    async fn purge_vector_store_rows(&self, id: &VectorStoreId) -> Result<()>;

    /// Queues the job that gives a store's older points their keyword vectors, unless one is
    /// already queued or running; `true` if it queued one.
    async fn enqueue_keyword_index(
        &self,
        store: &VectorStoreId,
        project: &ProjectId,
        now: i64,
    ) -> Result<bool>;

    // --- files in stores ------------------------------------------------------------------------

    /// Attaches a file with its ingest job, in one transaction, only if at that moment the file is
    /// visible in the row's project (not deleted, not expired at `now`) and the store is not
    /// deleted: an attach racing a delete of either never leaves a link behind.
    /// A quota error (nothing written) if the store would then hold more than
    /// `max_files` files.
    async fn attach_file(
        &self,
        vs_file: &VsFileRecord,
        job: &NewJob,
        now: i64,
        max_files: i64,
    ) -> Result<Attached>;

    async fn get_vs_file(
        &self,
        store: &VectorStoreId,
        file: &FileId,
    ) -> Result<Option<VsFileRecord>>;

    async fn vs_file_position(
        &self,
        store: &VectorStoreId,
        file: &FileId,
    ) -> Result<Option<Position>>;

    async fn list_vs_files(
        &self,
        store: &VectorStoreId,
        batch: Option<&FileBatchId>,
        status: Option<VsFileStatus>,
        w: &ListWindow,
    ) -> Result<Vec<VsFileRecord>>;

    /// Records ingestion progress of a file still in progress (`total` once known).
    async fn set_vs_file_progress(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        indexed: u32,
        total: Option<u32>,
    ) -> Result<()>;

    /// `false` if the file is not in the store.
    async fn set_vs_file_attributes(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        attributes: &Attributes,
    ) -> Result<bool>;

    /// In one transaction: removes the file from the store and applies `cascade`. `None` (nothing
    /// written) if it was not in the store.
    async fn detach_file(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        cascade: &Cascade,
        now: i64,
    ) -> Result<Option<VsFileRecord>>;

    /// Files whose points in this store await a queued or running purge (of the file, or of its
    /// link to this store): searches exclude them so a deleted file disappears at once.
    async fn files_pending_purge(&self, store: &VectorStoreId) -> Result<Vec<FileId>>;

    // --- batches --------------------------------------------------------------------------------

    /// Inserts the batch and attaches its files (each with its job, as `attach_file` would) in
    /// one transaction. Files already in the store keep their row and join no batch. Returns the
    /// files left out because they were gone. A quota error (nothing written) if the store
    /// would then hold more than `max_files` files.
    async fn create_batch(
        &self,
        batch: &FileBatchRecord,
        files: &[(VsFileRecord, NewJob)],
        now: i64,
        max_files: i64,
    ) -> Result<Vec<FileId>>;

    async fn get_batch(
        &self,
        store: &VectorStoreId,
        id: &FileBatchId,
    ) -> Result<Option<FileBatchRecord>>;

    async fn batch_counts(&self, id: &FileBatchId) -> Result<FileCounts>;

    /// In one transaction: marks the batch cancelled, cancels the live jobs of one of `kinds`
    /// of its in-progress files, and marks those files cancelled.
    async fn cancel_batch(&self, id: &FileBatchId, kinds: &[JobKind], now: i64) -> Result<()>;
}

/// What ingestion computes once per file and reuses across stores: its text, its chunks per
/// chunking, and their embeddings per model.
#[async_trait]
pub trait CacheMetadata: Send + Sync + 'static {
    async fn get_file_text(&self, file: &FileId) -> Result<Option<FileText>>;

    /// Inserts or replaces, only while the file is live (its row is there and not deleted):
    /// `false` when it is not, and nothing was written. A job that extracted a file deleted
    /// meanwhile cannot leave its text behind the purge.
    async fn put_file_text(&self, file: &FileId, text: &FileText, now: i64) -> Result<bool>;

    /// How many chunks (file, chunking) has, once its chunking has finished; `None` before.
    async fn chunked(&self, file: &FileId, chunking: &Chunking) -> Result<Option<u32>>;

    /// Writes chunks of (file, chunking) by index, in one transaction; chunking may arrive in
    /// batches. A chunk written again with the same text keeps its embedding. Only while the
    /// file is live: `false` (nothing written) once it is deleted.
    async fn put_chunks(
        &self,
        file: &FileId,
        chunking: &Chunking,
        chunks: &[ChunkRow],
    ) -> Result<bool>;

    /// Marks the chunking of (file, chunking) complete with `total` chunks, dropping any beyond.
    /// Only while the file is live: `false` (nothing written) once it is deleted.
    async fn finish_chunking(&self, file: &FileId, chunking: &Chunking, total: u32)
        -> Result<bool>;

    /// Chunks of (file, chunking) from index `offset` in order, at most `limit`, with their
    /// embeddings when made by model `vectors_of`.
    async fn get_chunks(
        &self,
        file: &FileId,
        chunking: &Chunking,
        offset: u32,
        limit: u32,
        vectors_of: Option<&str>,
    ) -> Result<Vec<ChunkRow>>;

    async fn set_embeddings(
        &self,
        file: &FileId,
        chunking: &Chunking,
        model: &str,
        vectors: &[(u32, Vec<f32>)],
    ) -> Result<()>;

    /// Removes a file's text row, chunks and chunkings.
    async fn delete_file_caches(&self, file: &FileId) -> Result<()>;
}

/// Projects and their API keys (only the keys' hashes).
#[async_trait]
pub trait AuthMetadata: Send + Sync + 'static {
    /// The project with this id, or else this name.
    async fn find_project(&self, id_or_name: &str) -> Result<Option<ProjectRecord>>;

    /// The project named `name`, created (with default quotas) if there is none.
    async fn ensure_project(&self, name: &str, now: i64) -> Result<ProjectRecord>;

    /// Every project, oldest first.
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>>;

    /// Replaces a project's quota settings; `false` if there is no such project.
    async fn set_project_quotas(&self, id: &ProjectId, quotas: &QuotaOverrides) -> Result<bool>;

    async fn insert_key(&self, key: &KeyRecord) -> Result<()>;

    /// A key's row, revoked or not.
    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>>;

    /// Every key, oldest first.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>>;

    /// Marks the key revoked at `now`; `false` if there is no such key or it already was.
    async fn revoke_key(&self, id: &KeyId, now: i64) -> Result<bool>;

    /// Whether any key is not revoked: a server with none runs open.
    async fn any_live_key(&self) -> Result<bool>;

    /// Bytes of the project's files not deleted.
    async fn stored_bytes(&self, project: &ProjectId) -> Result<i64>;
}
