//! Projects and API keys on SQLite.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{db_err, SqliteMetadata};
use crate::db::AuthMetadata;
use crate::domain::{Error, KeyId, KeyRecord, ProjectId, ProjectRecord, QuotaOverrides, Result};

fn project_from_row(r: &SqliteRow) -> Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: ProjectId::from_db(r.try_get("id").map_err(db_err)?),
        name: r.try_get("name").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        quotas: QuotaOverrides {
            stored_bytes: r.try_get("quota_stored_bytes").map_err(db_err)?,
            files_per_store: r.try_get("quota_files_per_store").map_err(db_err)?,
            stores: r.try_get("quota_stores").map_err(db_err)?,
        },
    })
}

fn key_from_row(r: &SqliteRow) -> Result<KeyRecord> {
    let hash: Vec<u8> = r.try_get("hash").map_err(db_err)?;
    Ok(KeyRecord {
        id: KeyId::from_db(r.try_get("id").map_err(db_err)?),
        project_id: ProjectId::from_db(r.try_get("project_id").map_err(db_err)?),
        name: r.try_get("name").map_err(db_err)?,
        hash: hash
            .try_into()
            .map_err(|_| Error::Internal(anyhow::anyhow!("a stored key hash is not 32 bytes")))?,
        hint: r.try_get("hint").map_err(db_err)?,
        created_at: r.try_get("created_at").map_err(db_err)?,
        revoked_at: r.try_get("revoked_at").map_err(db_err)?,
    })
}

#[async_trait]
impl AuthMetadata for SqliteMetadata {
    async fn find_project(&self, id_or_name: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(
            "SELECT * FROM projects WHERE id = ?1 \
             UNION ALL SELECT * FROM projects WHERE name = ?1 AND id <> ?1 LIMIT 1",
        )
        .bind(id_or_name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn ensure_project(&self, name: &str, now: i64) -> Result<ProjectRecord> {
        sqlx::query("INSERT INTO projects (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(ProjectId::generate().as_str())
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        let row = sqlx::query("SELECT * FROM projects WHERE name = ?")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        project_from_row(&row)
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let rows = sqlx::query("SELECT * FROM projects ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(project_from_row).collect()
    }

    async fn set_project_quotas(&self, id: &ProjectId, q: &QuotaOverrides) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE projects SET quota_stored_bytes = ?, quota_files_per_store = ?, \
             quota_stores = ? WHERE id = ?",
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
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &KeyId, now: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now)
                .bind(id.as_str())
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn any_live_key(&self) -> Result<bool> {
        let row = sqlx::query("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        row.try_get::<bool, _>(0).map_err(db_err)
    }

    async fn stored_bytes(&self, project: &ProjectId) -> Result<i64> {
        sqlx::query_scalar(super::STORED_BYTES)
            .bind(project.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)
    }
}
