//! Files: upload, list, retrieve, content, delete.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::Clock;
use crate::db::{FileListQuery, Metadata, Wakeup};
use crate::domain::{
    Cascade, Error, FileExpiry, FileId, FileRecord, FileStatus, JobKind, NewJob, Order, Page,
    ProjectId, Purpose, Resource, Result,
};
use crate::storage::{Blob, FileStorage, StagedFile, Staging};

/// The size and time limits of files and uploads (from the configuration).
#[derive(Debug, Clone)]
pub struct FileLimits {
    /// Largest file sent whole (`POST /files`).
    pub max_file_bytes: u64,
    /// Largest single upload part.
    pub max_part_bytes: u64,
    /// Largest total an upload may declare.
    pub max_upload_bytes: u64,
    /// Largest file of purpose `batch`, however it arrives.
    pub max_batch_file_bytes: u64,
    /// Default lifetime of `batch` files without `expires_after` (0: never expire).
    pub batch_file_ttl_secs: i64,
    /// How long an upload accepts parts.
    pub upload_ttl_secs: i64,
}

impl FileLimits {
    /// The size limit for a file of this purpose sent whole, or assembled from an upload's parts
    /// (`via_upload`).
    pub fn max_bytes(&self, purpose: Purpose, via_upload: bool) -> u64 {
        let max = if via_upload {
            self.max_upload_bytes
        } else {
            self.max_file_bytes
        };
        match purpose {
            Purpose::Batch => max.min(self.max_batch_file_bytes),
            _ => max,
        }
    }

    pub fn expires_at(
        &self,
        purpose: Purpose,
        expiry: Option<FileExpiry>,
        now: i64,
    ) -> Option<i64> {
        match (expiry, purpose) {
            (Some(e), _) => Some(now + e.seconds),
            (None, Purpose::Batch) if self.batch_file_ttl_secs > 0 => {
                Some(now + self.batch_file_ttl_secs)
            }
            _ => None,
        }
    }
}

/// A file whose bytes are staged and whose form fields are parsed.
pub struct NewFile {
    pub filename: String,
    pub purpose: Purpose,
    pub expiry: Option<FileExpiry>,
    pub staged: StagedFile,
}

/// `GET /files`, parsed.
#[derive(Debug, Clone)]
pub struct ListFiles {
    pub purpose: Option<Purpose>,
    pub limit: u32,
    pub order: Order,
    pub after: Option<FileId>,
}

pub const LIST_DEFAULT_LIMIT: u32 = 10_000;

#[derive(Clone)]
pub struct FileService {
    meta: Arc<dyn Metadata>,
    storage: Arc<dyn FileStorage>,
    staging: Staging,
    clock: Arc<dyn Clock>,
    wakeup: Wakeup,
    limits: Arc<FileLimits>,
    /// Quotas of projects.
    pub(crate) auth: super::auth::AuthService,
}

impl FileService {
    pub fn new(
        meta: Arc<dyn Metadata>,
        storage: Arc<dyn FileStorage>,
        staging: Staging,
        clock: Arc<dyn Clock>,
        wakeup: Wakeup,
        limits: FileLimits,
        auth: super::auth::AuthService,
    ) -> Self {
        Self {
            meta,
            storage,
            staging,
            clock,
            wakeup,
            limits: Arc::new(limits),
            auth,
        }
    }

    pub fn limits(&self) -> &FileLimits {
        &self.limits
    }

