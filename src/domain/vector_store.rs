//! Vector stores, the files attached to them, and file batches.

use std::collections::BTreeMap;

use super::attributes::Attributes;
use super::chunking::Chunking;
use super::ids::{FileBatchId, FileId, ProjectId, VectorStoreId};

#[derive(Debug, Clone, PartialEq)]
pub struct VectorStoreRecord {
    pub id: VectorStoreId,
    pub project_id: ProjectId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: i64,
    pub last_active_at: i64,
    /// `expires_after.days` with anchor `last_active_at`.
    pub expires_after_days: Option<i64>,
}

impl VectorStoreRecord {
    pub fn expires_at(&self) -> Option<i64> {
        self.expires_after_days
            .map(|d| self.last_active_at + d * 86_400)
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at().is_some_and(|e| e <= now)
    }
}

/// The public status of a file in a vector store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VsFileStatus {
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl VsFileStatus {
    pub const ALL: [VsFileStatus; 4] = [
        VsFileStatus::InProgress,
        VsFileStatus::Completed,
        VsFileStatus::Failed,
        VsFileStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VsFileStatus::InProgress => "in_progress",
            VsFileStatus::Completed => "completed",
            VsFileStatus::Failed => "failed",
            VsFileStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// `last_error.code` of a failed vector store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestErrorCode {
    ServerError,
    UnsupportedFile,
    InvalidFile,
}

impl IngestErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestErrorCode::ServerError => "server_error",
            IngestErrorCode::UnsupportedFile => "unsupported_file",
            IngestErrorCode::InvalidFile => "invalid_file",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::ServerError, Self::UnsupportedFile, Self::InvalidFile]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VsFileRecord {
    pub vector_store_id: VectorStoreId,
    pub file_id: FileId,
    pub project_id: ProjectId,
    pub batch_id: Option<FileBatchId>,
    pub created_at: i64,
    pub status: VsFileStatus,
    pub usage_bytes: i64,
    pub chunking: Chunking,
    pub attributes: Attributes,
    pub last_error: Option<(IngestErrorCode, String)>,
    /// Ingestion progress: chunks in the index so far, and how many there will be once the
    /// chunking has finished.
    pub chunks_indexed: u32,
    pub chunks_total: Option<u32>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCounts {
    pub in_progress: i64,
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
}

impl FileCounts {
    pub fn total(&self) -> i64 {
        self.in_progress + self.completed + self.failed + self.cancelled
    }

    pub fn add(&mut self, status: VsFileStatus, n: i64) {
        match status {
            VsFileStatus::InProgress => self.in_progress += n,
            VsFileStatus::Completed => self.completed += n,
            VsFileStatus::Failed => self.failed += n,
            VsFileStatus::Cancelled => self.cancelled += n,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileBatchRecord {
    pub id: FileBatchId,
    pub vector_store_id: VectorStoreId,
    pub project_id: ProjectId,
    pub created_at: i64,
    pub cancelled: bool,
}

/// The status a vector-store file takes when its ingest job ends, applied by the job queue in
/// the same transaction as the (fenced) end of the job, and only to a file still in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct VsFileOutcome {
    pub vector_store_id: VectorStoreId,
    pub file_id: FileId,
    pub status: VsFileStatus,
    pub usage_bytes: i64,
    pub last_error: Option<(IngestErrorCode, String)>,
}

/// Where the vectors of one embedding model live, as the database records it: the first start
/// with a model writes it, and every later start must agree (same collection, same dimensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexCollection {
    /// `embedded` (the index in the data dir) or `qdrant` (a Qdrant server).
    pub engine: String,
    pub model: String,
    /// The Qdrant collection's name; for the embedded index, its directory under the data dir.
    pub collection: String,
    pub dims: u32,
    pub created_at: i64,
}
