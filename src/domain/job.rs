//! Jobs of the durable ingestion queue.

use super::ids::{FileId, ProjectId, VectorStoreId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Extract a file's text (once per file).
    Extract,
    /// Extract if needed, chunk, embed and index one file into one store.
    Ingest,
    /// A deleted file: its points in every store, its caches, its bytes, its row.
    PurgeFile,
    /// A file detached from one store: its points in that store.
    PurgeVsFile,
    /// A deleted store: its points and rows.
    PurgeStore,
    /// Gives a store's points written before keyword search existed their keyword vectors.
    IndexKeywords,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Extract => "extract",
            JobKind::Ingest => "ingest",
            JobKind::PurgeFile => "purge_file",
            JobKind::PurgeVsFile => "purge_vs_file",
            JobKind::PurgeStore => "purge_store",
            JobKind::IndexKeywords => "index_keywords",
        }
    }

    /// The kinds of job this one waits for: it is not run while a job of one of these kinds
    /// holds a lease (running, or cancelled and not yet stopped) on every id this job carries
    /// (the same file, the same store, or both). A purge waits for the jobs that write what
    /// it removes, so it is the last word even when they were cancelled mid-write; an ingest
    /// waits for a running purge of its store link, which a detach and re-attach could
    /// otherwise race.
    pub fn waits_for(self) -> &'static [JobKind] {
        match self {
            JobKind::PurgeFile => &[JobKind::Extract, JobKind::Ingest],
            JobKind::PurgeVsFile | JobKind::PurgeStore => &[JobKind::Ingest],
            JobKind::Ingest => &[JobKind::PurgeVsFile],
            // It only adds vectors to points that exist, and never re-creates a deleted one.
            JobKind::Extract | JobKind::IndexKeywords => &[],
        }
    }

    pub const ALL: [JobKind; 6] = [
        JobKind::Extract,
        JobKind::Ingest,
        JobKind::PurgeFile,
        JobKind::PurgeVsFile,
        JobKind::PurgeStore,
        JobKind::IndexKeywords,
    ];

    /// Purges go before other work: they are cheap, and until they run a deleted file's bytes
    /// and points take space (clients already cannot see them).
    pub fn is_purge(self) -> bool {
        matches!(
            self,
            JobKind::PurgeFile | JobKind::PurgeVsFile | JobKind::PurgeStore
        )
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub project_id: ProjectId,
    pub file_id: Option<FileId>,
    pub vector_store_id: Option<VectorStoreId>,
}

/// A job claimed by a worker, under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub project_id: ProjectId,
    pub file_id: Option<FileId>,
    pub vector_store_id: Option<VectorStoreId>,
    /// Including this run.
    pub attempts: i64,
    pub locked_by: String,
}

/// How a job run ends.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    Done,
    /// Permanent failure: the job stops; an ingest job's file becomes `failed`.
    Failed {
        code: super::IngestErrorCode,
        message: String,
    },
    /// Transient failure: run again at `retry_at`.
    Retry {
        message: String,
        retry_at: i64,
    },
}

/// Which live (queued or running) jobs a change cancels: those of one of `kinds` that match
/// every id given. A queued job is cancelled at once; a running one is *stopping* until its
/// worker sees the cancellation and releases it (or its lease ends), and the purges that wait
/// for it ([`JobKind::waits_for`]) wait until then.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFilter {
    pub kinds: Vec<JobKind>,
    pub file_id: Option<FileId>,
    pub vector_store_id: Option<VectorStoreId>,
}
