//! Vector stores, the files in them, and file batches.

use async_trait::async_trait;
use sqlx::Row;

use super::{
    bind_window, cancel_jobs, check_quota, db_err, insert_job, window_sql, SqliteMetadata, Tx,
    CANCEL_STATUS,
};
use crate::db::rows::{self, json_text};
use crate::db::{Attached, ListWindow, Position, StoreMetadata};
use crate::domain::{
    Attributes, Cascade, FileBatchId, FileBatchRecord, FileCounts, FileId, IndexCollection,
    JobKind, NewJob, ProjectId, Quota, Quotas, Result, VectorStoreId, VectorStoreRecord,
    VsFileRecord, VsFileStatus,
};

/// Inserts the row only if the file is visible in its project and the store is live at this
/// moment, in the caller's transaction; `false` if it is already there or either is gone.
async fn insert_vs_file(tx: &mut Tx<'_>, f: &VsFileRecord, now: i64) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO vector_store_files (vector_store_id, file_id, project_id, batch_id, created_at, status, \
         usage_bytes, chunk_max_tokens, chunk_overlap_tokens, attributes) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
         WHERE EXISTS (SELECT 1 FROM files WHERE id = ? AND project_id = ? AND deleted_at IS NULL \
                       AND (expires_at IS NULL OR expires_at > ?)) \
         AND EXISTS (SELECT 1 FROM vector_stores WHERE id = ? AND project_id = ? AND deleted_at IS NULL) \
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
    .bind(f.file_id.as_str())
    .bind(f.project_id.as_str())
    .bind(now)
    .bind(f.vector_store_id.as_str())
    .bind(f.project_id.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

async fn fetch_vs_file<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(
    e: E,
    store: &VectorStoreId,
    file: &FileId,
) -> Result<Option<VsFileRecord>> {
    let row =
        sqlx::query("SELECT * FROM vector_store_files WHERE vector_store_id = ? AND file_id = ?")
            .bind(store.as_str())
            .bind(file.as_str())
            .fetch_optional(e)
            .await
            .map_err(db_err)?;
    row.as_ref().map(rows::vs_file).transpose()
}

/// Attaches each file with its job; returns the files left out because they are gone.
async fn attach_all(
    tx: &mut Tx<'_>,
    files: &[(VsFileRecord, NewJob)],
    now: i64,
) -> Result<Vec<FileId>> {
    let mut gone = Vec::new();
    for (f, job) in files {
        if insert_vs_file(tx, f, now).await? {
            insert_job(tx, job, now).await?;
        } else if fetch_vs_file(&mut **tx, &f.vector_store_id, &f.file_id)
            .await?
            .is_none()
        {
            gone.push(f.file_id.clone());
        }
    }
    Ok(gone)
}

#[async_trait]
impl StoreMetadata for SqliteMetadata {
    async fn create_vector_store(
        &self,
        s: &VectorStoreRecord,
        files: &[(VsFileRecord, NewJob)],
        now: i64,
        quotas: &Quotas,
    ) -> Result<Vec<FileId>> {
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
        check_quota(&mut tx, Quota::Stores, s.project_id.as_str(), quotas.stores).await?;
        let gone = attach_all(&mut tx, files, now).await?;
        check_quota(
            &mut tx,
            Quota::FilesPerStore,
            s.id.as_str(),
            quotas.files_per_store,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(gone)
    }

    async fn usage(&self, top: u32) -> Result<crate::db::Usage> {
        let stored_bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(bytes), 0) FROM files WHERE deleted_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let rows = sqlx::query_as::<_, (String, i64)>(
            "SELECT f.vector_store_id, SUM(f.chunks_indexed) AS n FROM vector_store_files f \
             JOIN vector_stores s ON s.id = f.vector_store_id WHERE s.deleted_at IS NULL \
             GROUP BY f.vector_store_id ORDER BY n DESC, f.vector_store_id LIMIT ?",
        )
        .bind(top)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(crate::db::Usage {
            stored_bytes,
            top_stores: rows
                .into_iter()
                .map(|(s, n)| (VectorStoreId::from_db(s), n))
                .collect(),
        })
    }

    async fn enqueue_keyword_index(
        &self,
        store: &VectorStoreId,
        project: &ProjectId,
        now: i64,
    ) -> Result<bool> {
        let kind = JobKind::IndexKeywords.as_str();
        let done = sqlx::query(
            "INSERT INTO jobs (kind, project_id, vector_store_id, status, run_after, created_at, updated_at) \
             SELECT ?, ?, ?, 'queued', ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM jobs \
             WHERE kind = ? AND vector_store_id = ? AND status IN ('queued', 'running', 'stopping'))",
        )
        .bind(kind)
        .bind(project.as_str())
        .bind(store.as_str())
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(kind)
        .bind(store.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_collection(&self, c: &IndexCollection) -> Result<IndexCollection> {
        sqlx::query(
            "INSERT INTO index_collections (engine, model, collection, dims, created_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (engine, model) DO NOTHING",
        )
        .bind(&c.engine)
        .bind(&c.model)
        .bind(&c.collection)
        .bind(i64::from(c.dims))
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let row = sqlx::query_as::<_, rows::IndexCollectionRow>(&format!(
            "SELECT {} FROM index_collections WHERE engine = ? AND model = ?",
            rows::INDEX_COLLECTION
        ))
        .bind(&c.engine)
        .bind(&c.model)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows::index_collection(row))
    }

    async fn index_collections(&self) -> Result<Vec<IndexCollection>> {
        let rows = sqlx::query_as::<_, rows::IndexCollectionRow>(&format!(
            "SELECT {} FROM index_collections ORDER BY created_at, engine, model",
            rows::INDEX_COLLECTION
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(rows::index_collection).collect())
    }

    async fn live_stores(&self) -> Result<Vec<(VectorStoreId, ProjectId)>> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT id, project_id FROM vector_stores WHERE deleted_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(s, p)| (VectorStoreId::from_db(s), ProjectId::from_db(p)))
            .collect())
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
        row.as_ref().map(rows::store).transpose()
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
        let q = sqlx::query(&sql).bind(project.as_str());
        let rows = bind_window(q, &binds, w.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::store).collect()
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

    async fn touch_vector_store(&self, id: &VectorStoreId, at: i64) -> Result<()> {
        sqlx::query(
            "UPDATE vector_stores SET last_active_at = ? WHERE id = ? AND last_active_at < ? AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(id.as_str())
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn delete_vector_store(
        &self,
        project: &ProjectId,
        id: &VectorStoreId,
        cascade: &Cascade,
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
        cancel_jobs(&mut tx, &cascade.cancel, now).await?;
        insert_job(&mut tx, &cascade.purge, now).await?;
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
        Ok((rows::counts(&rows)?, usage))
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

    async fn attach_file(
        &self,
        f: &VsFileRecord,
        job: &NewJob,
        now: i64,
        max_files: i64,
    ) -> Result<Attached> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let attached = if insert_vs_file(&mut tx, f, now).await? {
            check_quota(
                &mut tx,
                Quota::FilesPerStore,
                f.vector_store_id.as_str(),
                max_files,
            )
            .await?;
            insert_job(&mut tx, job, now).await?;
            Attached::New(f.clone())
        } else {
            match fetch_vs_file(&mut *tx, &f.vector_store_id, &f.file_id).await? {
                Some(existing) => Attached::Existing(existing),
                None => Attached::Gone,
            }
        };
        tx.commit().await.map_err(db_err)?;
        Ok(attached)
    }

    async fn get_vs_file(
        &self,
        store: &VectorStoreId,
        file: &FileId,
    ) -> Result<Option<VsFileRecord>> {
        fetch_vs_file(&self.pool, store, file).await
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
        let rows = bind_window(q, &binds, w.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::vs_file).collect()
    }

    async fn set_vs_file_progress(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        indexed: u32,
        total: Option<u32>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE vector_store_files SET chunks_indexed = ?, chunks_total = COALESCE(?, chunks_total) \
             WHERE vector_store_id = ? AND file_id = ? AND status = 'in_progress'",
        )
        .bind(i64::from(indexed))
        .bind(total.map(i64::from))
        .bind(store.as_str())
        .bind(file.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
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
        cascade: &Cascade,
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
        let removed = rows::vs_file(&row)?;
        cancel_jobs(&mut tx, &cascade.cancel, now).await?;
        insert_job(&mut tx, &cascade.purge, now).await?;
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
        now: i64,
        max_files: i64,
    ) -> Result<Vec<FileId>> {
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
        let gone = attach_all(&mut tx, files, now).await?;
        check_quota(
            &mut tx,
            Quota::FilesPerStore,
            batch.vector_store_id.as_str(),
            max_files,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(gone)
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
        row.as_ref().map(rows::batch).transpose()
    }

    async fn batch_counts(&self, id: &FileBatchId) -> Result<FileCounts> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM vector_store_files WHERE batch_id = ? GROUP BY status",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows::counts(&rows)
    }

    async fn cancel_batch(&self, id: &FileBatchId, kinds: &[JobKind], now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("UPDATE file_batches SET cancelled = 1 WHERE id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // The jobs of the batch's unfinished files, found before their rows change.
        if !kinds.is_empty() {
            let list = vec!["?"; kinds.len()].join(", ");
            let sql = format!(
                "UPDATE jobs SET status = {CANCEL_STATUS}, updated_at = ? WHERE kind IN ({list}) \
                 AND status IN ('queued', 'running') \
                 AND EXISTS (SELECT 1 FROM vector_store_files f WHERE f.batch_id = ? AND f.status = 'in_progress' \
                             AND f.file_id = jobs.file_id AND f.vector_store_id = jobs.vector_store_id)"
            );
            let mut q = sqlx::query(&sql).bind(now);
            for k in kinds {
                q = q.bind(k.as_str());
            }
            q.bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        // What their stopped jobs indexed is removed by a purge each, which waits for them.
        sqlx::query(
            "INSERT INTO jobs (kind, project_id, file_id, vector_store_id, status, run_after, created_at, updated_at) \
             SELECT ?, project_id, file_id, vector_store_id, 'queued', ?, ?, ? FROM vector_store_files \
             WHERE batch_id = ? AND status = 'in_progress'",
        )
        .bind(JobKind::PurgeVsFile.as_str())
        .bind(now)
        .bind(now)
        .bind(now)
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
}
