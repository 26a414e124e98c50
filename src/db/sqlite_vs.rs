//! [`VectorMetadata`] and [`JobQueue`] on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use std::collections::BTreeMap;

use super::sqlite::SqliteMetadata;
use super::{
    db_err, Attached, ChunkRow, FileText, JobEnd, JobQueue, ListWindow, Position, VectorMetadata,
};
use crate::domain::{
    Attributes, Chunking, Error, FileBatchId, FileBatchRecord, FileCounts, FileId, FileRecord,
    IngestErrorCode, Job, JobKind, NewJob, Order, ProjectId, Result, VectorStoreId,
    VectorStoreRecord, VsFileRecord, VsFileStatus,
};

type Tx<'a> = Transaction<'a, Sqlite>;

fn corrupt(what: &str) -> Error {
    Error::Internal(anyhow::anyhow!("unexpected {what} in database"))
}

fn json_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".to_owned())
}

fn store_from_row(row: &SqliteRow) -> Result<VectorStoreRecord> {
    let metadata: String = row.try_get("metadata").map_err(db_err)?;
    Ok(VectorStoreRecord {
        id: VectorStoreId::from_db(row.try_get("id").map_err(db_err)?),
        project_id: ProjectId::from_db(row.try_get("project_id").map_err(db_err)?),
        name: row.try_get("name").map_err(db_err)?,
        description: row.try_get("description").map_err(db_err)?,
        metadata: serde_json::from_str::<BTreeMap<String, String>>(&metadata)
            .map_err(|_| corrupt("vector store metadata"))?,
        created_at: row.try_get("created_at").map_err(db_err)?,
        last_active_at: row.try_get("last_active_at").map_err(db_err)?,
        expires_after_days: row.try_get("expires_after_days").map_err(db_err)?,
    })
}

fn vs_file_from_row(row: &SqliteRow) -> Result<VsFileRecord> {
    let status: String = row.try_get("status").map_err(db_err)?;
    let attributes: String = row.try_get("attributes").map_err(db_err)?;
    let code: Option<String> = row.try_get("last_error_code").map_err(db_err)?;
    let message: Option<String> = row.try_get("last_error_message").map_err(db_err)?;
    let batch: Option<String> = row.try_get("batch_id").map_err(db_err)?;
    let max: i64 = row.try_get("chunk_max_tokens").map_err(db_err)?;
    let overlap: i64 = row.try_get("chunk_overlap_tokens").map_err(db_err)?;
    Ok(VsFileRecord {
        vector_store_id: VectorStoreId::from_db(row.try_get("vector_store_id").map_err(db_err)?),
        file_id: FileId::from_db(row.try_get("file_id").map_err(db_err)?),
        project_id: ProjectId::from_db(row.try_get("project_id").map_err(db_err)?),
        batch_id: batch.map(FileBatchId::from_db),
        created_at: row.try_get("created_at").map_err(db_err)?,
        status: VsFileStatus::parse(&status).ok_or_else(|| corrupt("vector store file status"))?,
        usage_bytes: row.try_get("usage_bytes").map_err(db_err)?,
        chunking: Chunking {
            max_tokens: max as u32,
            overlap_tokens: overlap as u32,
        },
        attributes: serde_json::from_str::<Attributes>(&attributes)
            .map_err(|_| corrupt("attributes"))?,
        last_error: match (code, message) {
            (Some(c), Some(m)) => Some((
                IngestErrorCode::parse(&c).ok_or_else(|| corrupt("error code"))?,
                m,
            )),
            _ => None,
        },
    })
}

/// File counts from rows of `status, COUNT(*) AS n`.
fn counts_from_rows(rows: &[SqliteRow]) -> Result<FileCounts> {
    let mut counts = FileCounts::default();
    for r in rows {
        let status: String = r.try_get("status").map_err(db_err)?;
        let status = VsFileStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
        counts.add(status, r.try_get("n").map_err(db_err)?);
    }
    Ok(counts)
}

fn job_from_row(row: &SqliteRow) -> Result<Job> {
    let kind: String = row.try_get("kind").map_err(db_err)?;
    let file: Option<String> = row.try_get("file_id").map_err(db_err)?;
    let store: Option<String> = row.try_get("vector_store_id").map_err(db_err)?;
    Ok(Job {
        id: row.try_get("id").map_err(db_err)?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind"))?,
        project_id: ProjectId::from_db(row.try_get("project_id").map_err(db_err)?),
        file_id: file.map(FileId::from_db),
        vector_store_id: store.map(VectorStoreId::from_db),
        attempts: row.try_get("attempts").map_err(db_err)?,
        locked_by: row
            .try_get::<Option<String>, _>("locked_by")
            .map_err(db_err)?
            .unwrap_or_default(),
    })
}

