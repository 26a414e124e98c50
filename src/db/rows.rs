//! Rows into records and records into columns, once for every backend: each reads its columns
//! through [`Columns`], so SQLite and PostgreSQL decode (and refuse corrupt values) alike, and
//! writes what the helpers at the end give. JSON columns are read as text (PostgreSQL's JSONB is
//! selected `::text`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{ChunkRow, FileText};
use crate::domain::{
    Attributes, BucketObject, Chunking, Error, FileBatchId, FileBatchRecord, FileCounts, FileId,
    FileRecord, FileStatus, IndexCollection, IngestErrorCode, Job, JobEnd, JobKind, KeyId,
    KeyRecord, PartId, PartRecord, ProjectId, ProjectRecord, Purpose, QuotaOverrides, Result,
    UploadId, UploadRecord, UploadStatus, VectorStoreId, VectorStoreRecord, VsFileOutcome,
    VsFileRecord, VsFileStatus,
};

/// Typed reads of a row's columns by name. A column missing or of another type is a bug (or a
/// schema this build does not know), never a passing condition.
pub(crate) trait Columns {
    fn text(&self, column: &str) -> Result<String>;
    fn opt_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>>;
    fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>>;
    fn flag(&self, column: &str) -> Result<bool>;
}

fn column_err(e: sqlx::Error) -> Error {
    Error::Internal(anyhow::Error::new(e).context("metadata database"))
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, column: &str) -> Result<String> {
                sqlx::Row::try_get(self, column).map_err(column_err)
            }
            fn opt_text(&self, column: &str) -> Result<Option<String>> {
                sqlx::Row::try_get(self, column).map_err(column_err)
            }
            fn int(&self, column: &str) -> Result<i64> {
                sqlx::Row::try_get(self, column).map_err(column_err)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>> {
                sqlx::Row::try_get(self, column).map_err(column_err)
            }
            fn bytes(&self, column: &str) -> Result<Vec<u8>> {
                sqlx::Row::try_get(self, column).map_err(column_err)
            }
            fn opt_bytes(&self, column: &str) -> Result<Option<Vec<u8>>> {
                sqlx::Row::try_get(self, column).map_err(column_err)
            }
            fn flag(&self, column: &str) -> Result<bool> {
                sqlx::Row::try_get(self, column).map_err(column_err)
            }
        }
    };
}

columns_for!(sqlx::sqlite::SqliteRow);
columns_for!(sqlx::postgres::PgRow);

pub(crate) fn corrupt(what: &str) -> Error {
    Error::Internal(anyhow::anyhow!("unexpected {what} in database"))
}

fn corrupt_value(what: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!("unexpected {what} {value:?} in database"))
}

/// A JSON column's text as a value, for records that store JSON (text on SQLite, JSONB on
/// PostgreSQL).
pub(crate) fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

fn json_column<T: serde::de::DeserializeOwned>(r: &impl Columns, column: &str) -> Result<T> {
    serde_json::from_str(&r.text(column)?).map_err(|_| corrupt(column))
}

/// A non-negative count stored as an integer.
fn count(r: &impl Columns, column: &str) -> Result<u32> {
    u32::try_from(r.int(column)?).map_err(|_| corrupt(column))
}

pub(crate) fn file(r: &impl Columns) -> Result<FileRecord> {
    let purpose = r.text("purpose")?;
    let status = r.text("status")?;
    Ok(FileRecord {
        id: FileId::from_db(r.text("id")?),
        project_id: ProjectId::from_db(r.text("project_id")?),
        filename: r.text("filename")?,
        purpose: Purpose::parse(&purpose).ok_or_else(|| corrupt_value("purpose", &purpose))?,
        bytes: r.int("bytes")?,
        created_at: r.int("created_at")?,
        expires_at: r.opt_int("expires_at")?,
        status: FileStatus::parse(&status).ok_or_else(|| corrupt_value("file status", &status))?,
        status_details: r.opt_text("status_details")?,
        storage_key: r.text("storage_key")?,
    })
}

pub(crate) fn upload(r: &impl Columns) -> Result<UploadRecord> {
    let purpose = r.text("purpose")?;
    let status = r.text("status")?;
    Ok(UploadRecord {
        id: UploadId::from_db(r.text("id")?),
        project_id: ProjectId::from_db(r.text("project_id")?),
        filename: r.text("filename")?,
        purpose: Purpose::parse(&purpose).ok_or_else(|| corrupt_value("purpose", &purpose))?,
        bytes: r.int("bytes")?,
        mime_type: r.text("mime_type")?,
        created_at: r.int("created_at")?,
        expires_at: r.int("expires_at")?,
        status: UploadStatus::parse(&status)
            .ok_or_else(|| corrupt_value("upload status", &status))?,
        file_id: r.opt_text("file_id")?.map(FileId::from_db),
        file_expires_after: r.opt_int("file_expires_after")?,
    })
}

