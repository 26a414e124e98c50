//! Vector stores, the files in them, and file batches.

use async_trait::async_trait;
use sqlx::{Postgres, QueryBuilder};

use super::{
    cancel_jobs, check_quota, db_err, insert_job, kind_names, lock_project, push_window,
    PgMetadata, Tx, CANCEL_STATUS,
};
use crate::db::rows::{self, json_text};
use crate::db::{Attached, ListWindow, Position, StoreMetadata};
use crate::domain::{
    Attributes, Cascade, FileBatchId, FileBatchRecord, FileCounts, FileId, IndexCollection,
    JobKind, NewJob, ProjectId, Quota, Quotas, Result, VectorStoreId, VectorStoreRecord,
    VsFileRecord, VsFileStatus,
};

/// A store's columns, JSON as text (what [`rows::store`] reads).
const STORE: &str = "id, project_id, name, description, metadata::text AS metadata, created_at, \
     last_active_at, expires_after_days";

/// A vector-store file's columns, JSON as text (what [`rows::vs_file`] reads).
const VS_FILE: &str = "vector_store_id, file_id, project_id, batch_id, created_at, status, \
     usage_bytes, chunk_max_tokens, chunk_overlap_tokens, attributes::text AS attributes, \
     last_error_code, last_error_message, chunks_indexed, chunks_total";

/// Locks the store's row until the transaction ends, only while the store is live and
/// `project`'s: attaches to it (and its files-per-store count) take turns, and a delete of it
/// waits for them (and then removes their links) or went first (and the lock's re-check finds
/// it deleted). `false` if it is not live.
async fn lock_store(tx: &mut Tx<'_>, store: &VectorStoreId, project: &ProjectId) -> Result<bool> {
    let live: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM vector_stores WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL \
         FOR NO KEY UPDATE",
    )
    .bind(store.as_str())
    .bind(project.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(live.is_some())
}

/// Inserts the link in the caller's transaction, which holds the store's row lock
/// ([`lock_store`]), only if the file is visible in the row's project at
/// this moment: the file's row is locked `FOR SHARE` first, so a delete of it either committed
/// before (and the lock's re-check finds it deleted) or waits for this transaction (and then
/// removes the link). `false` if the link is already there or the file is gone.
async fn insert_vs_file(tx: &mut Tx<'_>, f: &VsFileRecord, now: i64) -> Result<bool> {
    let live: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM files WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $3) FOR SHARE",
    )
    .bind(f.file_id.as_str())
    .bind(f.project_id.as_str())
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    if live.is_none() {
        return Ok(false);
    }
    let done = sqlx::query(
        "INSERT INTO vector_store_files (vector_store_id, file_id, project_id, batch_id, created_at, status, \
         usage_bytes, chunk_max_tokens, chunk_overlap_tokens, attributes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb) \
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

async fn fetch_vs_file<'e, E: sqlx::Executor<'e, Database = Postgres>>(
    e: E,
    store: &VectorStoreId,
    file: &FileId,
) -> Result<Option<VsFileRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {VS_FILE} FROM vector_store_files WHERE vector_store_id = $1 AND file_id = $2"
    ))
    .bind(store.as_str())
    .bind(file.as_str())
    .fetch_optional(e)
    .await
    .map_err(db_err)?;
    row.as_ref().map(rows::vs_file).transpose()
}

