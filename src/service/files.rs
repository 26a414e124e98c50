use std::io::BufReader;
use std::path::PathBuf;

use crate::app::AppState;
use crate::db::FileListQuery;
use crate::domain::{
    page, Error, FileExpiry, FileId, FileRecord, FileStatus, Order, Page, ProjectId, Purpose,
    Resource, Result,
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
    if let Err(e) = st.meta.insert_file(&record).await {
        discard_blob(st, &record.storage_key).await;
        return Err(e);
    }
    tracing::info!(file_id = %record.id, bytes = record.bytes, purpose = record.purpose.as_str(), "file created");
    Ok(record)
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

/// Marks the file deleted (it is gone for clients from this moment), then purges its bytes and
/// row. If the purge fails or the process dies, the reaper finishes it.
pub async fn delete(st: &AppState, project: &ProjectId, id: &str) -> Result<FileId> {
    let id = parse_id(id)?;
    let file = st
        .meta
        .mark_file_deleted(project, &id, st.clock.now())
        .await?
        .ok_or_else(|| Error::not_found(Resource::File, id.as_str()))?;
    if let Err(e) = purge(st, &file).await {
        tracing::warn!(file_id = %file.id, error = %e, "purge after delete failed; the reaper will retry");
    }
    tracing::info!(file_id = %file.id, "file deleted");
    Ok(file.id)
}

/// Removes the bytes, then the row, of a file already marked deleted. Idempotent.
pub(crate) async fn purge(st: &AppState, file: &FileRecord) -> Result<()> {
    st.storage.delete(&file.storage_key).await?;
    st.meta.purge_file_row(&file.id).await
}