pub(crate) fn part(r: &impl Columns) -> Result<PartRecord> {
    Ok(PartRecord {
        id: PartId::from_db(r.text("id")?),
        upload_id: UploadId::from_db(r.text("upload_id")?),
        project_id: ProjectId::from_db(r.text("project_id")?),
        created_at: r.int("created_at")?,
        bytes: r.int("bytes")?,
        storage_key: r.text("storage_key")?,
    })
}

/// A bucket object; its `created_at` is selected as `object_created_at` (it is read beside its
/// file's).
pub(crate) fn bucket_object(r: &impl Columns) -> Result<BucketObject> {
    Ok(BucketObject {
        bucket: r.text("bucket")?,
        key: r.text("key")?,
        upload_id: UploadId::from_db(r.text("upload_id")?),
        mime_type: r.text("mime_type")?,
        created_at: r.int("object_created_at")?,
    })
}

pub(crate) fn store(r: &impl Columns) -> Result<VectorStoreRecord> {
    Ok(VectorStoreRecord {
        id: VectorStoreId::from_db(r.text("id")?),
        project_id: ProjectId::from_db(r.text("project_id")?),
        name: r.opt_text("name")?,
        description: r.opt_text("description")?,
        metadata: json_column::<BTreeMap<String, String>>(r, "metadata")?,
        created_at: r.int("created_at")?,
        last_active_at: r.int("last_active_at")?,
        expires_after_days: r.opt_int("expires_after_days")?,
    })
}

pub(crate) fn vs_file(r: &impl Columns) -> Result<VsFileRecord> {
    let status = r.text("status")?;
    Ok(VsFileRecord {
        vector_store_id: VectorStoreId::from_db(r.text("vector_store_id")?),
        file_id: FileId::from_db(r.text("file_id")?),
        project_id: ProjectId::from_db(r.text("project_id")?),
        batch_id: r.opt_text("batch_id")?.map(FileBatchId::from_db),
        created_at: r.int("created_at")?,
        status: VsFileStatus::parse(&status).ok_or_else(|| corrupt("vector store file status"))?,
        usage_bytes: r.int("usage_bytes")?,
        chunking: Chunking {
            max_tokens: count(r, "chunk_max_tokens")?,
            overlap_tokens: count(r, "chunk_overlap_tokens")?,
        },
        attributes: json_column::<Attributes>(r, "attributes")?,
        chunks_indexed: count(r, "chunks_indexed")?,
        chunks_total: r
            .opt_int("chunks_total")?
            .map(|n| u32::try_from(n).map_err(|_| corrupt("chunks_total")))
            .transpose()?,
        last_error: match (
            r.opt_text("last_error_code")?,
            r.opt_text("last_error_message")?,
        ) {
            (Some(c), Some(m)) => Some((
                IngestErrorCode::parse(&c).ok_or_else(|| corrupt("error code"))?,
                m,
            )),
            _ => None,
        },
    })
}

pub(crate) fn batch(r: &impl Columns) -> Result<FileBatchRecord> {
    Ok(FileBatchRecord {
        id: FileBatchId::from_db(r.text("id")?),
        vector_store_id: VectorStoreId::from_db(r.text("vector_store_id")?),
        project_id: ProjectId::from_db(r.text("project_id")?),
        created_at: r.int("created_at")?,
        cancelled: r.flag("cancelled")?,
    })
}

/// File counts from rows of `status, COUNT(*) AS n`.
pub(crate) fn counts<R: Columns>(rows: &[R]) -> Result<FileCounts> {
    let mut counts = FileCounts::default();
    for r in rows {
        let status = r.text("status")?;
        let status = VsFileStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
        counts.add(status, r.int("n")?);
    }
    Ok(counts)
}

pub(crate) fn job(r: &impl Columns) -> Result<Job> {
    let kind = r.text("kind")?;
    Ok(Job {
        id: r.int("id")?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind"))?,
        project_id: ProjectId::from_db(r.text("project_id")?),
        file_id: r.opt_text("file_id")?.map(FileId::from_db),
        vector_store_id: r.opt_text("vector_store_id")?.map(VectorStoreId::from_db),
        attempts: r.int("attempts")?,
        locked_by: r.opt_text("locked_by")?.unwrap_or_default(),
    })
}