/// Attaches each file with its job (the store's row locked by the caller); returns the files
/// left out because they are gone.
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
impl StoreMetadata for PgMetadata {
    async fn create_vector_store(
        &self,
        s: &VectorStoreRecord,
        files: &[(VsFileRecord, NewJob)],
        now: i64,
        quotas: &Quotas,
    ) -> Result<Vec<FileId>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        lock_project(&mut tx, s.project_id.as_str()).await?;
        sqlx::query(
            "INSERT INTO vector_stores (id, project_id, name, description, metadata, created_at, last_active_at, \
             expires_after_days) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)",
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
        // The new store is this transaction's alone until it commits: no other attach can
        // count against its files.
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
            "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM files WHERE deleted_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let rows = sqlx::query_as::<_, (String, i64)>(
            "SELECT f.vector_store_id, SUM(f.chunks_indexed)::BIGINT AS n FROM vector_store_files f \
             JOIN vector_stores s ON s.id = f.vector_store_id WHERE s.deleted_at IS NULL \
             GROUP BY f.vector_store_id ORDER BY n DESC, f.vector_store_id LIMIT $1",
        )
        .bind(i64::from(top))
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
        // The partial unique index `jobs_one_keyword_index_per_store` is the "unless one is
        // already queued or running", for replicas racing to queue it too.
        let done = sqlx::query(
            "INSERT INTO jobs (kind, project_id, vector_store_id, status, run_after, created_at, updated_at) \
             VALUES ($1, $2, $3, 'queued', $4, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(JobKind::IndexKeywords.as_str())
        .bind(project.as_str())
        .bind(store.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_collection(&self, c: &IndexCollection) -> Result<IndexCollection> {
        sqlx::query(
            "INSERT INTO index_collections (engine, model, collection, dims, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (engine, model) DO NOTHING",
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
            "SELECT {} FROM index_collections WHERE engine = $1 AND model = $2",
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
        let row = sqlx::query(&format!(
            "SELECT {STORE} FROM vector_stores WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL"
        ))
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
        let created_at: Option<i64> = sqlx::query_scalar(
            "SELECT created_at FROM vector_stores WHERE id = $1 AND project_id = $2",
        )
        .bind(id.as_str())
        .bind(project.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(created_at.map(|c| (c, id.to_string())))
    }

    async fn list_vector_stores(
        &self,
        project: &ProjectId,
        w: &ListWindow,
    ) -> Result<Vec<VectorStoreRecord>> {
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {STORE} FROM vector_stores WHERE deleted_at IS NULL AND project_id = "
        ));
        q.push_bind(project.as_str());
        push_window(&mut q, w, "id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(rows::store).collect()
    }

    async fn update_vector_store(&self, s: &VectorStoreRecord) -> Result<()> {
        sqlx::query(
            "UPDATE vector_stores SET name = $1, description = $2, metadata = $3::jsonb, expires_after_days = $4, \
             last_active_at = $5 WHERE id = $6 AND deleted_at IS NULL",
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
            "UPDATE vector_stores SET last_active_at = $1 WHERE id = $2 AND last_active_at < $1 AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(id.as_str())
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
        // Waits for attaches holding the store's row; their links are then committed and
        // removed below.
        let done = sqlx::query(
            "UPDATE vector_stores SET deleted_at = $1 WHERE id = $2 AND project_id = $3 AND deleted_at IS NULL",
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
        // Jobs before links (see `cancel_jobs`).
        cancel_jobs(&mut tx, &cascade.cancel, now).await?;
        sqlx::query("DELETE FROM vector_store_files WHERE vector_store_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        insert_job(&mut tx, &cascade.purge, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn store_stats(&self, id: &VectorStoreId) -> Result<(FileCounts, i64)> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n, COALESCE(SUM(usage_bytes), 0)::BIGINT AS bytes \
             FROM vector_store_files WHERE vector_store_id = $1 GROUP BY status",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut usage = 0;
        for r in &rows {
            usage += rows::Columns::int(r, "bytes")?;
        }
        Ok((rows::counts(&rows)?, usage))
    }

    async fn purge_vector_store_rows(&self, id: &VectorStoreId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for sql in [
            "DELETE FROM vector_store_files WHERE vector_store_id = $1",
            "DELETE FROM file_batches WHERE vector_store_id = $1",
            "DELETE FROM vector_stores WHERE id = $1 AND deleted_at IS NOT NULL",
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
        let store = f.vector_store_id.as_str();
        let attached = if !lock_store(&mut tx, &f.vector_store_id, &f.project_id).await? {
            // A deleted store has no links left to report.
            Attached::Gone
        } else if insert_vs_file(&mut tx, f, now).await? {
            check_quota(&mut tx, Quota::FilesPerStore, store, max_files).await?;
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
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {VS_FILE} FROM vector_store_files WHERE vector_store_id = "
        ));
        q.push_bind(store.as_str());
        if let Some(b) = batch {
            q.push(" AND batch_id = ").push_bind(b.as_str());
        }
        if let Some(s) = status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        push_window(&mut q, w, "file_id");
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
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
            "UPDATE vector_store_files SET chunks_indexed = $1, chunks_total = COALESCE($2, chunks_total) \
             WHERE vector_store_id = $3 AND file_id = $4 AND status = 'in_progress'",
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
            "UPDATE vector_store_files SET attributes = $1::jsonb WHERE vector_store_id = $2 AND file_id = $3",
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
        // Jobs before links (see `cancel_jobs`); undone below if there was no link.
        cancel_jobs(&mut tx, &cascade.cancel, now).await?;
        let row = sqlx::query(&format!(
            "DELETE FROM vector_store_files WHERE vector_store_id = $1 AND file_id = $2 RETURNING {VS_FILE}"
        ))
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
        insert_job(&mut tx, &cascade.purge, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(removed))
    }

    async fn files_pending_purge(&self, store: &VectorStoreId) -> Result<Vec<FileId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT file_id FROM jobs WHERE status IN ('queued', 'running') \
             AND kind IN ('purge_file', 'purge_vs_file') AND file_id IS NOT NULL \
             AND (kind = 'purge_file' OR vector_store_id = $1)",
        )
        .bind(store.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(ids.into_iter().map(FileId::from_db).collect())
    }

    async fn create_batch(
        &self,
        batch: &FileBatchRecord,
        files: &[(VsFileRecord, NewJob)],
        now: i64,
        max_files: i64,
    ) -> Result<Vec<FileId>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let store = batch.vector_store_id.as_str();
        // A deleted store takes no files: they are all left out.
        let live = lock_store(&mut tx, &batch.vector_store_id, &batch.project_id).await?;
        sqlx::query(
            "INSERT INTO file_batches (id, vector_store_id, project_id, created_at, cancelled) \
             VALUES ($1, $2, $3, $4, FALSE)",
        )
        .bind(batch.id.as_str())
        .bind(store)
        .bind(batch.project_id.as_str())
        .bind(batch.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let gone = if live {
            attach_all(&mut tx, files, now).await?
        } else {
            files.iter().map(|(f, _)| f.file_id.clone()).collect()
        };
        check_quota(&mut tx, Quota::FilesPerStore, store, max_files).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(gone)
    }

    async fn get_batch(
        &self,
        store: &VectorStoreId,
        id: &FileBatchId,
    ) -> Result<Option<FileBatchRecord>> {
        let row = sqlx::query("SELECT * FROM file_batches WHERE id = $1 AND vector_store_id = $2")
            .bind(id.as_str())
            .bind(store.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::batch).transpose()
    }

    async fn batch_counts(&self, id: &FileBatchId) -> Result<FileCounts> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM vector_store_files WHERE batch_id = $1 GROUP BY status",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows::counts(&rows)
    }

    async fn cancel_batch(&self, id: &FileBatchId, kinds: &[JobKind], now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        sqlx::query("UPDATE file_batches SET cancelled = TRUE WHERE id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // The jobs of the batch's unfinished files, found before their rows change.
        if !kinds.is_empty() {
            sqlx::query(&format!(
                "UPDATE jobs SET status = {CANCEL_STATUS}, updated_at = $1 WHERE id IN (SELECT j.id FROM jobs j \
                 WHERE j.kind = ANY($2) AND j.status IN ('queued', 'running') \
                 AND EXISTS (SELECT 1 FROM vector_store_files f WHERE f.batch_id = $3 AND f.status = 'in_progress' \
                             AND f.file_id = j.file_id AND f.vector_store_id = j.vector_store_id) \
                 ORDER BY j.id FOR UPDATE OF j)"
            ))
            .bind(now)
            .bind(kind_names(kinds))
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        // What their stopped jobs indexed is removed by a purge each, which waits for them.
        // Their rows are then changed in key order, the order a store delete removes them in.
        sqlx::query(
            "INSERT INTO jobs (kind, project_id, file_id, vector_store_id, status, run_after, created_at, updated_at) \
             SELECT $1, project_id, file_id, vector_store_id, 'queued', $2, $2, $2 FROM vector_store_files \
             WHERE batch_id = $3 AND status = 'in_progress'",
        )
        .bind(JobKind::PurgeVsFile.as_str())
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE vector_store_files SET status = 'cancelled' WHERE (vector_store_id, file_id) IN \
             (SELECT vector_store_id, file_id FROM vector_store_files WHERE batch_id = $1 AND status = 'in_progress' \
             ORDER BY vector_store_id, file_id FOR UPDATE)",
        )
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}
