//! The per-file caches: extracted text, chunks per chunking, embeddings per model.

use async_trait::async_trait;
use sqlx::Row;

use super::{db_err, SqliteMetadata};
use crate::db::rows::{self, json_text};
use crate::db::{CacheMetadata, ChunkRow, FileText};
use crate::domain::{Chunking, FileId, Result};

#[async_trait]
impl CacheMetadata for SqliteMetadata {
    async fn get_file_text(&self, file: &FileId) -> Result<Option<FileText>> {
        let row = sqlx::query("SELECT * FROM file_texts WHERE file_id = ?")
            .bind(file.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::file_text).transpose()
    }

    async fn put_file_text(&self, file: &FileId, text: &FileText, now: i64) -> Result<bool> {
        let t = rows::text_columns(text);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if !lock_live_file(&mut tx, file).await? {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO file_texts (file_id, status, storage_key, format, error_code, error_message, created_at, sections) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (file_id) DO UPDATE SET status = excluded.status, \
             storage_key = excluded.storage_key, format = excluded.format, error_code = excluded.error_code, \
             error_message = excluded.error_message, sections = excluded.sections",
        )
        .bind(file.as_str())
        .bind(t.status)
        .bind(t.storage_key)
        .bind(t.format)
        .bind(t.error_code)
        .bind(t.error_message)
        .bind(now)
        .bind(t.sections)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn chunked(&self, file: &FileId, chunking: &Chunking) -> Result<Option<u32>> {
        let row =
            sqlx::query("SELECT chunks FROM file_chunkings WHERE file_id = ? AND chunking = ?")
                .bind(file.as_str())
                .bind(chunking.key())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.map(|r| Ok(r.try_get::<i64, _>("chunks").map_err(db_err)? as u32))
            .transpose()
    }

    async fn put_chunks(
        &self,
        file: &FileId,
        chunking: &Chunking,
        chunks: &[ChunkRow],
    ) -> Result<bool> {
        let key = chunking.key();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if !lock_live_file(&mut tx, file).await? {
            return Ok(false);
        }
        for c in chunks {
            // A chunk written again with the same text (a job resumed after a crash) keeps the
            // embedding it already has.
            sqlx::query(
                "INSERT INTO file_chunks (file_id, chunking, idx, text, extra) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (file_id, chunking, idx) DO UPDATE SET extra = excluded.extra, \
                 embedding = CASE WHEN text = excluded.text THEN embedding END, \
                 embed_model = CASE WHEN text = excluded.text THEN embed_model END, \
                 text = excluded.text",
            )
            .bind(file.as_str())
            .bind(&key)
            .bind(i64::from(c.idx))
            .bind(&c.text)
            .bind(json_text(&c.extra))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn finish_chunking(
        &self,
        file: &FileId,
        chunking: &Chunking,
        total: u32,
    ) -> Result<bool> {
        let key = chunking.key();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if !lock_live_file(&mut tx, file).await? {
            return Ok(false);
        }
        sqlx::query("DELETE FROM file_chunks WHERE file_id = ? AND chunking = ? AND idx >= ?")
            .bind(file.as_str())
            .bind(&key)
            .bind(i64::from(total))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO file_chunkings (file_id, chunking, chunks) VALUES (?, ?, ?) \
             ON CONFLICT (file_id, chunking) DO UPDATE SET chunks = excluded.chunks",
        )
        .bind(file.as_str())
        .bind(&key)
        .bind(i64::from(total))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn get_chunks(
        &self,
        file: &FileId,
        chunking: &Chunking,
        offset: u32,
        limit: u32,
        vectors_of: Option<&str>,
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
        rows.iter().map(|r| rows::chunk(r, vectors_of)).collect()
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
            .bind(rows::vector_bytes(v))
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
            "DELETE FROM file_chunkings WHERE file_id = ?",
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

/// Inside a transaction: whether `file` is live (its row is there, not deleted), taking the
/// write lock first (a no-op update), so a delete cannot commit between this check and the
/// transaction's writes.
async fn lock_live_file(tx: &mut sqlx::SqliteConnection, file: &FileId) -> Result<bool> {
    let done = sqlx::query("UPDATE files SET id = id WHERE id = ? AND deleted_at IS NULL")
        .bind(file.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}
