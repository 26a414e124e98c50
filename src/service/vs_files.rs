//! Files in vector stores, and file batches.

use serde_json::Value;

use crate::app::AppState;
use crate::db::Attached;
use crate::domain::attributes::parse_attributes;
use crate::domain::{
    Attributes, Chunking, Error, FileBatchId, FileBatchRecord, FileCounts, FileId, JobKind, NewJob,
    Page, ProjectId, Resource, Result, VectorStoreRecord, VsFileRecord, VsFileStatus,
};
use crate::service::vector_stores::{get_record, window, ListParams};

pub fn parse_file_ids(
    v: Option<&Value>,
    param: &'static str,
    min: usize,
    max: usize,
) -> Result<Vec<FileId>> {
    let items = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(Error::invalid(
                format!("'{param}' must be an array of file ids."),
                param,
            ))
        }
    };
    if items.len() < min || items.len() > max {
        return Err(Error::invalid(
            format!(
                "'{param}' must hold {min} to {max} file ids, got {}.",
                items.len()
            ),
            param,
        ));
    }
    let mut out: Vec<FileId> = Vec::with_capacity(items.len());
    for item in items {
        let s = item.as_str().ok_or_else(|| {
            Error::invalid(format!("'{param}' must be an array of file ids."), param)
        })?;
        let id = FileId::parse(s).ok_or_else(|| Error::not_found(Resource::File, s))?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// The file must exist (visible) in the project.
pub async fn check_attachable(st: &AppState, project: &ProjectId, file: &FileId) -> Result<()> {
    st.meta
        .get_file(project, file, st.clock.now())
        .await?
        .map(|_| ())
        .ok_or_else(|| Error::not_found(Resource::File, file.as_str()))
}

pub fn new_attachment(
    store: &VectorStoreRecord,
    file: &FileId,
    batch: Option<&FileBatchId>,
    chunking: Chunking,
    attributes: Attributes,
    now: i64,
) -> (VsFileRecord, NewJob) {
    (
        VsFileRecord {
            vector_store_id: store.id.clone(),
            file_id: file.clone(),
            project_id: store.project_id.clone(),
            batch_id: batch.cloned(),
            created_at: now,
            status: VsFileStatus::InProgress,
            usage_bytes: 0,
            chunking,
            attributes,
            last_error: None,
        },
        NewJob {
            kind: JobKind::Ingest,
            project_id: store.project_id.clone(),
            file_id: Some(file.clone()),
            vector_store_id: Some(store.id.clone()),
        },
    )
}

pub async fn attach(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    body: &serde_json::Map<String, Value>,
) -> Result<VsFileRecord> {
    let store = get_record(st, project, store_id).await?;
    let file_id = match body.get("file_id") {
        Some(Value::String(s)) => {
            FileId::parse(s).ok_or_else(|| Error::not_found(Resource::File, s.as_str()))?
        }
        None | Some(Value::Null) => return Err(Error::missing("file_id")),
        Some(_) => return Err(Error::invalid("'file_id' must be a string.", "file_id")),
    };
    let attributes = parse_attributes(body.get("attributes"), "attributes")?;
    let chunking = Chunking::parse(
        body.get("chunking_strategy"),
        st.pipeline.auto_chunk_tokens(),
        "chunking_strategy",
    )?;
    check_attachable(st, project, &file_id).await?;
    let (row, job) = new_attachment(&store, &file_id, None, chunking, attributes, st.clock.now());
    match st.meta.attach_file(&row, &job).await? {
        Attached::New(r) => {
            st.jobs_notify.notify_one();
            Ok(r)
        }
        Attached::Existing(r) => Ok(r),
    }
}

async fn get_row(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    file_id: &str,
) -> Result<(VectorStoreRecord, VsFileRecord)> {
    let store = get_record(st, project, store_id).await?;
    let fid = FileId::parse(file_id)
        .ok_or_else(|| Error::not_found(Resource::VectorStoreFile, file_id))?;
    let row = st
        .meta
        .get_vs_file(&store.id, &fid)
        .await?
        .ok_or_else(|| Error::not_found(Resource::VectorStoreFile, file_id))?;
    Ok((store, row))
}

pub async fn get(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    file_id: &str,
) -> Result<VsFileRecord> {
    Ok(get_row(st, project, store_id, file_id).await?.1)
}

pub fn parse_status_filter(s: Option<&str>) -> Result<Option<VsFileStatus>> {
    s.map(|s| {
        VsFileStatus::parse(s).ok_or_else(|| {
            Error::invalid(
                format!("Invalid value for 'filter': '{s}'. Supported values are: 'in_progress', 'completed', 'failed', 'cancelled'."),
                "filter",
            )
        })
    })
    .transpose()
}

pub async fn list(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    batch_id: Option<&str>,
    status: Option<&str>,
    p: ListParams<'_>,
) -> Result<Page<VsFileRecord>> {
    let store = get_record(st, project, store_id).await?;
    let batch = match batch_id {
        None => None,
        Some(b) => Some(get_batch_record(st, &store, b).await?.id),
    };
    let status = parse_status_filter(status)?;
    let sid = &store.id;
    let w = window(&p, |id| async move {
        match FileId::parse(id) {
            Some(f) => st.meta.vs_file_position(sid, &f).await,
            None => Ok(None),
        }
    })
    .await?;
    let rows = st
        .meta
        .list_vs_files(&store.id, batch.as_ref(), status, &w)
        .await?;
    Ok(Page::from_overfetch(rows, w.limit - 1))
}

/// Replaces the attributes: visible to filters at once, no re-embedding.
pub async fn update(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    file_id: &str,
    body: &serde_json::Map<String, Value>,
) -> Result<VsFileRecord> {
    let (store, mut row) = get_row(st, project, store_id, file_id).await?;
    if !body.contains_key("attributes") {
        return Err(Error::missing("attributes"));
    }
    let attributes = parse_attributes(body.get("attributes"), "attributes")?;
    st.meta
        .set_vs_file_attributes(&store.id, &row.file_id, &attributes)
        .await?;
    st.index
        .set_attributes(&store.id, &row.file_id, &attributes)
        .await?;
    st.index.flush().await?;
    row.attributes = attributes;
    Ok(row)
}

pub async fn detach(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    file_id: &str,
) -> Result<FileId> {
    let (store, row) = get_row(st, project, store_id, file_id).await?;
    let purge = NewJob {
        kind: JobKind::PurgeVsFile,
        project_id: project.clone(),
        file_id: Some(row.file_id.clone()),
        vector_store_id: Some(store.id.clone()),
    };
    st.meta
        .detach_file(&store.id, &row.file_id, &purge, st.clock.now())
        .await?
        .ok_or_else(|| Error::not_found(Resource::VectorStoreFile, file_id))?;
    st.jobs_notify.notify_one();
    Ok(row.file_id)
}

/// One page of a file's parsed chunks: (texts, has_more, next page token).
pub async fn content(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    file_id: &str,
    page: Option<&str>,
    limit: u32,
) -> Result<(Vec<String>, bool, Option<String>)> {
    let (_, row) = get_row(st, project, store_id, file_id).await?;
    let offset: u32 = match page {
        None => 0,
        Some(p) => p.parse().map_err(|_| {
            Error::invalid(
                "Invalid value for 'page': not a page token from this API.",
                "page",
            )
        })?,
    };
    let rows = st
        .meta
        .get_chunks(&row.file_id, &row.chunking, offset, limit + 1, false)
        .await?;
    let has_more = rows.len() > limit as usize;
    let texts: Vec<String> = rows
        .iter()
        .take(limit as usize)
        .map(|r| r.text.clone())
        .collect();
    let next = has_more.then(|| (offset + limit).to_string());
    Ok((texts, has_more, next))
}

// --- batches -----------------------------------------------------------------------------------

pub async fn create_batch(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    body: &serde_json::Map<String, Value>,
) -> Result<(FileBatchRecord, FileCounts)> {
    let store = get_record(st, project, store_id).await?;
    let auto = st.pipeline.auto_chunk_tokens();
    let default_attrs = parse_attributes(body.get("attributes"), "attributes")?;
    let default_chunking =
        Chunking::parse(body.get("chunking_strategy"), auto, "chunking_strategy")?;
    let has_ids = body.get("file_ids").is_some_and(|v| !v.is_null());
    let has_files = body.get("files").is_some_and(|v| !v.is_null());
    let mut wanted: Vec<(FileId, Attributes, Chunking)> = Vec::new();
    match (has_ids, has_files) {
        (true, true) => {
            return Err(Error::invalid(
                "Send either 'file_ids' or 'files', not both.",
                "files",
            ))
        }
        (false, false) => return Err(Error::missing("file_ids")),
        (true, false) => {
            for id in parse_file_ids(body.get("file_ids"), "file_ids", 1, 2000)? {
                wanted.push((id, default_attrs.clone(), default_chunking));
            }
        }
        (false, true) => {
            let items = body
                .get("files")
                .and_then(Value::as_array)
                .filter(|a| (1..=2000).contains(&a.len()))
                .ok_or_else(|| {
                    Error::invalid("'files' must be an array of 1 to 2000 objects.", "files")
                })?;
            for item in items {
                let obj = item.as_object().ok_or_else(|| {
                    Error::invalid("Each entry of 'files' must be an object.", "files")
                })?;
                let id = obj.get("file_id").and_then(Value::as_str).ok_or_else(|| {
                    Error::invalid("Each entry of 'files' needs a 'file_id'.", "files")
                })?;
                let id = FileId::parse(id).ok_or_else(|| Error::not_found(Resource::File, id))?;
                let attrs = match obj.get("attributes") {
                    None | Some(Value::Null) => default_attrs.clone(),
                    a => parse_attributes(a, "files")?,
                };
                let chunking = match obj.get("chunking_strategy") {
                    None | Some(Value::Null) => default_chunking,
                    c => Chunking::parse(c, auto, "files")?,
                };
                if !wanted.iter().any(|(w, _, _)| w == &id) {
                    wanted.push((id, attrs, chunking));
                }
            }
        }
    }
    let now = st.clock.now();
    let batch = FileBatchRecord {
        id: FileBatchId::generate(),
        vector_store_id: store.id.clone(),
        project_id: project.clone(),
        created_at: now,
        cancelled: false,
    };
    let mut rows = Vec::with_capacity(wanted.len());
    for (id, attrs, chunking) in wanted {
        check_attachable(st, project, &id).await?;
        rows.push(new_attachment(
            &store,
            &id,
            Some(&batch.id),
            chunking,
            attrs,
            now,
        ));
    }
    st.meta.create_batch(&batch, &rows).await?;
    st.jobs_notify.notify_one();
    let counts = st.meta.batch_counts(&batch.id).await?;
    Ok((batch, counts))
}

async fn get_batch_record(
    st: &AppState,
    store: &VectorStoreRecord,
    id: &str,
) -> Result<FileBatchRecord> {
    let bid = FileBatchId::parse(id).ok_or_else(|| Error::not_found(Resource::FileBatch, id))?;
    st.meta
        .get_batch(&store.id, &bid)
        .await?
        .ok_or_else(|| Error::not_found(Resource::FileBatch, id))
}

pub async fn get_batch(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    id: &str,
) -> Result<(FileBatchRecord, FileCounts)> {
    let store = get_record(st, project, store_id).await?;
    let batch = get_batch_record(st, &store, id).await?;
    let counts = st.meta.batch_counts(&batch.id).await?;
    Ok((batch, counts))
}

pub async fn cancel_batch(
    st: &AppState,
    project: &ProjectId,
    store_id: &str,
    id: &str,
) -> Result<(FileBatchRecord, FileCounts)> {
    let store = get_record(st, project, store_id).await?;
    let batch = get_batch_record(st, &store, id).await?;
    st.meta.cancel_batch(&batch.id).await?;
    let counts = st.meta.batch_counts(&batch.id).await?;
    Ok((
        FileBatchRecord {
            cancelled: true,
            ..batch
        },
        counts,
    ))
}

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
