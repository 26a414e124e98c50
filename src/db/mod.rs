//! The only place SQL lives. [`Metadata`] is the seam: SQLite now, PostgreSQL later. Nothing
//! above it knows which database answers.

pub mod sqlite;

use async_trait::async_trait;

use crate::domain::{
    FileId, FileRecord, Order, PartId, PartRecord, ProjectId, Purpose, Result, UploadId,
    UploadRecord, UploadStatus,
};

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

#[async_trait]
pub trait Metadata: Send + Sync + 'static {
    // --- files ---------------------------------------------------------------------------------

    async fn insert_file(&self, file: &FileRecord) -> Result<()>;

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

    async fn list_files(
        &self,
        project: &ProjectId,
        q: &FileListQuery,
        now: i64,
    ) -> Result<Vec<FileRecord>>;

    /// Marks a visible file deleted; returns it, or `None` if it was not visible.
    async fn mark_file_deleted(
        &self,
        project: &ProjectId,
        id: &FileId,
        now: i64,
    ) -> Result<Option<FileRecord>>;

    /// Marks every file past its `expires_at` deleted; returns how many.
    async fn mark_expired_files_deleted(&self, now: i64) -> Result<u64>;

    /// Files marked deleted whose blob and row still need purging.
    async fn deleted_files(&self, limit: u32) -> Result<Vec<FileRecord>>;

    /// Removes the row of a file already marked deleted.
    async fn purge_file_row(&self, id: &FileId) -> Result<()>;

    /// Whether any row (live or deleted) refers to this file id.
    async fn file_row_exists(&self, id: &FileId) -> Result<bool>;

    // --- uploads -------------------------------------------------------------------------------

    async fn insert_upload(&self, upload: &UploadRecord) -> Result<()>;

    async fn get_upload(&self, project: &ProjectId, id: &UploadId) -> Result<Option<UploadRecord>>;

    /// Inserts the part only while its upload is pending, unexpired, and the parts stored so far
    /// plus this one stay within `max_total` bytes. `false` if refused.
    async fn insert_part(&self, part: &PartRecord, now: i64, max_total: i64) -> Result<bool>;

    async fn parts_of(&self, upload: &UploadId) -> Result<Vec<PartRecord>>;

    async fn part_exists(&self, id: &PartId) -> Result<bool>;

    /// In one transaction: the pending, unexpired upload becomes completed and the file row is
    /// inserted. `false` (and nothing written) if the upload was no longer pending.
    async fn complete_upload(&self, upload: &UploadId, file: &FileRecord, now: i64)
        -> Result<bool>;

    /// Moves a pending upload to `to`; `false` if it was not pending.
    async fn finish_pending_upload(&self, upload: &UploadId, to: UploadStatus) -> Result<bool>;

    /// Marks pending uploads past `expires_at` expired; returns how many.
    async fn expire_uploads(&self, now: i64) -> Result<u64>;

    /// Uploads that are no longer pending but still have part rows.
    async fn finished_uploads_with_parts(&self, limit: u32) -> Result<Vec<UploadId>>;

    async fn delete_parts(&self, upload: &UploadId) -> Result<()>;

    /// Closes connections cleanly (checkpoints the SQLite WAL).
    async fn close(&self);
}

pub(crate) fn db_err(e: sqlx::Error) -> crate::domain::Error {
    crate::domain::Error::Internal(anyhow::Error::new(e).context("metadata database"))
}
