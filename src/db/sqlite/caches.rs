//! The per-file caches: extracted text, chunks per chunking, embeddings per model.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{corrupt, db_err, json_text, SqliteMetadata};
use crate::db::{CacheMetadata, ChunkRow, FileText};
use crate::domain::{Chunking, FileId, IngestErrorCode, Result};

fn vec_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_to_vec(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A chunk row, with its embedding if that is `model`'s.
fn chunk_from_row(row: &SqliteRow, model: Option<&str>) -> Result<ChunkRow> {
    let extra: String = row.try_get("extra").map_err(db_err)?;
    let idx: i64 = row.try_get("idx").map_err(db_err)?;
    let embedded_by: Option<String> = row.try_get("embed_model").map_err(db_err)?;
    let embedding = match model {
        Some(m) if embedded_by.as_deref() == Some(m) => row
            .try_get::<Option<Vec<u8>>, _>("embedding")
            .map_err(db_err)?
            .map(|b| blob_to_vec(&b)),
        _ => None,
    };
    Ok(ChunkRow {
        idx: idx as u32,
        text: row.try_get("text").map_err(db_err)?,
        extra: serde_json::from_str(&extra).map_err(|_| corrupt("chunk extra"))?,
        embedding,
    })
}

#[async_trait]
impl CacheMetadata for SqliteMetadata {
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

    async fn put_file_text(&self, file: &FileId, text: &FileText, now: i64) -> Result<bool> {
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
        .bind(status)
        .bind(key)
        .bind(format)
        .bind(code)
        .bind(message)
        .bind(now)
        .bind(sections)
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
        rows.iter().map(|r| chunk_from_row(r, vectors_of)).collect()
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
