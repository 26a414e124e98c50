//! The per-file caches: extracted text, chunks per chunking, embeddings per model. A batch of
//! chunks or vectors is one statement (arrays spread over rows by `UNNEST`).

use async_trait::async_trait;
use std::collections::BTreeMap;

use super::{db_err, PgMetadata, Tx};
use crate::db::rows::{self, json_text};
use crate::db::{CacheMetadata, ChunkRow, FileText};
use crate::domain::{Chunking, FileId, Result};

/// Inside a transaction: whether `file` is live (its row is there, not deleted), holding its
/// row `FOR SHARE` until the end, so a delete cannot commit between this check and the
/// transaction's writes (it waits; or it went first, and the lock's re-check finds it deleted).
async fn lock_live_file(tx: &mut Tx<'_>, file: &FileId) -> Result<bool> {
    let live: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM files WHERE id = $1 AND deleted_at IS NULL FOR SHARE")
            .bind(file.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    Ok(live.is_some())
}

#[async_trait]
impl CacheMetadata for PgMetadata {
    async fn get_file_text(&self, file: &FileId) -> Result<Option<FileText>> {
        let row = sqlx::query(
            "SELECT status, storage_key, format, error_code, error_message, sections::text AS sections \
             FROM file_texts WHERE file_id = $1",
        )
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) ON CONFLICT (file_id) DO UPDATE SET status = excluded.status, \
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
        let chunks: Option<i64> = sqlx::query_scalar(
            "SELECT chunks FROM file_chunkings WHERE file_id = $1 AND chunking = $2",
        )
        .bind(file.as_str())
        .bind(chunking.key())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        chunks
            .map(|n| u32::try_from(n).map_err(|_| rows::corrupt("chunk count")))
            .transpose()
    }

    async fn put_chunks(
        &self,
        file: &FileId,
        chunking: &Chunking,
        chunks: &[ChunkRow],
    ) -> Result<bool> {
        // One row per index, the last written winning (as rows written one by one would), in
        // index order (the order rows are locked in, see `set_embeddings`).
        let by_idx: BTreeMap<u32, &ChunkRow> = chunks.iter().map(|c| (c.idx, c)).collect();
        let idx: Vec<i64> = by_idx.keys().map(|&i| i64::from(i)).collect();
        let texts: Vec<&str> = by_idx.values().map(|c| c.text.as_str()).collect();
        let extras: Vec<String> = by_idx.values().map(|c| json_text(&c.extra)).collect();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if !lock_live_file(&mut tx, file).await? {
            return Ok(false);
        }
        // A chunk written again with the same text (a job resumed after a crash) keeps the
        // embedding it already has.
        sqlx::query(
            "INSERT INTO file_chunks (file_id, chunking, idx, text, extra) \
             SELECT $1, $2, c.idx, c.text, c.extra::jsonb FROM UNNEST($3::bigint[], $4::text[], $5::text[]) \
             AS c(idx, text, extra) \
             ON CONFLICT (file_id, chunking, idx) DO UPDATE SET extra = excluded.extra, \
             embedding = CASE WHEN file_chunks.text = excluded.text THEN file_chunks.embedding END, \
             embed_model = CASE WHEN file_chunks.text = excluded.text THEN file_chunks.embed_model END, \
             text = excluded.text",
        )
        .bind(file.as_str())
        .bind(chunking.key())
        .bind(&idx)
        .bind(&texts)
        .bind(&extras)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
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
        sqlx::query("DELETE FROM file_chunks WHERE file_id = $1 AND chunking = $2 AND idx >= $3")
            .bind(file.as_str())
            .bind(&key)
            .bind(i64::from(total))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO file_chunkings (file_id, chunking, chunks) VALUES ($1, $2, $3) \
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
            "SELECT idx, text, extra::text AS extra, embed_model, embedding FROM file_chunks \
             WHERE file_id = $1 AND chunking = $2 AND idx >= $3 ORDER BY idx LIMIT $4",
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
        let by_idx: BTreeMap<u32, &Vec<f32>> = vectors.iter().map(|(i, v)| (*i, v)).collect();
        let idx: Vec<i64> = by_idx.keys().map(|&i| i64::from(i)).collect();
        let blobs: Vec<Vec<u8>> = by_idx.values().map(|v| rows::vector_bytes(v)).collect();
        let key = chunking.key();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // The rows in index order first, as `put_chunks` writes them: two jobs embedding the
        // same chunks (one file in two stores) never hold what the other waits for. The join
        // below would take them in whatever order its plan reads them.
        sqlx::query(
            "SELECT 1 FROM file_chunks WHERE file_id = $1 AND chunking = $2 AND idx = ANY($3) \
             ORDER BY idx FOR NO KEY UPDATE",
        )
        .bind(file.as_str())
        .bind(&key)
        .bind(&idx)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE file_chunks c SET embedding = v.embedding, embed_model = $3 \
             FROM UNNEST($4::bigint[], $5::bytea[]) AS v(idx, embedding) \
             WHERE c.file_id = $1 AND c.chunking = $2 AND c.idx = v.idx",
        )
        .bind(file.as_str())
        .bind(&key)
        .bind(model)
        .bind(&idx)
        .bind(&blobs)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn delete_file_caches(&self, file: &FileId) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        for sql in [
            "DELETE FROM file_chunks WHERE file_id = $1",
            "DELETE FROM file_chunkings WHERE file_id = $1",
            "DELETE FROM file_texts WHERE file_id = $1",
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
