//! Files and uploads.

use async_trait::async_trait;
use sqlx::Row;

use super::{
    bind_window, cancel_jobs, check_quota, db_err, insert_job, window_sql, SqliteMetadata,
};
use crate::db::{rows, FileListQuery, FileMetadata, ListWindow};
use crate::domain::Quota;
use crate::domain::{
    BucketObject, Cascade, FileId, FileRecord, FileStatus, NewJob, PartId, PartRecord, ProjectId,
    Result, UploadId, UploadRecord, UploadStatus,
};

const INSERT_UPLOAD: &str =
    "INSERT INTO uploads (id, project_id, filename, purpose, bytes, mime_type, created_at, \
     expires_at, status, file_id, file_expires_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn bind_upload<'q>(q: super::Query<'q>, u: &'q UploadRecord) -> super::Query<'q> {
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

/// Objects with their files: those whose upload completed into a file visible at `?`.
const LIVE_OBJECTS: &str = "SELECT f.*, o.bucket, o.key, o.upload_id, o.mime_type, o.created_at AS object_created_at \
     FROM bucket_objects o JOIN uploads u ON u.id = o.upload_id AND u.status = 'completed' \
     JOIN files f ON f.id = u.file_id AND f.deleted_at IS NULL AND (f.expires_at IS NULL OR f.expires_at > ?) \
     WHERE o.project_id = ?";

const INSERT_FILE: &str =
    "INSERT INTO files (id, project_id, filename, purpose, bytes, created_at, \
     expires_at, status, status_details, storage_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn bind_file<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    f: &'q FileRecord,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
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

/// A file the client can still see.
const VISIBLE: &str = "deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)";

