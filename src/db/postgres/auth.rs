//! Projects and API keys on PostgreSQL.

use async_trait::async_trait;

use super::{db_err, PgMetadata};
use crate::db::{rows, AuthMetadata};
use crate::domain::{KeyId, KeyRecord, ProjectId, ProjectRecord, QuotaOverrides, Result};

#[async_trait]
impl AuthMetadata for PgMetadata {
    async fn find_project(&self, id_or_name: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(
            "SELECT * FROM projects WHERE id = $1 OR name = $1 ORDER BY (id = $1) DESC LIMIT 1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(rows::project).transpose()
    }

    async fn ensure_project(&self, name: &str, now: i64) -> Result<ProjectRecord> {
        // Racing creators of one name: the unique index keeps one row, and every caller reads
        // it (once the winner has committed, which the conflicting insert waits for).
        sqlx::query(
            "INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(ProjectId::generate().as_str())
        .bind(name)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        let row = sqlx::query("SELECT * FROM projects WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::project(&row)
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let rows = sqlx::query("SELECT * FROM projects ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::project).collect()
    }

    async fn set_project_quotas(&self, id: &ProjectId, q: &QuotaOverrides) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE projects SET quota_stored_bytes = $1, quota_files_per_store = $2, \
             quota_stores = $3 WHERE id = $4",
        )
        .bind(q.stored_bytes)
        .bind(q.files_per_store)
        .bind(q.stores)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_key(&self, key: &KeyRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, project_id, name, hash, hint, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.id.as_str())
        .bind(key.project_id.as_str())
        .bind(&key.name)
        .bind(&key.hash[..])
        .bind(&key.hint)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(rows::key).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(rows::key).collect()
    }

    async fn revoke_key(&self, id: &KeyId, now: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn any_live_key(&self) -> Result<bool> {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }

    async fn stored_bytes(&self, project: &ProjectId) -> Result<i64> {
        sqlx::query_scalar(super::STORED_BYTES)
            .bind(project.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }
}
