//! The job queue.

use async_trait::async_trait;
use sqlx::Row;

use super::{db_err, SqliteMetadata};
use crate::db::{rows, JobQueue};
use crate::domain::{Job, JobEnd, JobKind, Result, VsFileOutcome};

/// The claim: the oldest queued job due by now that waits for no leased job (see
/// [`JobKind::waits_for`]; one clause per kind that waits, bound in [`JobKind::ALL`] order),
/// among purges only when `purges` (they are claimed first: see [`JobKind::is_purge`]).
fn claim_sql(purges: bool) -> &'static str {
    static ANY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static PURGES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let cell = if purges { &PURGES } else { &ANY };
    cell.get_or_init(|| {
        let only = if purges {
            let kinds: Vec<String> = JobKind::ALL
                .into_iter()
                .filter(|k| k.is_purge())
                .map(|k| format!("'{}'", k.as_str()))
                .collect();
            format!(" AND j.kind IN ({})", kinds.join(", "))
        } else {
            String::new()
        };
        let mut waits = String::new();
        for kind in JobKind::ALL {
            let on = kind.waits_for();
            if on.is_empty() {
                continue;
            }
            let list = vec!["?"; on.len()].join(", ");
            waits.push_str(&format!(
                " AND NOT (j.kind = ? AND EXISTS (SELECT 1 FROM jobs k WHERE k.status IN ('running', 'stopping') \
                 AND k.locked_until >= ? AND k.kind IN ({list}) \
                 AND (j.file_id IS NULL OR k.file_id = j.file_id) \
                 AND (j.vector_store_id IS NULL OR k.vector_store_id = j.vector_store_id)))"
            ));
        }
        format!(
            "UPDATE jobs SET status = 'running', locked_by = ?, locked_until = ?, attempts = attempts + 1, \
             updated_at = ? WHERE id = (SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.run_after <= ?{only}{waits} \
             ORDER BY j.run_after, j.id LIMIT 1) RETURNING *"
        )
    })
}

#[async_trait]
impl JobQueue for SqliteMetadata {
    async fn claim(&self, worker: &str, now: i64, lease_secs: i64) -> Result<Option<Job>> {
        let holder = crate::db::jobs::lease_holder(worker);
        // Purges first, then anything: two indexed lookups, each stopping at its first row.
        for purges in [true, false] {
            let mut q = sqlx::query(claim_sql(purges))
                .bind(&holder)
                .bind(now + lease_secs)
                .bind(now)
                .bind(now);
            for kind in JobKind::ALL {
                if !kind.waits_for().is_empty() {
                    q = q.bind(kind.as_str()).bind(now);
                    for w in kind.waits_for() {
                        q = q.bind(w.as_str());
                    }
                }
            }
            if let Some(row) = q.fetch_optional(&self.pool).await.map_err(db_err)? {
                return rows::job(&row).map(Some);
            }
        }
        Ok(None)
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

    async fn finish(
        &self,
        job: &Job,
        end: &JobEnd,
        outcome: Option<&VsFileOutcome>,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let (status, run_after, error) = rows::job_end_columns(end);
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
        if let Some(o) = outcome {
            let (code, message) = rows::outcome_error(o);
            sqlx::query(
                "UPDATE vector_store_files SET status = ?, usage_bytes = ?, last_error_code = ?, \
                 last_error_message = ? WHERE vector_store_id = ? AND file_id = ? AND status = 'in_progress'",
            )
            .bind(o.status.as_str())
            .bind(o.usage_bytes)
            .bind(code)
            .bind(message)
            .bind(o.vector_store_id.as_str())
            .bind(o.file_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn release(&self, job: &Job, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', locked_by = NULL, locked_until = NULL, updated_at = ? \
             WHERE id = ? AND locked_by = ? AND status = 'stopping'",
        )
        .bind(now)
        .bind(job.id)
        .bind(&job.locked_by)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn stats(&self, now: i64) -> Result<crate::db::QueueStats> {
        let by_kind_status = sqlx::query_as::<_, (String, String, i64)>(
            "SELECT kind, status, COUNT(*) FROM jobs GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let (queued, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM jobs WHERE status = 'queued'")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(crate::db::QueueStats {
            by_kind_status,
            queued,
            oldest_queued_secs: oldest.map_or(0, |t| (now - t).max(0)),
        })
    }

    async fn requeue_expired(&self, before: i64) -> Result<u64> {
        // A running job goes back in the queue; a stopping one counts as stopped.
        let rows = sqlx::query(
            "UPDATE jobs SET status = CASE status WHEN 'stopping' THEN 'cancelled' ELSE 'queued' END, \
             locked_by = NULL, locked_until = NULL, updated_at = ? \
             WHERE status IN ('running', 'stopping') AND locked_until < ? RETURNING status",
        )
        .bind(before)
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut requeued = 0;
        for r in &rows {
            if r.try_get::<String, _>("status").map_err(db_err)? == "queued" {
                requeued += 1;
            }
        }
        Ok(requeued)
    }
}
