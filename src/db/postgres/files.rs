//! Files and uploads.

use async_trait::async_trait;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{Postgres, QueryBuilder};

use super::{
    cancel_jobs, check_quota, db_err, insert_job, lock_project, push_window, PgMetadata, Tx,
    LOCK_SPACE_SESSIONS,
};
use crate::db::{rows, FileListQuery, FileMetadata, ListWindow};
use crate::domain::{
    BucketObject, Cascade, FileId, FileRecord, FileStatus, NewJob, PartId, PartRecord, ProjectId,
    Quota, Result, UploadId, UploadRecord, UploadStatus,
};

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

const INSERT_UPLOAD: &str =
    "INSERT INTO uploads (id, project_id, filename, purpose, bytes, mime_type, created_at, \
     expires_at, status, file_id, file_expires_after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

fn bind_upload<'q>(q: PgQuery<'q>, u: &'q UploadRecord) -> PgQuery<'q> {
    q.bind(u.id.as_str())
        .bind(u.project_id.as_str())
        .bind(&u.filename)
        .bind(u.purpose.as_str())
        .bind(u.bytes)
        .bind(&u.mime_type)
        .bind(u.created_at)
        .bind(u.expires_at)
        .bind(u.status.as_str())
        .bind(u.file_id.as_ref().map(|f| f.as_str()))
        .bind(u.file_expires_after)
}

/// Objects with their files: those whose upload completed into a file visible at `$1`, in
/// project `$2`.
const LIVE_OBJECTS: &str = "SELECT f.*, o.bucket, o.key, o.upload_id, o.mime_type, o.created_at AS object_created_at \
     FROM bucket_objects o JOIN uploads u ON u.id = o.upload_id AND u.status = 'completed' \
     JOIN files f ON f.id = u.file_id AND f.deleted_at IS NULL AND (f.expires_at IS NULL OR f.expires_at > $1) \
     WHERE o.project_id = $2";

const INSERT_FILE: &str =
    "INSERT INTO files (id, project_id, filename, purpose, bytes, created_at, \
     expires_at, status, status_details, storage_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

fn bind_file<'q>(q: PgQuery<'q>, f: &'q FileRecord) -> PgQuery<'q> {
    q.bind(f.id.as_str())
        .bind(f.project_id.as_str())
        .bind(&f.filename)
        .bind(f.purpose.as_str())
        .bind(f.bytes)
        .bind(f.created_at)
        .bind(f.expires_at)
        .bind(f.status.as_str())
        .bind(&f.status_details)
        .bind(&f.storage_key)
}

/// Inserts the file (and its job) under its project's lock, then checks its stored bytes.
async fn insert_file_checked(
    tx: &mut Tx<'_>,
    file: &FileRecord,
    job: Option<&NewJob>,
    now: i64,
    max_bytes: i64,
) -> Result<()> {
    let project = file.project_id.as_str();
    lock_project(tx, project).await?;
    bind_file(sqlx::query(INSERT_FILE), file)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    check_quota(tx, Quota::StoredBytes, project, max_bytes).await?;
    if let Some(job) = job {
        insert_job(tx, job, now).await?;
    }
    Ok(())
}

