//! File batches: many files attached at once, tracked and cancelled together.

use super::vector_stores::StoreService;
use crate::domain::cascade::BATCH_CANCEL_KINDS;
use crate::domain::{
    Attributes, ChunkingStrategy, Error, FileBatchId, FileBatchRecord, FileCounts, FileId,
    ProjectId, Resource, Result, VectorStoreId, VectorStoreRecord,
};

/// One file of a batch, with the attributes and chunking it is attached with.
#[derive(Debug, Clone)]
pub struct BatchFile {
    pub file_id: FileId,
    pub attributes: Attributes,
    pub chunking: ChunkingStrategy,
}

pub const MAX_BATCH_FILES: usize = 2000;

/// A batch's status from its counts.
pub fn batch_status(batch: &FileBatchRecord, counts: &FileCounts) -> &'static str {
    if batch.cancelled {
        "cancelled"
    } else if counts.in_progress > 0 {
        "in_progress"
    } else if counts.failed > 0 && counts.completed == 0 {
        "failed"
    } else {
        "completed"
    }
}

impl StoreService {
    /// Attaches every file (the first mention of a file wins) in one transaction.
    pub async fn create_batch(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        files: Vec<BatchFile>,
    ) -> Result<(FileBatchRecord, FileCounts)> {
        let store = self.record(project, store_id).await?;
        let now = self.clock.now();
        let batch = FileBatchRecord {
            id: FileBatchId::generate(),
            vector_store_id: store.id.clone(),
            project_id: project.clone(),
            created_at: now,
            cancelled: false,
        };
        let mut rows = Vec::with_capacity(files.len());
        for f in files {
            if rows
                .iter()
                .any(|(r, _): &(crate::domain::VsFileRecord, _)| r.file_id == f.file_id)
            {
                continue;
            }
            self.check_attachable(project, &f.file_id).await?;
            rows.push(Self::new_attachment(
                &store,
                &f.file_id,
                Some(&batch.id),
                self.chunking(f.chunking),
                f.attributes,
                now,
            ));
        }
        let max_files = self.auth.quotas(project).await?.files_per_store;
        let gone = self
            .meta
            .create_batch(&batch, &rows, now, max_files)
            .await?;
        if !gone.is_empty() {
            tracing::info!(batch_id = %batch.id, ?gone, "files deleted while the batch was created were left out");
        }
        self.wakeup.wake();
        let counts = self.meta.batch_counts(&batch.id).await?;
        Ok((batch, counts))
    }

    pub(super) async fn batch_record(
        &self,
        store: &VectorStoreRecord,
        id: &FileBatchId,
    ) -> Result<FileBatchRecord> {
        self.meta
            .get_batch(&store.id, id)
            .await?
            .ok_or_else(|| Error::not_found(Resource::FileBatch, id.as_str()))
    }

    pub async fn get_batch(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        id: &FileBatchId,
    ) -> Result<(FileBatchRecord, FileCounts)> {
        let store = self.record(project, store_id).await?;
        let batch = self.batch_record(&store, id).await?;
        let counts = self.meta.batch_counts(&batch.id).await?;
        Ok((batch, counts))
    }

    /// Stops the batch's queued and running files; finished ones keep their outcome.
    pub async fn cancel_batch(
        &self,
        project: &ProjectId,
        store_id: &VectorStoreId,
        id: &FileBatchId,
    ) -> Result<(FileBatchRecord, FileCounts)> {
        let store = self.record(project, store_id).await?;
        let batch = self.batch_record(&store, id).await?;
        // A batch with nothing left to do has nothing to cancel: it keeps its status.
        let before = self.meta.batch_counts(&batch.id).await?;
        if before.in_progress == 0 && !batch.cancelled {
            return Ok((batch, before));
        }
        self.meta
            .cancel_batch(&batch.id, BATCH_CANCEL_KINDS, self.clock.now())
            .await?;
        let counts = self.meta.batch_counts(&batch.id).await?;
        Ok((
            FileBatchRecord {
                cancelled: true,
                ..batch
            },
            counts,
        ))
    }
}
