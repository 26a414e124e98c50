//! The job queue: claims with `FOR UPDATE SKIP LOCKED`, taking turns (see the module above).

use async_trait::async_trait;

use super::{db_err, PgMetadata, LOCK_SPACE_CLAIMS};
use crate::db::{rows, JobQueue};
use crate::domain::{Job, JobEnd, JobKind, Result, VsFileOutcome};

/// What a claim returns.
const JOB: &str = "id, kind, project_id, file_id, vector_store_id, attempts, locked_by";

/// The claim: the oldest queued job due by `$3` that waits for no leased job (see
/// [`JobKind::waits_for`]; one clause per kind that waits, kinds written in as literals), among
/// purges only when `purges` (they are claimed first: see [`JobKind::is_purge`]), claimed for
/// `$1` until `$2`.
fn claim_sql(purges: bool) -> &'static str {
    static ANY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static PURGES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let cell = if purges { &PURGES } else { &ANY };
    let list = |kinds: &mut dyn Iterator<Item = JobKind>| {
        kinds
            .map(|k| format!("'{}'", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    cell.get_or_init(|| {
        let only = if purges {
            // Written as the partial index `jobs_ready_purges` is, so the planner uses it.
            let kinds = list(&mut JobKind::ALL.into_iter().filter(|k| k.is_purge()));
            format!(" AND j.kind IN ({kinds})")
        } else {
            String::new()
        };
        let mut waits = String::new();
        for kind in JobKind::ALL {
            let on = kind.waits_for();
            if on.is_empty() {
                continue;
            }
            waits.push_str(&format!(
                " AND NOT (j.kind = '{}' AND EXISTS (SELECT 1 FROM jobs k WHERE k.status IN ('running', 'stopping') \
                 AND k.locked_until >= $3 AND k.kind IN ({}) \
                 AND (j.file_id IS NULL OR k.file_id = j.file_id) \
                 AND (j.vector_store_id IS NULL OR k.vector_store_id = j.vector_store_id)))",
                kind.as_str(),
                list(&mut on.iter().copied())
            ));
        }
        format!(
            "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1, \
             updated_at = $3 WHERE id = (SELECT j.id FROM jobs j WHERE j.status = 'queued' AND j.run_after <= $3{only}{waits} \
             ORDER BY j.run_after, j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED) RETURNING {JOB}"
        )
    })
}

#[async_trait]
impl JobQueue for PgMetadata {
    async fn claim(&self, worker: &str, now: i64, lease_secs: i64) -> Result<Option<Job>> {
        let holder = crate::db::jobs::lease_holder(worker);
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        // Claims take turns (in every process): whether a job waits for another is read from
        // the other's row, which a concurrent claim may be changing.
        sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
            .bind(LOCK_SPACE_CLAIMS)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // Purges first, then anything: two indexed lookups, each stopping at its first row.
        let mut claimed = None;
        for purges in [true, false] {
            let row = sqlx::query(claim_sql(purges))
                .bind(&holder)
                .bind(now + lease_secs)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if let Some(row) = row {
                claimed = Some(rows::job(&row)?);
                break;
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(claimed)
    }

    async fn heartbeat(&self, job: &Job, until: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND status = 'running'",
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
            "UPDATE jobs SET status = $1, run_after = COALESCE($2, run_after), last_error = $3, locked_by = NULL, \
             locked_until = NULL, updated_at = $4 WHERE id = $5 AND locked_by = $6 AND status = 'running'",
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
                "UPDATE vector_store_files SET status = $1, usage_bytes = $2, last_error_code = $3, \
                 last_error_message = $4 WHERE vector_store_id = $5 AND file_id = $6 AND status = 'in_progress'",
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
            "UPDATE jobs SET status = 'cancelled', locked_by = NULL, locked_until = NULL, updated_at = $1 \
             WHERE id = $2 AND locked_by = $3 AND status = 'stopping'",
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
        // A running job goes back in the queue; a stopping one counts as stopped. Replicas'
        // reapers racing here take turns on each row (in id order, as every change of several
        // jobs), and the second finds it requeued.
        let statuses: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET status = CASE status WHEN 'stopping' THEN 'cancelled' ELSE 'queued' END, \
             locked_by = NULL, locked_until = NULL, updated_at = $1 \
             WHERE id IN (SELECT id FROM jobs WHERE status IN ('running', 'stopping') AND locked_until < $1 \
             ORDER BY id FOR UPDATE) RETURNING status",
        )
        .bind(before)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(statuses.iter().filter(|s| *s == "queued").count() as u64)
    }
}