#[async_trait]
impl FileMetadata for PgMetadata {
    async fn insert_file(
        &self,
        file: &FileRecord,
        job: Option<&NewJob>,
        max_bytes: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        insert_file_checked(&mut tx, file, job, file.created_at, max_bytes).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn get_file(
        &self,
        project: &ProjectId,
        id: &FileId,
        now: i64,
    ) -> Result<Option<FileRecord>> {
        let row = sqlx::query(
            "SELECT * FROM files WHERE id = $1 AND project_id = $2 AND deleted_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(id.as_str())
        .bind(project.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(rows::file).transpose()
    }

    async fn file_position(
        &self,
        project: &ProjectId,
        id: &FileId,
    ) -> Result<Option<(i64, FileId)>> {
        let created_at: Option<i64> =
            sqlx::query_scalar("SELECT created_at FROM files WHERE id = $1 AND project_id = $2")
                .bind(id.as_str())
                .bind(project.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(created_at.map(|c| (c, id.clone())))
    }

    async fn list_files(
        &self,
        project: &ProjectId,
        q: &FileListQuery,
        now: i64,
    ) -> Result<Vec<FileRecord>> {
        let w = ListWindow {
            order: q.order,
            after: q.after.as_ref().map(|(c, id)| (*c, id.to_string())),
            before: None,
            limit: q.limit,
        };
        let mut sql = QueryBuilder::<Postgres>::new("SELECT * FROM files WHERE project_id = ");
        sql.push_bind(project.as_str())
            .push(" AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ")
            .push_bind(now)
            .push(")");
        if let Some(p) = q.purpose {
            sql.push(" AND purpose = ").push_bind(p.as_str());
        }
        push_window(&mut sql, &w, "id");
        let rows = sql.build().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(rows::file).collect()
    }

    async fn delete_file(
        &self,
        project: &ProjectId,
        id: &FileId,
        cascade: &Cascade,
        now: i64,
    ) -> Result<Option<FileRecord>> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Not the visibility check: the reaper deletes files precisely because they expired.
        // The update waits for attaches holding the row (FOR SHARE); the links they made are
        // committed, and removed below, by the time it goes on.
        let row = sqlx::query(
            "UPDATE files SET deleted_at = $1 WHERE id = $2 AND project_id = $3 AND deleted_at IS NULL RETURNING *",
        )
        .bind(now)
        .bind(id.as_str())
        .bind(project.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(db_err)?;
            return Ok(None);
        };
        let file = rows::file(&row)?;
        // Jobs before links (see `cancel_jobs`).
        cancel_jobs(&mut tx, &cascade.cancel, now).await?;
        sqlx::query("DELETE FROM vector_store_files WHERE file_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        insert_job(&mut tx, &cascade.purge, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(file))
    }

    async fn expired_files(&self, now: i64, limit: u32) -> Result<Vec<FileRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM files WHERE deleted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::file).collect()
    }

    async fn purge_file_row(&self, id: &FileId) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = $1 AND deleted_at IS NOT NULL")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn file_row_exists(&self, id: &FileId) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM files WHERE id = $1)")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn insert_upload(&self, u: &UploadRecord) -> Result<()> {
        bind_upload(sqlx::query(INSERT_UPLOAD), u)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_upload(&self, project: &ProjectId, id: &UploadId) -> Result<Option<UploadRecord>> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = $1 AND project_id = $2")
            .bind(id.as_str())
            .bind(project.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::upload).transpose()
    }

    async fn insert_part(&self, p: &PartRecord, now: i64, max_total: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The upload's row lock: the sum below cannot change under a concurrent part,
        // completion or cancellation, which wait for this transaction (or went first, and then
        // the lock's re-check finds the upload no longer pending).
        let pending: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM uploads WHERE id = $1 AND status = 'pending' AND expires_at > $2 FOR NO KEY UPDATE",
        )
        .bind(p.upload_id.as_str())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let stored: i64 = if pending.is_some() {
            sqlx::query_scalar(
                "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM upload_parts WHERE upload_id = $1",
            )
            .bind(p.upload_id.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?
        } else {
            i64::MAX
        };
        if stored.saturating_add(p.bytes) > max_total {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO upload_parts (id, upload_id, project_id, created_at, bytes, storage_key, position) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(p.id.as_str())
        .bind(p.upload_id.as_str())
        .bind(p.project_id.as_str())
        .bind(p.created_at)
        .bind(p.bytes)
        .bind(&p.storage_key)
        .bind(stored)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn parts_of(&self, upload: &UploadId) -> Result<Vec<PartRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM upload_parts WHERE upload_id = $1 ORDER BY position, created_at, id",
        )
        .bind(upload.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::part).collect()
    }

    async fn part_exists(&self, id: &PartId) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM upload_parts WHERE id = $1)")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn complete_upload(
        &self,
        upload: &UploadId,
        file: &FileRecord,
        job: Option<&NewJob>,
        now: i64,
        max_bytes: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE uploads SET status = 'completed', file_id = $1 \
             WHERE id = $2 AND status = 'pending' AND expires_at > $3",
        )
        .bind(file.id.as_str())
        .bind(upload.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        insert_file_checked(&mut tx, file, job, now, max_bytes).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn finish_pending_upload(&self, upload: &UploadId, to: UploadStatus) -> Result<bool> {
        let done =
            sqlx::query("UPDATE uploads SET status = $1 WHERE id = $2 AND status = 'pending'")
                .bind(to.as_str())
                .bind(upload.as_str())
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_uploads(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE uploads SET status = 'expired' WHERE status = 'pending' AND expires_at <= $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn finished_uploads_with_parts(&self, limit: u32) -> Result<Vec<UploadId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT p.upload_id FROM upload_parts p JOIN uploads u ON u.id = p.upload_id \
             WHERE u.status <> 'pending' LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(ids.into_iter().map(UploadId::from_db).collect())
    }

    async fn delete_parts(&self, upload: &UploadId) -> Result<()> {
        sqlx::query("DELETE FROM upload_parts WHERE upload_id = $1")
            .bind(upload.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn set_file_status(
        &self,
        id: &FileId,
        status: FileStatus,
        details: Option<&str>,
    ) -> Result<()> {
        sqlx::query("UPDATE files SET status = $1, status_details = $2 WHERE id = $3")
            .bind(status.as_str())
            .bind(details)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn filenames(&self, ids: &[FileId]) -> Result<Vec<(FileId, String)>> {
        let wanted: Vec<&str> = ids.iter().map(FileId::as_str).collect();
        let found: Vec<(String, String)> =
            sqlx::query_as("SELECT id, filename FROM files WHERE id = ANY($1)")
                .bind(&wanted)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        // In the order asked, as each id is looked up on SQLite.
        let found: std::collections::HashMap<String, String> = found.into_iter().collect();
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id.as_str()).map(|n| (id.clone(), n.clone())))
            .collect())
    }

    async fn insert_session(
        &self,
        upload: &UploadRecord,
        bucket: &str,
        key: &str,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The key may have no row to lock yet: sessions for one key take turns on an advisory
        // lock named after it (a hash collision only makes two keys take turns).
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || '/' || $3 || '/' || $4))")
            .bind(LOCK_SPACE_SESSIONS)
            .bind(upload.project_id.as_str())
            .bind(bucket)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // A live object or session keeps the key.
        let taken: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM bucket_objects o JOIN uploads u ON u.id = o.upload_id \
             WHERE o.project_id = $2 AND o.bucket = $3 AND o.key = $4 AND u.status = 'pending' AND u.expires_at > $1) \
             OR EXISTS (SELECT 1 FROM ({LIVE_OBJECTS}) AS live WHERE live.bucket = $3 AND live.key = $4)"
        ))
        .bind(now)
        .bind(upload.project_id.as_str())
        .bind(bucket)
        .bind(key)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if taken {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        bind_upload(sqlx::query(INSERT_UPLOAD), upload)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "DELETE FROM bucket_objects WHERE project_id = $1 AND bucket = $2 AND key = $3",
        )
        .bind(upload.project_id.as_str())
        .bind(bucket)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO bucket_objects (project_id, bucket, key, upload_id, mime_type, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(upload.project_id.as_str())
        .bind(bucket)
        .bind(key)
        .bind(upload.id.as_str())
        .bind(&upload.mime_type)
        .bind(upload.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn get_session(
        &self,
        project: &ProjectId,
        upload: &UploadId,
    ) -> Result<Option<BucketObject>> {
        let row = sqlx::query(
            "SELECT bucket, key, upload_id, mime_type, created_at AS object_created_at \
             FROM bucket_objects WHERE upload_id = $1 AND project_id = $2",
        )
        .bind(upload.as_str())
        .bind(project.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(rows::bucket_object).transpose()
    }

    async fn get_bucket_object(
        &self,
        project: &ProjectId,
        bucket: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<(BucketObject, FileRecord)>> {
        let row = sqlx::query(&format!("{LIVE_OBJECTS} AND o.bucket = $3 AND o.key = $4"))
            .bind(now)
            .bind(project.as_str())
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref()
            .map(|r| Ok((rows::bucket_object(r)?, rows::file(r)?)))
            .transpose()
    }

    async fn list_bucket(
        &self,
        project: &ProjectId,
        bucket: &str,
        now: i64,
    ) -> Result<Vec<(BucketObject, FileRecord)>> {
        let rows = sqlx::query(&format!("{LIVE_OBJECTS} AND o.bucket = $3 ORDER BY o.key"))
            .bind(now)
            .bind(project.as_str())
            .bind(bucket)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok((rows::bucket_object(r)?, rows::file(r)?)))
            .collect()
    }

    async fn list_buckets(&self, project: &ProjectId, now: i64) -> Result<Vec<String>> {
        sqlx::query_scalar(&format!(
            "SELECT DISTINCT bucket FROM ({LIVE_OBJECTS}) AS live ORDER BY bucket"
        ))
        .bind(now)
        .bind(project.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn delete_bucket_object(&self, upload: &UploadId) -> Result<()> {
        sqlx::query("DELETE FROM bucket_objects WHERE upload_id = $1")
            .bind(upload.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn close(&self) {
        if let Some(listener) = &self.listener {
            listener.stop().await;
        }
        self.pool.close().await;
    }
}