#[async_trait]
impl FileMetadata for SqliteMetadata {
    async fn insert_file(
        &self,
        file: &FileRecord,
        job: Option<&NewJob>,
        max_bytes: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        bind_file(sqlx::query(INSERT_FILE), file)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // After the insert, which took the write lock: no other file can land in between.
        check_quota(
            &mut tx,
            Quota::StoredBytes,
            file.project_id.as_str(),
            max_bytes,
        )
        .await?;
        if let Some(job) = job {
            insert_job(&mut tx, job, file.created_at).await?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn get_file(
        &self,
        project: &ProjectId,
        id: &FileId,
        now: i64,
    ) -> Result<Option<FileRecord>> {
        let sql = format!("SELECT * FROM files WHERE id = ? AND project_id = ? AND {VISIBLE}");
        let row = sqlx::query(&sql)
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
        let row = sqlx::query("SELECT created_at FROM files WHERE id = ? AND project_id = ?")
            .bind(id.as_str())
            .bind(project.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        match row {
            Some(r) => Ok(Some((r.try_get("created_at").map_err(db_err)?, id.clone()))),
            None => Ok(None),
        }
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
        let (tail, binds) = window_sql(&w, "id");
        let mut sql = format!("SELECT * FROM files WHERE project_id = ? AND {VISIBLE}");
        if q.purpose.is_some() {
            sql.push_str(" AND purpose = ?");
        }
        sql.push_str(&tail);
        let mut query = sqlx::query(&sql).bind(project.as_str()).bind(now);
        if let Some(p) = q.purpose {
            query = query.bind(p.as_str());
        }
        let rows = bind_window(query, &binds, w.limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
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
        let row = sqlx::query(
            "UPDATE files SET deleted_at = ? WHERE id = ? AND project_id = ? AND deleted_at IS NULL RETURNING *",
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
        sqlx::query("DELETE FROM vector_store_files WHERE file_id = ?")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        cancel_jobs(&mut tx, &cascade.cancel, now).await?;
        insert_job(&mut tx, &cascade.purge, now).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Some(file))
    }

    async fn expired_files(&self, now: i64, limit: u32) -> Result<Vec<FileRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM files WHERE deleted_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
        )
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::file).collect()
    }

    async fn purge_file_row(&self, id: &FileId) -> Result<()> {
        sqlx::query("DELETE FROM files WHERE id = ? AND deleted_at IS NOT NULL")
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn file_row_exists(&self, id: &FileId) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM files WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
    }

    async fn insert_upload(&self, u: &UploadRecord) -> Result<()> {
        bind_upload(sqlx::query(INSERT_UPLOAD), u)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn get_upload(&self, project: &ProjectId, id: &UploadId) -> Result<Option<UploadRecord>> {
        let row = sqlx::query("SELECT * FROM uploads WHERE id = ? AND project_id = ?")
            .bind(id.as_str())
            .bind(project.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::upload).transpose()
    }

    async fn insert_part(&self, p: &PartRecord, now: i64, max_total: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Writing the upload row first locks it (SQLite: the database; PostgreSQL: the row), so
        // the sum below cannot change under a concurrent part, completion or cancellation.
        let pending = sqlx::query(
            "UPDATE uploads SET status = status WHERE id = ? AND status = 'pending' AND expires_at > ?",
        )
        .bind(p.upload_id.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let stored: i64 = if pending.rows_affected() == 1 {
            sqlx::query("SELECT COALESCE(SUM(bytes), 0) AS n FROM upload_parts WHERE upload_id = ?")
                .bind(p.upload_id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?
                .try_get("n")
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
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            "SELECT * FROM upload_parts WHERE upload_id = ? ORDER BY position, created_at, id",
        )
        .bind(upload.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::part).collect()
    }

    async fn part_exists(&self, id: &PartId) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM upload_parts WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(row.is_some())
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
            "UPDATE uploads SET status = 'completed', file_id = ? \
             WHERE id = ? AND status = 'pending' AND expires_at > ?",
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
        bind_file(sqlx::query(INSERT_FILE), file)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        check_quota(
            &mut tx,
            Quota::StoredBytes,
            file.project_id.as_str(),
            max_bytes,
        )
        .await?;
        if let Some(job) = job {
            insert_job(&mut tx, job, now).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn finish_pending_upload(&self, upload: &UploadId, to: UploadStatus) -> Result<bool> {
        let done = sqlx::query("UPDATE uploads SET status = ? WHERE id = ? AND status = 'pending'")
            .bind(to.as_str())
            .bind(upload.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn expire_uploads(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE uploads SET status = 'expired' WHERE status = 'pending' AND expires_at <= ?",
        )
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn finished_uploads_with_parts(&self, limit: u32) -> Result<Vec<UploadId>> {
        let rows = sqlx::query(
            "SELECT DISTINCT p.upload_id FROM upload_parts p JOIN uploads u ON u.id = p.upload_id \
             WHERE u.status <> 'pending' LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| Ok(UploadId::from_db(r.try_get("upload_id").map_err(db_err)?)))
            .collect()
    }

    async fn delete_parts(&self, upload: &UploadId) -> Result<()> {
        sqlx::query("DELETE FROM upload_parts WHERE upload_id = ?")
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
        sqlx::query("UPDATE files SET status = ?, status_details = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(details)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn filenames(&self, ids: &[FileId]) -> Result<Vec<(FileId, String)>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query("SELECT filename FROM files WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
            if let Some(r) = row {
                out.push((id.clone(), r.try_get("filename").map_err(db_err)?));
            }
        }
        Ok(out)
    }

    async fn insert_session(
        &self,
        upload: &UploadRecord,
        bucket: &str,
        key: &str,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The write first, so the transaction holds SQLite's write lock before it reads (a read
        // first would fail at once, not wait, if another connection wrote in between).
        bind_upload(sqlx::query(INSERT_UPLOAD), upload)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // A live object or session keeps the key.
        let taken = sqlx::query(&format!(
            "SELECT 1 FROM bucket_objects o JOIN uploads u ON u.id = o.upload_id \
             WHERE o.project_id = ? AND o.bucket = ? AND o.key = ? AND u.status = 'pending' AND u.expires_at > ? \
             UNION ALL SELECT 1 FROM ({LIVE_OBJECTS}) WHERE bucket = ? AND key = ?"
        ))
        .bind(upload.project_id.as_str())
        .bind(bucket)
        .bind(key)
        .bind(now)
        .bind(now)
        .bind(upload.project_id.as_str())
        .bind(bucket)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if taken.is_some() {
            tx.rollback().await.map_err(db_err)?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM bucket_objects WHERE project_id = ? AND bucket = ? AND key = ?")
            .bind(upload.project_id.as_str())
            .bind(bucket)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO bucket_objects (project_id, bucket, key, upload_id, mime_type, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
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
             FROM bucket_objects WHERE upload_id = ? AND project_id = ?",
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
        let row = sqlx::query(&format!("{LIVE_OBJECTS} AND o.bucket = ? AND o.key = ?"))
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
        let rows = sqlx::query(&format!("{LIVE_OBJECTS} AND o.bucket = ? ORDER BY o.key"))
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
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT bucket FROM ({LIVE_OBJECTS}) ORDER BY bucket"
        ))
        .bind(now)
        .bind(project.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| r.try_get("bucket").map_err(db_err))
            .collect()
    }

    async fn delete_bucket_object(&self, upload: &UploadId) -> Result<()> {
        sqlx::query("DELETE FROM bucket_objects WHERE upload_id = ?")
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
        self.pool.close().await;
    }
}
