//! Types and rules with no I/O: ids, purposes, statuses, records, limits.

pub mod attributes;
pub mod cascade;
pub mod chunking;
pub mod error;
pub mod file;
pub mod filter;
pub mod ids;
pub mod job;
pub mod page;
pub mod project;
pub mod upload;
pub mod vector_store;

pub use attributes::{AttrValue, Attributes};
pub use cascade::Cascade;
pub use chunking::{Chunking, ChunkingStrategy};
pub use error::{Error, Resource, Result};
pub use file::{FileExpiry, FileRecord, FileStatus, Purpose};
pub use filter::{CompareOp, Filter, Scalar};
pub use ids::{FileBatchId, FileId, KeyId, PartId, ProjectId, UploadId, VectorStoreId};
pub use job::{Job, JobEnd, JobFilter, JobKind, NewJob};
pub use page::{Order, Page};
pub use project::{KeyRecord, ProjectRecord, Quota, QuotaOverrides, Quotas, SecretKey};
pub use upload::{BucketObject, PartRecord, UploadRecord, UploadStatus};
pub use vector_store::{
    FileBatchRecord, FileCounts, IndexCollection, IngestErrorCode, VectorStoreRecord,
    VsFileOutcome, VsFileRecord, VsFileStatus,
};
