//! What deleting, detaching or cancelling sets in motion. The metadata store applies a
//! [`Cascade`] in the same transaction as the change that causes it; which jobs stop and which
//! purge starts is decided here, not in SQL.

use super::file::FileRecord;
use super::ids::{FileId, ProjectId, VectorStoreId};
use super::job::{JobEnd, JobFilter, JobKind, NewJob};
use super::vector_store::{VsFileOutcome, VsFileStatus};

/// Jobs to cancel and the purge to enqueue, atomically with a delete or a detach.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    pub cancel: JobFilter,
    pub purge: NewJob,
}

impl Cascade {
    /// A deleted file: its extraction and its ingest into every store stop; one purge removes
    /// its points in every store, its caches, its bytes and its row.
    pub fn file_deleted(file: &FileRecord) -> Self {
        Cascade {
            cancel: JobFilter {
                kinds: vec![JobKind::Extract, JobKind::Ingest],
                file_id: Some(file.id.clone()),
                vector_store_id: None,
            },
            purge: NewJob {
                kind: JobKind::PurgeFile,
                project_id: file.project_id.clone(),
                file_id: Some(file.id.clone()),
                vector_store_id: None,
            },
        }
    }

    /// A file detached from one store: its ingest into that store stops; a purge removes its
    /// points there (unless it is attached again before the purge runs).
    pub fn file_detached(project: &ProjectId, store: &VectorStoreId, file: &FileId) -> Self {
        Cascade {
            cancel: JobFilter {
                kinds: vec![JobKind::Ingest],
                file_id: Some(file.clone()),
                vector_store_id: Some(store.clone()),
            },
            purge: NewJob {
                kind: JobKind::PurgeVsFile,
                project_id: project.clone(),
                file_id: Some(file.clone()),
                vector_store_id: Some(store.clone()),
            },
        }
    }

    /// A deleted store: every ingest into it stops; a purge removes its points and rows. (A
    /// file's extraction serves other stores too, so it goes on.)
    pub fn store_deleted(project: &ProjectId, store: &VectorStoreId) -> Self {
        Cascade {
            cancel: JobFilter {
                kinds: vec![JobKind::Ingest],
                file_id: None,
                vector_store_id: Some(store.clone()),
            },
            purge: NewJob {
                kind: JobKind::PurgeStore,
                project_id: project.clone(),
                file_id: None,
                vector_store_id: Some(store.clone()),
            },
        }
    }
}

/// The kinds of job a cancelled batch stops for each of its unfinished files.
pub const BATCH_CANCEL_KINDS: &[JobKind] = &[JobKind::Ingest];

/// What the end of an ingest job does to its vector-store file: `completed` with its usage,
/// `failed` with the reason, or nothing yet (a retry). Other kinds of job touch no file row.
pub fn ingest_outcome(
    kind: JobKind,
    store: Option<&VectorStoreId>,
    file: Option<&FileId>,
    end: &JobEnd,
    usage_bytes: i64,
) -> Option<VsFileOutcome> {
    let (JobKind::Ingest, Some(store), Some(file)) = (kind, store, file) else {
        return None;
    };
    let (status, usage_bytes, last_error) = match end {
        JobEnd::Done => (VsFileStatus::Completed, usage_bytes, None),
        JobEnd::Failed { code, message } => {
            (VsFileStatus::Failed, 0, Some((*code, message.clone())))
        }
        JobEnd::Retry { .. } => return None,
    };
    Some(VsFileOutcome {
        vector_store_id: store.clone(),
        file_id: file.clone(),
        status,
        usage_bytes,
        last_error,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::IngestErrorCode;

    #[test]
    fn only_an_ending_ingest_job_sets_its_file() {
        let (s, f) = (VectorStoreId::generate(), FileId::generate());
        let done = ingest_outcome(JobKind::Ingest, Some(&s), Some(&f), &JobEnd::Done, 42);
        assert_eq!(
            done.as_ref().map(|o| (o.status, o.usage_bytes)),
            Some((VsFileStatus::Completed, 42))
        );
        let failed = JobEnd::Failed {
            code: IngestErrorCode::InvalidFile,
            message: "bad".into(),
        };
        let out = ingest_outcome(JobKind::Ingest, Some(&s), Some(&f), &failed, 42).unwrap();
        assert_eq!(out.status, VsFileStatus::Failed);
        assert_eq!(
            out.last_error,
            Some((IngestErrorCode::InvalidFile, "bad".into()))
        );
        let retry = JobEnd::Retry {
            message: "later".into(),
            retry_at: 1,
        };
        assert!(ingest_outcome(JobKind::Ingest, Some(&s), Some(&f), &retry, 0).is_none());
        assert!(
            ingest_outcome(JobKind::PurgeVsFile, Some(&s), Some(&f), &JobEnd::Done, 0).is_none()
        );
    }
}