pub(crate) fn project(r: &impl Columns) -> Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: ProjectId::from_db(r.text("id")?),
        name: r.text("name")?,
        created_at: r.int("created_at")?,
        quotas: QuotaOverrides {
            stored_bytes: r.opt_int("quota_stored_bytes")?,
            files_per_store: r.opt_int("quota_files_per_store")?,
            stores: r.opt_int("quota_stores")?,
        },
    })
}

pub(crate) fn key(r: &impl Columns) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: KeyId::from_db(r.text("id")?),
        project_id: ProjectId::from_db(r.text("project_id")?),
        name: r.opt_text("name")?,
        hash: r
            .bytes("hash")?
            .try_into()
            .map_err(|_| Error::Internal(anyhow::anyhow!("a stored key hash is not 32 bytes")))?,
        hint: r.text("hint")?,
        created_at: r.int("created_at")?,
        revoked_at: r.opt_int("revoked_at")?,
    })
}

/// Embeddings are stored as little-endian f32 bytes.
pub(crate) fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A chunk row, with its embedding if that is `model`'s.
pub(crate) fn chunk(r: &impl Columns, model: Option<&str>) -> Result<ChunkRow> {
    let embedding = match model {
        Some(m) if r.opt_text("embed_model")?.as_deref() == Some(m) => {
            r.opt_bytes("embedding")?.map(|b| bytes_vector(&b))
        }
        _ => None,
    };
    Ok(ChunkRow {
        idx: count(r, "idx")?,
        text: r.text("text")?,
        extra: json_column::<Map<String, Value>>(r, "extra")?,
        embedding,
    })
}

/// The columns of a `file_texts` row that a [`FileText`] fills.
pub(crate) struct TextColumns<'a> {
    pub status: &'static str,
    pub storage_key: Option<&'a str>,
    pub format: Option<&'a str>,
    pub error_code: Option<&'static str>,
    pub error_message: Option<&'a str>,
    pub sections: String,
}

pub(crate) fn text_columns(text: &FileText) -> TextColumns<'_> {
    match text {
        FileText::Ok {
            storage_key,
            format,
            sections,
        } => TextColumns {
            status: "ok",
            storage_key: Some(storage_key),
            format: Some(format),
            error_code: None,
            error_message: None,
            sections: json_text(sections),
        },
        FileText::Failed { code, message } => TextColumns {
            status: "failed",
            storage_key: None,
            format: None,
            error_code: Some(code.as_str()),
            error_message: Some(message),
            sections: "[]".to_owned(),
        },
    }
}

pub(crate) fn file_text(r: &impl Columns) -> Result<FileText> {
    if r.text("status")? == "ok" {
        Ok(FileText::Ok {
            storage_key: r
                .opt_text("storage_key")?
                .ok_or_else(|| corrupt("text without key"))?,
            format: r.opt_text("format")?.unwrap_or_default(),
            sections: json_column(r, "sections")?,
        })
    } else {
        Ok(FileText::Failed {
            code: r
                .opt_text("error_code")?
                .as_deref()
                .and_then(IngestErrorCode::parse)
                .unwrap_or(IngestErrorCode::ServerError),
            message: r.opt_text("error_message")?.unwrap_or_default(),
        })
    }
}

/// What a job's end writes: its status, when it may run again (a retry), and its error.
pub(crate) fn job_end_columns(end: &JobEnd) -> (&'static str, Option<i64>, Option<&str>) {
    match end {
        JobEnd::Done => ("done", None, None),
        JobEnd::Failed { message, .. } => ("failed", None, Some(message)),
        JobEnd::Retry { message, retry_at } => ("queued", Some(*retry_at), Some(message)),
    }
}

/// A vector-store file's error columns (code, message) for an outcome.
pub(crate) fn outcome_error(o: &VsFileOutcome) -> (Option<&'static str>, Option<&str>) {
    match &o.last_error {
        Some((code, message)) => (Some(code.as_str()), Some(message)),
        None => (None, None),
    }
}

/// What both databases select of an `index_collections` row, as [`IndexCollectionRow`].
pub(crate) const INDEX_COLLECTION: &str =
    "engine, model, collection, CAST(dims AS BIGINT), created_at";

/// An `index_collections` row: engine, model, collection, dims, created_at.
pub(crate) type IndexCollectionRow = (String, String, String, i64, i64);

pub(crate) fn index_collection(
    (engine, model, collection, dims, created_at): IndexCollectionRow,
) -> IndexCollection {
    IndexCollection {
        engine,
        model,
        collection,
        dims: u32::try_from(dims).unwrap_or(0),
        created_at,
    }
}
