//! Where file bytes live. [`FileStorage`] is the seam: local disk now, S3-compatible later.
//! Blobs are addressed by keys we generate (`files/<file-id>`, `parts/<upload>/<part>`).

pub mod local;
pub mod s3;
pub mod staging;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use crate::domain::Result;
pub use staging::{StagedFile, StagedWriter, Staging};

/// A blob being read: its size and its bytes as a stream.
pub struct Blob {
    pub len: u64,
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

/// A blob found by [`FileStorage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    /// When it was last written, in unix seconds.
    pub modified: i64,
}

#[async_trait]
pub trait FileStorage: Send + Sync + 'static {
    /// Makes the staged bytes durable under `key`, replacing nothing: keys are unique.
    async fn put(&self, key: &str, staged: StagedFile) -> Result<()>;

    /// `None` when there is no blob under `key`.
    async fn get(&self, key: &str) -> Result<Option<Blob>>;

    /// The bytes `range` of the blob under `key` (the caller keeps it inside the blob's size),
    /// streamed; `None` when there is no blob.
    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Option<Blob>>;

    /// Idempotent: deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Deletes every key under `prefix` (which ends in `/`). Idempotent.
    async fn delete_prefix(&self, prefix: &str) -> Result<()>;

    /// Every blob under `prefix`, for the sweep of blobs no row refers to.
    async fn list(&self, prefix: &str) -> Result<Vec<Listed>>;

    /// Writes the concatenation of the blobs `parts` (keys and sizes, in order) under `key`
    /// inside the store, without the bytes passing through this process. `Ok(false)`, with
    /// nothing written, when the store cannot for these parts: the caller then streams them.
    async fn compose(&self, key: &str, parts: &[(String, u64)]) -> Result<bool> {
        let _ = (key, parts);
        Ok(false)
    }
}