pub(super) async fn insert_job(tx: &mut Tx<'_>, job: &NewJob, now: i64) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO jobs (kind, project_id, file_id, vector_store_id, status, run_after, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?) RETURNING id",
    )
    .bind(job.kind.as_str())
    .bind(job.project_id.as_str())
    .bind(job.file_id.as_ref().map(|f| f.as_str()))
    .bind(job.vector_store_id.as_ref().map(|v| v.as_str()))
    .bind(now)
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?;
    row.try_get("id").map_err(db_err)
}

/// Cancels the extract/ingest jobs matching the WHERE clause fragment.
async fn cancel_jobs(tx: &mut Tx<'_>, where_sql: &str, binds: &[&str], now: i64) -> Result<()> {
    let sql = format!(
        "UPDATE jobs SET status = 'cancelled', updated_at = ? \
         WHERE status IN ('queued', 'running') AND kind IN ('extract', 'ingest') AND {where_sql}"
    );
    let mut q = sqlx::query(&sql).bind(now);
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(&mut **tx).await.map_err(db_err)?;
    Ok(())
}

/// The rest of deleting a file, inside the caller's transaction.
pub(super) async fn unlink_file(tx: &mut Tx<'_>, file: &FileRecord, now: i64) -> Result<()> {
    sqlx::query("DELETE FROM vector_store_files WHERE file_id = ?")
        .bind(file.id.as_str())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    cancel_jobs(tx, "file_id = ?", &[file.id.as_str()], now).await?;
    insert_job(
        tx,
        &NewJob {
            kind: JobKind::PurgeFile,
            project_id: file.project_id.clone(),
            file_id: Some(file.id.clone()),
            vector_store_id: None,
        },
        now,
    )
    .await?;
    Ok(())
}

async fn insert_vs_file(tx: &mut Tx<'_>, f: &VsFileRecord) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO vector_store_files (vector_store_id, file_id, project_id, batch_id, created_at, status, \
         usage_bytes, chunk_max_tokens, chunk_overlap_tokens, attributes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (vector_store_id, file_id) DO NOTHING",
    )
    .bind(f.vector_store_id.as_str())
    .bind(f.file_id.as_str())
    .bind(f.project_id.as_str())
    .bind(f.batch_id.as_ref().map(|b| b.as_str()))
    .bind(f.created_at)
    .bind(f.status.as_str())
    .bind(f.usage_bytes)
    .bind(i64::from(f.chunking.max_tokens))
    .bind(i64::from(f.chunking.overlap_tokens))
    .bind(json_text(&f.attributes))
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

async fn attach_all(tx: &mut Tx<'_>, files: &[(VsFileRecord, NewJob)], now: i64) -> Result<()> {
    for (f, job) in files {
        if insert_vs_file(tx, f).await? {
            insert_job(tx, job, now).await?;
        }
    }
    Ok(())
}

/// `(created_at, key) > / < cursor` for a listing window, with the bind values in order.
fn window_sql(w: &ListWindow, key: &str) -> (String, Vec<(i64, String)>) {
    let (after_cmp, before_cmp, dir) = match w.order {
        Order::Asc => (">", "<", "ASC"),
        Order::Desc => ("<", ">", "DESC"),
    };
    let mut sql = String::new();
    let mut binds = Vec::new();
    if let Some(p) = &w.after {
        sql.push_str(&format!(
            " AND (created_at {after_cmp} ? OR (created_at = ? AND {key} {after_cmp} ?))"
        ));
        binds.push(p.clone());
    }
    if let Some(p) = &w.before {
        sql.push_str(&format!(
            " AND (created_at {before_cmp} ? OR (created_at = ? AND {key} {before_cmp} ?))"
        ));
        binds.push(p.clone());
    }
    sql.push_str(&format!(" ORDER BY created_at {dir}, {key} {dir} LIMIT ?"));
    (sql, binds)
}