    /// Where request bodies are staged before they are published.
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Checks what depends on the purpose: its size limit, and that `batch` files are JSONL.
    pub async fn check_content(
        &self,
        purpose: Purpose,
        staged: &StagedFile,
        via_upload: bool,
        param: &'static str,
    ) -> Result<()> {
        self.check_size(purpose, staged.len, via_upload, param)?;
        if purpose.content_checked() {
            let path: PathBuf = staged.path.path().to_path_buf();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let file = std::fs::File::open(&path)?;
                super::jsonl::validate(BufReader::with_capacity(1 << 20, file)).map_err(|why| {
                    Error::invalid(
                        format!(
                            "Invalid file for purpose 'batch': it must be valid JSONL, but {why}."
                        ),
                        param,
                    )
                })?;
                Ok(())
            })
            .await??;
        }
        Ok(())
    }

    /// The size limit of `purpose`, alone: what can be checked of a file before its bytes.
    pub fn check_size(
        &self,
        purpose: Purpose,
        len: u64,
        via_upload: bool,
        param: &'static str,
    ) -> Result<()> {
        let max = self.limits.max_bytes(purpose, via_upload);
        if len > max {
            return Err(Error::too_large(
                format!(
                    "File is {len} bytes; files with purpose '{}' may be at most {max} bytes.",
                    purpose.as_str()
                ),
                param,
            ));
        }
        Ok(())
    }

    pub async fn create(&self, project: &ProjectId, new: NewFile) -> Result<FileRecord> {
        check_filename(&new.filename, "file")?;
        self.check_content(new.purpose, &new.staged, false, "file")
            .await?;
        let max_bytes = self.auth.check_room(project, new.staged.len).await?;
        let now = self.clock.now();
        let id = FileId::generate();
        let record = FileRecord {
            storage_key: FileRecord::storage_key_for(&id),
            id,
            project_id: project.clone(),
            filename: new.filename,
            purpose: new.purpose,
            bytes: new.staged.len as i64,
            created_at: now,
            expires_at: self.limits.expires_at(new.purpose, new.expiry, now),
            status: FileStatus::Uploaded,
            status_details: None,
        };
        let (meta, row) = (&self.meta, &record);
        self.publish(row, new.staged, |job| async move {
            meta.insert_file(row, job.as_ref(), max_bytes)
                .await
                .map(|()| true)
        })
        .await?;
        tracing::info!(file_id = %record.id, bytes = record.bytes, purpose = record.purpose.as_str(), "file created");
        Ok(record)
    }

    /// Publishes the staged bytes under the file's key, then commits its row with `commit`
    /// (which writes the row and its first job, or answers `false` if it may no longer be
    /// written). Bytes no row refers to are removed again.
    pub(crate) async fn publish<F, Fut>(
        &self,
        file: &FileRecord,
        staged: StagedFile,
        commit: F,
    ) -> Result<bool>
    where
        F: FnOnce(Option<NewJob>) -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        self.storage.put(&file.storage_key, staged).await?;
        self.publish_stored(file, commit).await
    }

    /// [`Self::publish`] of a file whose blob is already in storage under its key.
    pub(crate) async fn publish_stored<F, Fut>(&self, file: &FileRecord, commit: F) -> Result<bool>
    where
        F: FnOnce(Option<NewJob>) -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let job = extract_job(file);
        let queued = job.is_some();
        let committed = commit(job).await;
        if !matches!(committed, Ok(true)) {
            self.discard_blob(&file.storage_key).await;
        }
        let committed = committed?;
        if committed && queued {
            self.wakeup.wake();
        }
        Ok(committed)
    }

    /// Removes a blob no row refers to; a failure is only logged, the orphan sweep retries.
    pub(crate) async fn discard_blob(&self, key: &str) {
        if let Err(e) = self.storage.delete(key).await {
            tracing::warn!(key, error = %e, "could not remove unreferenced blob");
        }
    }

    pub async fn get(&self, project: &ProjectId, id: &FileId) -> Result<FileRecord> {
        self.meta
            .get_file(project, id, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found(Resource::File, id.as_str()))
    }

    pub async fn list(&self, project: &ProjectId, p: ListFiles) -> Result<Page<FileRecord>> {
        let after = match &p.after {
            None => None,
            Some(a) => Some(self.meta.file_position(project, a).await?.ok_or_else(|| {
                Error::invalid(
                    format!("Invalid value for 'after': no file with id '{a}' exists."),
                    "after",
                )
            })?),
        };
        let q = FileListQuery {
            purpose: p.purpose,
            order: p.order,
            after,
            limit: p.limit + 1,
        };
        let rows = self.meta.list_files(project, &q, self.clock.now()).await?;
        Ok(Page::from_overfetch(rows, p.limit))
    }

    /// The file's exact bytes, whole or the bytes `range` (inside its size), streamed.
    pub async fn bytes(
        &self,
        file: &FileRecord,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Blob> {
        let key = &file.storage_key;
        let blob = match range {
            None => self.storage.get(key).await?,
            Some(range) => self.storage.get_range(key, range).await?,
        };
        blob.ok_or_else(|| {
            Error::Internal(anyhow::anyhow!(
                "file {} has a row but no blob at {key}",
                file.id
            ))
        })
    }

    /// One transaction marks the file deleted (it is gone for clients from this moment), removes
    /// it from every vector store, cancels its jobs and enqueues its purge (points, caches,
    /// bytes, row).
    pub async fn delete(&self, project: &ProjectId, id: &FileId) -> Result<FileId> {
        // An expired file is already gone for clients: 404, like any unknown id.
        let file = self.get(project, id).await?;
        let file = self
            .meta
            .delete_file(
                project,
                &file.id,
                &Cascade::file_deleted(&file),
                self.clock.now(),
            )
            .await?
            .ok_or_else(|| Error::not_found(Resource::File, id.as_str()))?;
        self.wakeup.wake();
        tracing::info!(file_id = %file.id, "file deleted");
        Ok(file.id)
    }
}

pub fn check_filename(filename: &str, param: &'static str) -> Result<()> {
    if filename.is_empty() {
        return Err(Error::invalid("The filename must not be empty.", param));
    }
    if filename.len() > 1024 {
        return Err(Error::invalid(
            "The filename must be at most 1024 bytes long.",
            param,
        ));
    }
    if filename.chars().any(char::is_control) {
        return Err(Error::invalid(
            "The filename must not contain control characters.",
            param,
        ));
    }
    Ok(())
}

/// Files meant for retrieval have their text extracted right after upload, so a later attach
/// only chunks and embeds; other purposes are extracted at first attach.
fn extract_job(file: &FileRecord) -> Option<NewJob> {
    // Files for file_search have their text extracted; fine-tuning files are validated.
    matches!(
        file.purpose,
        Purpose::Assistants | Purpose::UserData | Purpose::FineTune
    )
    .then(|| NewJob {
        kind: JobKind::Extract,
        project_id: file.project_id.clone(),
        file_id: Some(file.id.clone()),
        vector_store_id: None,
    })
}
