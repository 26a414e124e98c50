use std::io::BufReader;
use std::path::PathBuf;

use crate::app::AppState;
use crate::db::FileListQuery;
use crate::domain::{
    page, Error, FileExpiry, FileId, FileRecord, FileStatus, JobKind, NewJob, Order, Page,
    ProjectId, Purpose, Resource, Result,
};
use crate::storage::{Blob, StagedFile};

/// A file whose bytes are staged and whose form fields are parsed.
pub struct NewFile {
    pub filename: String,
    pub purpose: Purpose,
    pub expiry: Option<FileExpiry>,
    pub staged: StagedFile,
}

/// The size limit for a file of this purpose sent whole (`POST /files`), or assembled from an
/// upload's parts (`via_upload`).
pub fn max_bytes(st: &AppState, purpose: Purpose, via_upload: bool) -> u64 {
    let max = if via_upload {
        st.config.max_upload_bytes
    } else {
        st.config.max_file_bytes
    };
    match purpose {
        Purpose::Batch => max.min(st.config.max_batch_file_bytes),
        _ => max,
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

/// Checks what depends on the purpose: its size limit, and that `batch` files are JSONL.
pub async fn check_content(
    st: &AppState,
    purpose: Purpose,
    staged: &StagedFile,
    via_upload: bool,
    param: &'static str,
) -> Result<()> {
    let max = max_bytes(st, purpose, via_upload);
    if staged.len > max {
        return Err(Error::too_large(
            format!(
                "File is {} bytes; files with purpose '{}' may be at most {max} bytes.",
                staged.len,
                purpose.as_str()
            ),
            param,
        ));
    }
    if purpose == Purpose::Batch {
        let path: PathBuf = staged.path.path().to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let file = std::fs::File::open(&path)?;
            super::jsonl::validate(BufReader::with_capacity(1 << 20, file)).map_err(|why| {
                Error::invalid(
                    format!("Invalid file for purpose 'batch': it must be valid JSONL, but {why}."),
                    param,
                )
            })?;
            Ok(())
        })
        .await??;
    }
    Ok(())
}

pub fn expires_at(
    st: &AppState,
    purpose: Purpose,
    expiry: Option<FileExpiry>,
    now: i64,
) -> Option<i64> {
    match (expiry, purpose) {
        (Some(e), _) => Some(now + e.seconds),
        (None, Purpose::Batch) if st.config.batch_file_ttl_secs > 0 => {
            Some(now + st.config.batch_file_ttl_secs)
        }
        _ => None,
    }
}

pub async fn create(st: &AppState, project: &ProjectId, new: NewFile) -> Result<FileRecord> {
    check_filename(&new.filename, "file")?;
    check_content(st, new.purpose, &new.staged, false, "file").await?;
    let now = st.clock.now();
    let id = FileId::generate();
    let record = FileRecord {
        storage_key: FileRecord::storage_key_for(&id),
        id,
        project_id: project.clone(),
        filename: new.filename,
        purpose: new.purpose,
        bytes: new.staged.len as i64,
        created_at: now,
        expires_at: expires_at(st, new.purpose, new.expiry, now),
        status: FileStatus::Uploaded,
        status_details: None,
    };
    st.storage.put(&record.storage_key, new.staged).await?;
    let job = extract_job(&record);
    if let Err(e) = st.meta.insert_file(&record, job.as_ref()).await {
        discard_blob(st, &record.storage_key).await;
        return Err(e);
    }
    if job.is_some() {
        st.jobs_notify.notify_one();
    }
    tracing::info!(file_id = %record.id, bytes = record.bytes, purpose = record.purpose.as_str(), "file created");
    Ok(record)
}

/// Files meant for retrieval have their text extracted right after upload, so a later attach
/// only chunks and embeds; other purposes are extracted at first attach.
pub(crate) fn extract_job(file: &FileRecord) -> Option<NewJob> {
    matches!(file.purpose, Purpose::Assistants | Purpose::UserData).then(|| NewJob {
        kind: JobKind::Extract,
        project_id: file.project_id.clone(),
        file_id: Some(file.id.clone()),
        vector_store_id: None,
    })
}

/// Removes a blob no row refers to; a failure is only logged, the start-up sweep retries.
pub(crate) async fn discard_blob(st: &AppState, key: &str) {
    if let Err(e) = st.storage.delete(key).await {
        tracing::warn!(key, error = %e, "could not remove unreferenced blob");
    }
}

pub fn parse_id(id: &str) -> Result<FileId> {
    FileId::parse(id).ok_or_else(|| Error::not_found(Resource::File, id))
}

pub async fn get(st: &AppState, project: &ProjectId, id: &str) -> Result<FileRecord> {
    let id = parse_id(id)?;
    st.meta
        .get_file(project, &id, st.clock.now())
        .await?
        .ok_or_else(|| Error::not_found(Resource::File, id.as_str()))
}

pub struct ListParams<'a> {
    pub purpose: Option<&'a str>,
    pub limit: Option<&'a str>,
    pub order: Option<&'a str>,
    pub after: Option<&'a str>,
}

pub const LIST_DEFAULT_LIMIT: u32 = 10_000;

pub async fn list(
    st: &AppState,
    project: &ProjectId,
    p: ListParams<'_>,
) -> Result<Page<FileRecord>> {
    let limit = page::parse_limit(p.limit, LIST_DEFAULT_LIMIT, LIST_DEFAULT_LIMIT)?;
    let order = Order::parse(p.order)?;
    let purpose = p
        .purpose
        .map(|s| Purpose::from_request(s, "purpose"))
        .transpose()?;
    let after = match p.after {
        None => None,
        Some(a) => {
            let unknown = || {
                Error::invalid(
                    format!("Invalid value for 'after': no file with id '{a}' exists."),
                    "after",
                )
            };
            let id = FileId::parse(a).ok_or_else(unknown)?;
            Some(
                st.meta
                    .file_position(project, &id)
                    .await?
                    .ok_or_else(unknown)?,
            )
        }
    };
    let q = FileListQuery {
        purpose,
        order,
        after,
        limit: limit + 1,
    };
    let rows = st.meta.list_files(project, &q, st.clock.now()).await?;
    Ok(Page::from_overfetch(rows, limit))
}

/// The file and a stream of its exact bytes.
pub async fn content(st: &AppState, project: &ProjectId, id: &str) -> Result<(FileRecord, Blob)> {
    let file = get(st, project, id).await?;
    let blob = st.storage.get(&file.storage_key).await?.ok_or_else(|| {
        Error::Internal(anyhow::anyhow!(
            "file {} has a row but no blob at {}",
            file.id,
            file.storage_key
        ))
    })?;
    Ok((file, blob))
}

/// One transaction marks the file deleted (it is gone for clients from this moment), removes it
/// from every vector store, cancels its jobs and enqueues its purge (points, caches, bytes, row).
pub async fn delete(st: &AppState, project: &ProjectId, id: &str) -> Result<FileId> {
    // An expired file is already gone for clients: 404, like any unknown id.
    let id = get(st, project, id).await?.id;
    let file = st
        .meta
        .delete_file(project, &id, st.clock.now())
        .await?
        .ok_or_else(|| Error::not_found(Resource::File, id.as_str()))?;
    st.jobs_notify.notify_one();
    tracing::info!(file_id = %file.id, "file deleted");
    Ok(file.id)
}
