//! [`Metadata`](super::Metadata) and [`JobQueue`](super::JobQueue) on SQLite (WAL,
//! synchronous=FULL), the embedded default.
//!
//! Write transactions start with their write so SQLite takes the write lock first; a deferred
//! transaction that reads and then upgrades can fail with SQLITE_BUSY regardless of the timeout.
//! Every method that must be atomic is one transaction (or one statement), which SQLite's single
//! writer serialises.

mod auth;
mod caches;
mod files;
mod jobs;
mod stores;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::path::Path;
use std::time::Duration;

use super::ListWindow;
use crate::domain::{Error, JobFilter, NewJob, Order, Quota, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

type Tx<'a> = Transaction<'a, Sqlite>;

#[derive(Debug, Clone)]
pub struct SqliteMetadata {
    pool: SqlitePool,
}

impl SqliteMetadata {
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A statement that failed on a full disk can leave its connection inside a
            // transaction that holds the write lock, and every other writer then waits out
            // its busy timeout and fails, long after space returned. A connection comes back
            // to the pool with no transaction open, or is closed.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    match sqlx::query("ROLLBACK").execute(&mut *conn).await {
                        // Nothing was open: the usual case.
                        Err(sqlx::Error::Database(d)) if d.message().contains("no transaction") => {
                            Ok(true)
                        }
                        Ok(_) => {
                            tracing::warn!(
                                "a database connection came back inside a transaction; rolled back"
                            );
                            Ok(conn.ping().await.is_ok())
                        }
                        Err(_) => Ok(false),
                    }
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("opening SQLite database {}", path.display()))?;
        MIGRATOR
            .run(&pool)
            .await
            .context("running SQLite migrations")?;
        Ok(Self { pool })
    }
}

/// A database error, classified: what may pass (I/O, a busy or locked database, an exhausted
/// pool) is transient; the rest (a broken constraint, an unexpected row) would happen again.
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    // SQLITE_FULL: the database's disk is full.
    if let sqlx::Error::Database(d) = &e {
        if d.code().as_deref() == Some("13") {
            return Error::out_of_space(format!("metadata database: {e}"));
        }
    }
    let transient = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => matches!(d.kind(), sqlx::error::ErrorKind::Other),
        _ => false,
    };
    let e = anyhow::Error::new(e).context("metadata database");
    if transient {
        Error::Unavailable(e)
    } else {
        Error::Internal(e)
    }
}

async fn insert_job(tx: &mut Tx<'_>, job: &NewJob, now: i64) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO jobs (kind, project_id, file_id, vector_store_id, status, run_after, created_at, updated_at) \
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?) RETURNING id",
    )
    .bind(job.kind.as_str())
    .bind(job.project_id.as_str())
    .bind(job.file_id.as_ref().map(|f| f.as_str()))
    .bind(job.vector_store_id.as_ref().map(|v| v.as_str()))
    .bind(now)
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)?;
    row.try_get("id").map_err(db_err)
}

/// A cancelled job: a queued one is done with, a running one is stopping (still leased) until
/// its worker releases it.
const CANCEL_STATUS: &str = "CASE status WHEN 'running' THEN 'stopping' ELSE 'cancelled' END";

/// Cancels the live jobs `filter` selects.
async fn cancel_jobs(tx: &mut Tx<'_>, filter: &JobFilter, now: i64) -> Result<()> {
    if filter.kinds.is_empty() {
        return Ok(());
    }
    let kinds = vec!["?"; filter.kinds.len()].join(", ");
    let mut sql = format!(
        "UPDATE jobs SET status = {CANCEL_STATUS}, updated_at = ? \
         WHERE status IN ('queued', 'running') AND kind IN ({kinds})"
    );
    if filter.file_id.is_some() {
        sql.push_str(" AND file_id = ?");
    }
    if filter.vector_store_id.is_some() {
        sql.push_str(" AND vector_store_id = ?");
    }
    let mut q = sqlx::query(&sql).bind(now);
    for k in &filter.kinds {
        q = q.bind(k.as_str());
    }
    if let Some(f) = &filter.file_id {
        q = q.bind(f.as_str());
    }
    if let Some(s) = &filter.vector_store_id {
        q = q.bind(s.as_str());
    }
    q.execute(&mut **tx).await.map_err(db_err)?;
    Ok(())
}

pub(super) type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds what [`window_sql`] asked for: the cursors, then the limit.
fn bind_window<'q>(mut q: Query<'q>, binds: &'q [(i64, String)], limit: u32) -> Query<'q> {
    for (c, k) in binds {
        q = q.bind(*c).bind(*c).bind(k.as_str());
    }
    q.bind(i64::from(limit))
}

/// `(created_at, key) > / < cursor` for a listing window, with the bind values in order.
fn window_sql(w: &ListWindow, key: &str) -> (String, Vec<(i64, String)>) {
    let (after_cmp, before_cmp, dir) = match w.order {
        Order::Asc => (">", "<", "ASC"),
        Order::Desc => ("<", ">", "DESC"),
    };
    let mut sql = String::new();
    let mut binds = Vec::new();
    if let Some(p) = &w.after {
        sql.push_str(&format!(
            " AND (created_at {after_cmp} ? OR (created_at = ? AND {key} {after_cmp} ?))"
        ));
        binds.push(p.clone());
    }
    if let Some(p) = &w.before {
        sql.push_str(&format!(
            " AND (created_at {before_cmp} ? OR (created_at = ? AND {key} {before_cmp} ?))"
        ));
        binds.push(p.clone());
    }
    sql.push_str(&format!(" ORDER BY created_at {dir}, {key} {dir} LIMIT ?"));
    (sql, binds)
}

/// A project's live files' bytes (`?` is the project).
pub(crate) const STORED_BYTES: &str =
    "SELECT COALESCE(SUM(bytes), 0) FROM files WHERE project_id = ? AND deleted_at IS NULL";

/// Checks `quota` of `owner` (the project; the store for files per store) against `max`. It
/// runs inside a write transaction, after its first write took SQLite's write lock: what it
/// counts (rows this transaction wrote included) cannot change before the commit. Over the
/// limit, the error drops the transaction, so nothing it wrote remains.
pub(crate) async fn check_quota(
    tx: &mut Tx<'_>,
    quota: Quota,
    owner: &str,
    max: i64,
) -> Result<()> {
    let sql = match quota {
        Quota::StoredBytes => STORED_BYTES,
        Quota::Stores => {
            "SELECT COUNT(*) FROM vector_stores WHERE project_id = ? AND deleted_at IS NULL"
        }
        Quota::FilesPerStore => "SELECT COUNT(*) FROM vector_store_files WHERE vector_store_id = ?",
    };
    let n: i64 = sqlx::query_scalar(sql)
        .bind(owner)
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)?;
    if n > max {
        return Err(Error::QuotaExceeded { quota, limit: max });
    }
    Ok(())
}