fn vec_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_vec(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn chunk_from_row(row: &SqliteRow, with_vectors: bool) -> Result<ChunkRow> {
    let extra: String = row.try_get("extra").map_err(db_err)?;
    let idx: i64 = row.try_get("idx").map_err(db_err)?;
    let embedding = if with_vectors {
        row.try_get::<Option<Vec<u8>>, _>("embedding")
            .map_err(db_err)?
            .map(|b| blob_to_vec(&b))
    } else {
        None
    };
    Ok(ChunkRow {
        idx: idx as u32,
        text: row.try_get("text").map_err(db_err)?,
        extra: serde_json::from_str(&extra).map_err(|_| corrupt("chunk extra"))?,
        embedding,
    })
}

#[async_trait]
impl VectorMetadata for SqliteMetadata {
    async fn create_vector_store(
        &self,
        s: &VectorStoreRecord,
        files: &[(VsFileRecord, NewJob)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO vector_stores (id, project_id, name, description, metadata, created_at, last_active_at, \
             expires_after_days) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.id.as_str())
        .bind(s.project_id.as_str())
        .bind(&s.name)
        .bind(&s.description)
        .bind(json_text(&s.metadata))
        .bind(s.created_at)
        .bind(s.last_active_at)
        .bind(s.expires_after_days)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        attach_all(&mut tx, files, s.created_at).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_vector_store(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
    ) -> Result<Option<VectorStoreRecord>> {
        let row = sqlx::query(
            "SELECT * FROM vector_stores WHERE id = ? AND project_id = ? AND deleted_at IS NULL",
        )
        .bind(id.as_str())
        .bind(project.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(store_from_row).transpose()
    }

    async fn vector_store_position(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
    ) -> Result<Option<Position>> {
        let row =
            sqlx::query("SELECT created_at FROM vector_stores WHERE id = ? AND project_id = ?")
                .bind(id.as_str())
                .bind(project.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.map(|r| Ok((r.try_get("created_at").map_err(db_err)?, id.to_string())))
            .transpose()
    }

    async fn list_vector_stores(
        &self,
        project: &ProjectId,
        w: &ListWindow,
    ) -> Result<Vec<VectorStoreRecord>> {
        let (tail, binds) = window_sql(w, "id");
        let sql = format!(
            "SELECT * FROM vector_stores WHERE project_id = ? AND deleted_at IS NULL{tail}"
        );
        let mut q = sqlx::query(&sql).bind(project.as_str());
        for (c, k) in &binds {
            q = q.bind(*c).bind(*c).bind(k.as_str());
        }
        let rows = q
            .bind(i64::from(w.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(store_from_row).collect()
    }

    async fn update_vector_store(&self, s: &VectorStoreRecord) -> Result<()> {
        sqlx::query(
            "UPDATE vector_stores SET name = ?, description = ?, metadata = ?, expires_after_days = ?, \
             last_active_at = ? WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(&s.name)
        .bind(&s.description)
        .bind(json_text(&s.metadata))
        .bind(s.expires_after_days)
        .bind(s.last_active_at)
        .bind(s.id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn delete_vector_store(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
        purge: &NewJob,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE vector_stores SET deleted_at = ? WHERE id = ? AND project_id = ? AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(project.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM vector_store_files WHERE vector_store_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        cancel_jobs(&mut tx, "vector_store_id = ?", &[id.as_str()], now).await?;
        insert_job(&mut tx, purge, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn store_stats(&self, id: &VectorStoreId) -> Result<(FileCounts, i64)> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n, COALESCE(SUM(usage_bytes), 0) AS bytes \
             FROM vector_store_files WHERE vector_store_id = ? GROUP BY status",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut usage = 0;
        for r in &rows {
            usage += r.try_get::<i64, _>("bytes").map_err(db_err)?;
        }
        Ok((counts_from_rows(&rows)?, usage))
    }

    async fn purge_vector_store_rows(&self, id: &VectorStoreId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for sql in [
            "DELETE FROM vector_store_files WHERE vector_store_id = ?",
            "DELETE FROM file_batches WHERE vector_store_id = ?",
            "DELETE FROM vector_stores WHERE id = ? AND deleted_at IS NOT NULL",
        ] {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn attach_file(&self, f: &VsFileRecord, job: &NewJob) -> Result<Attached> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if insert_vs_file(&mut tx, f).await? {
            insert_job(&mut tx, job, f.created_at).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(Attached::New(f.clone()));
        }
        tx.rollback().await.map_err(db_err)?;
        let existing = self
            .get_vs_file(&f.vector_store_id, &f.file_id)
            .await?
            .ok_or_else(|| corrupt("vector store file vanished"))?;
        Ok(Attached::Existing(existing))
    }

    async fn get_vs_file(
        &self,
        store: &VectorStoreId,
        file: &FileId,
    ) -> Result<Option<VsFileRecord>> {
        let row = sqlx::query(
            "SELECT * FROM vector_store_files WHERE vector_store_id = ? AND file_id = ?",
        )
        .bind(store.as_str())
        .bind(file.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(vs_file_from_row).transpose()
    }

    async fn vs_file_position(
        &self,
        store: &VectorStoreId,
        file: &FileId,
    ) -> Result<Option<Position>> {
        Ok(self
            .get_vs_file(store, file)
            .await?
            .map(|f| (f.created_at, f.file_id.to_string())))
    }

    async fn list_vs_files(
        &self,
        store: &VectorStoreId,
        batch: Option<&FileBatchId>,
        status: Option<VsFileStatus>,
        w: &ListWindow,
    ) -> Result<Vec<VsFileRecord>> {
        let (tail, binds) = window_sql(w, "file_id");
        let mut sql = "SELECT * FROM vector_store_files WHERE vector_store_id = ?".to_owned();
        if batch.is_some() {
            sql.push_str(" AND batch_id = ?");
        }
        if status.is_some() {
            sql.push_str(" AND status = ?");
        }
        sql.push_str(&tail);
        let mut q = sqlx::query(&sql).bind(store.as_str());
        if let Some(b) = batch {
            q = q.bind(b.as_str());
        }
        if let Some(s) = status {
            q = q.bind(s.as_str());
        }
        for (c, k) in &binds {
            q = q.bind(*c).bind(*c).bind(k.as_str());
        }
        let rows = q
            .bind(i64::from(w.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(vs_file_from_row).collect()
    }

    async fn set_vs_file_attributes(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        attributes: &Attributes,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE vector_store_files SET attributes = ? WHERE vector_store_id = ? AND file_id = ?",
        )
        .bind(json_text(attributes))
        .bind(store.as_str())
        .bind(file.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn detach_file(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        purge: &NewJob,
        now: i64,
    ) -> Result<Option<VsFileRecord>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let row = sqlx::query(
            "DELETE FROM vector_store_files WHERE vector_store_id = ? AND file_id = ? RETURNING *",
        )
        .bind(store.as_str())
        .bind(file.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        };
        let removed = vs_file_from_row(&row)?;
        cancel_jobs(
            &mut tx,
            "kind = 'ingest' AND vector_store_id = ? AND file_id = ?",
            &[store.as_str(), file.as_str()],
            now,
        )
        .await?;
        insert_job(&mut tx, purge, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(removed))
    }

    async fn files_pending_purge(&self, store: &VectorStoreId) -> Result<Vec<FileId>> {
        let rows = sqlx::query(
            "SELECT DISTINCT file_id FROM jobs WHERE status IN ('queued', 'running') AND file_id IS NOT NULL \
             AND (kind = 'purge_file' OR (kind = 'purge_vs_file' AND vector_store_id = ?))",
        )
        .bind(store.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok(FileId::from_db(r.try_get("file_id").map_err(db_err)?)))
            .collect()
    }

    async fn create_batch(
        &self,
        batch: &FileBatchRecord,
        files: &[(VsFileRecord, NewJob)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO file_batches (id, vector_store_id, project_id, created_at, cancelled) VALUES (?, ?, ?, ?, 0)",
        )
        .bind(batch.id.as_str())
        .bind(batch.vector_store_id.as_str())
        .bind(batch.project_id.as_str())
        .bind(batch.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        attach_all(&mut tx, files, batch.created_at).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_batch(
        &self,
        store: &VectorStoreId,
        id: &FileBatchId,
    ) -> Result<Option<FileBatchRecord>> {
        let row = sqlx::query("SELECT * FROM file_batches WHERE id = ? AND vector_store_id = ?")
            .bind(id.as_str())
            .bind(store.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.map(|r| {
            Ok(FileBatchRecord {
                id: FileBatchId::from_db(r.try_get("id").map_err(db_err)?),
                vector_store_id: VectorStoreId::from_db(
                    r.try_get("vector_store_id").map_err(db_err)?,
                ),
                project_id: ProjectId::from_db(r.try_get("project_id").map_err(db_err)?),
                created_at: r.try_get("created_at").map_err(db_err)?,
                cancelled: r.try_get::<i64, _>("cancelled").map_err(db_err)? != 0,
            })
        })
        .transpose()
    }

    async fn batch_counts(&self, id: &FileBatchId) -> Result<FileCounts> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM vector_store_files WHERE batch_id = ? GROUP BY status",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        counts_from_rows(&rows)
    }

    async fn cancel_batch(&self, id: &FileBatchId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("UPDATE file_batches SET cancelled = 1 WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // The jobs of the batch's unfinished files, found before their rows change.
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled' WHERE kind = 'ingest' AND status IN ('queued', 'running') \
             AND EXISTS (SELECT 1 FROM vector_store_files f WHERE f.batch_id = ? AND f.status = 'in_progress' \
                         AND f.file_id = jobs.file_id AND f.vector_store_id = jobs.vector_store_id)",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE vector_store_files SET status = 'cancelled' WHERE batch_id = ? AND status = 'in_progress'",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_file_text(&self, file: &FileId) -> Result<Option<FileText>> {
        let row = sqlx::query("SELECT * FROM file_texts WHERE file_id = ?")
            .bind(file.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let Some(r) = row else { return Ok(None) };
        let status: String = r.try_get("status").map_err(db_err)?;
        if status == "ok" {
            let sections: String = r.try_get("sections").map_err(db_err)?;
            Ok(Some(FileText::Ok {
                storage_key: r
                    .try_get::<Option<String>, _>("storage_key")
                    .map_err(db_err)?
                    .ok_or_else(|| corrupt("text without key"))?,
                format: r
                    .try_get::<Option<String>, _>("format")
                    .map_err(db_err)?
                    .unwrap_or_default(),
                sections: serde_json::from_str(&sections).map_err(|_| corrupt("text sections"))?,
            }))
        } else {
            let code: Option<String> = r.try_get("error_code").map_err(db_err)?;
            Ok(Some(FileText::Failed {
                code: code
                    .as_deref()
                    .and_then(IngestErrorCode::parse)
                    .unwrap_or(IngestErrorCode::ServerError),
                message: r
                    .try_get::<Option<String>, _>("error_message")
                    .map_err(db_err)?
                    .unwrap_or_default(),
            }))
        }
    }

    async fn put_file_text(&self, file: &FileId, text: &FileText, now: i64) -> Result<()> {
        let (status, key, format, code, message, sections) = match text {
            FileText::Ok {
                storage_key,
                format,
                sections,
            } => (
                "ok",
                Some(storage_key.as_str()),
                Some(format.as_str()),
                None,
                None,
                json_text(sections),
            ),
            FileText::Failed { code, message } => (
                "failed",
                None,
                None,
                Some(code.as_str()),
                Some(message.as_str()),
                "[]".to_owned(),
            ),
        };
        sqlx::query(
            "INSERT INTO file_texts (file_id, status, storage_key, format, error_code, error_message, created_at, sections) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (file_id) DO UPDATE SET status = excluded.status, \
             storage_key = excluded.storage_key, format = excluded.format, error_code = excluded.error_code, \
             error_message = excluded.error_message, sections = excluded.sections",
        )
        .bind(file.as_str())
        .bind(status)
        .bind(key)
        .bind(format)
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(sections)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn chunk_count(&self, file: &FileId, chunking: &Chunking) -> Result<u32> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM file_chunks WHERE file_id = ? AND chunking = ?")
                .bind(file.as_str())
                .bind(chunking.key())
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(row.try_get::<i64, _>("n").map_err(db_err)? as u32)
    }

    async fn put_chunks(
        &self,
        file: &FileId,
        chunking: &Chunking,
        chunks: &[ChunkRow],
    ) -> Result<()> {
        let key = chunking.key();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("DELETE FROM file_chunks WHERE file_id = ? AND chunking = ?")
            .bind(file.as_str())
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for c in chunks {
            sqlx::query("INSERT INTO file_chunks (file_id, chunking, idx, text, extra) VALUES (?, ?, ?, ?, ?)")
                .bind(file.as_str())
                .bind(&key)
                .bind(i64::from(c.idx))
                .bind(&c.text)
                .bind(json_text(&c.extra))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn get_chunks(
        &self,
        file: &FileId,
        chunking: &Chunking,
        offset: u32,
        limit: u32,
        with_vectors: bool,
    ) -> Result<Vec<ChunkRow>> {
        let rows = sqlx::query(
            "SELECT * FROM file_chunks WHERE file_id = ? AND chunking = ? AND idx >= ? ORDER BY idx LIMIT ?",
        )
        .bind(file.as_str())
        .bind(chunking.key())
        .bind(i64::from(offset))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| chunk_from_row(r, with_vectors))
            .collect()
    }

    async fn chunks_to_embed(
        &self,
        file: &FileId,
        chunking: &Chunking,
        model: &str,
        limit: u32,
    ) -> Result<Vec<ChunkRow>> {
        let rows = sqlx::query(
            "SELECT * FROM file_chunks WHERE file_id = ? AND chunking = ? \
             AND (embedding IS NULL OR embed_model IS NOT ?) ORDER BY idx LIMIT ?",
        )
        .bind(file.as_str())
        .bind(chunking.key())
        .bind(model)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(|r| chunk_from_row(r, false)).collect()
    }

    async fn set_embeddings(
        &self,
        file: &FileId,
        chunking: &Chunking,
        model: &str,
        vectors: &[(u32, Vec<f32>)],
    ) -> Result<()> {
        let key = chunking.key();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for (idx, v) in vectors {
            sqlx::query(
                "UPDATE file_chunks SET embedding = ?, embed_model = ? WHERE file_id = ? AND chunking = ? AND idx = ?",
            )
            .bind(vec_to_blob(v))
            .bind(model)
            .bind(file.as_str())
            .bind(&key)
            .bind(i64::from(*idx))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn delete_file_caches(&self, file: &FileId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for sql in [
            "DELETE FROM file_chunks WHERE file_id = ?",
            "DELETE FROM file_texts WHERE file_id = ?",
        ] {
            sqlx::query(sql)
                .bind(file.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }
}

#[async_trait]
impl JobQueue for SqliteMetadata {
    async fn claim_job(&self, worker: &str, now: i64, lease_secs: i64) -> Result<Option<Job>> {
        let row = sqlx::query(
            "UPDATE jobs SET status = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1, \
             updated_at = ? WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_after <= ? \
             ORDER BY run_after, id LIMIT 1) RETURNING *",
        )
        .bind(worker)
        .bind(now + lease_secs)
        .bind(now)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(job_from_row).transpose()
    }

    async fn heartbeat(&self, job: &Job, until: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET locked_until = ? WHERE id = ? AND locked_by = ? AND status = 'running'",
        )
        .bind(until)
        .bind(job.id)
        .bind(&job.locked_by)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_job(
        &self,
        job: &Job,
        end: &JobEnd,
        usage_bytes: i64,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let (status, run_after, error) = match end {
            JobEnd::Done => ("done", None, None),
            JobEnd::Failed { message, .. } => ("failed", None, Some(message.as_str())),
            JobEnd::Retry { message, retry_at } => {
                ("queued", Some(*retry_at), Some(message.as_str()))
            }
        };
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, run_after = COALESCE(?, run_after), last_error = ?, locked_by = NULL, \
             locked_until = NULL, updated_at = ? WHERE id = ? AND locked_by = ? AND status = 'running'",
        )
        .bind(status)
        .bind(run_after)
        .bind(error)
        .bind(now)
        .bind(job.id)
        .bind(&job.locked_by)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        if let (JobKind::Ingest, Some(store), Some(file)) =
            (job.kind, &job.vector_store_id, &job.file_id)
        {
            let (vs_status, code, message) = match end {
                JobEnd::Done => (Some("completed"), None, None),
                JobEnd::Failed { code, message } => {
                    (Some("failed"), Some(code.as_str()), Some(message.as_str()))
                }
                JobEnd::Retry { .. } => (None, None, None),
            };
            if let Some(vs_status) = vs_status {
                sqlx::query(
                    "UPDATE vector_store_files SET status = ?, usage_bytes = ?, last_error_code = ?, \
                     last_error_message = ? WHERE vector_store_id = ? AND file_id = ? AND status = 'in_progress'",
                )
                .bind(vs_status)
                .bind(usage_bytes)
                .bind(code)
                .bind(message)
                .bind(store.as_str())
                .bind(file.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn requeue_expired(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, updated_at = ? \
             WHERE status = 'running' AND locked_until < ?",
        )
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
