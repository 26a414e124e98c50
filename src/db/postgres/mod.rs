//! [`Metadata`](super::Metadata) and [`JobQueue`](super::JobQueue) on PostgreSQL, for several
//! replicas sharing one database (`--database-url postgres://…`).
//!
//! Every method is one transaction at PostgreSQL's default isolation, READ COMMITTED, and the
//! promises that SQLite keeps by having one writer are kept here by locking the row that owns
//! what is counted or checked, before counting or checking it. Each statement of a READ
//! COMMITTED transaction sees what committed before it started, so once the lock is held the
//! count includes every racing writer that went first, and the ones that come after wait:
//!
//! - the project row (`FOR NO KEY UPDATE`) before its stored bytes or its stores are counted
//!   (`insert_file`, `complete_upload`, `create_vector_store`): two uploads racing for the last
//!   bytes of a quota are checked one after the other. `NO KEY` so that inserts that merely
//!   reference the project (their foreign key takes `FOR KEY SHARE`) never wait for it;
//! - the store row (`FOR NO KEY UPDATE`) before a file is attached to it (`attach_file`,
//!   `create_batch`): files per store are counted one attach at a time, and a store delete
//!   (an `UPDATE` of that row) either waits for the attach and then removes its link, or goes
//!   first and the attach finds the store gone;
//! - the file row (`FOR SHARE`) before it is linked to a store or its caches are written: a
//!   file delete waits for the link (then removes it) or goes first (the lock's re-check of
//!   `deleted_at IS NULL` then finds no row). Shared, so one file attaches to many stores at
//!   once;
//! - the upload row (`FOR NO KEY UPDATE`) before its parts are summed (`insert_part`): racing
//!   parts, the completion and the cancellation of one upload take turns.
//!
//! Two promises have no row to lock, and take a transaction-scoped advisory lock instead:
//! a claim (whether a job waits for another is read from other rows, so two claims that each
//! see the other's job still queued could both start: claims take turns, each one short, and
//! `FOR UPDATE SKIP LOCKED` keeps them from waiting on rows other transactions hold), and an
//! upload session's bucket key (which may have no row yet). One live keyword-indexing job per
//! store is a partial unique index. Locks are taken in one order (upload, then project; store,
//! then file; jobs in id order, then the vector-store files they concern), so these
//! transactions do not deadlock one another; a deadlock or serialization failure PostgreSQL
//! reports anyway is classified transient, like a lost connection, and the caller's retry (a
//! job's backoff, a client's) runs it again.
//!
//! Migrations run at start-up through sqlx's migrator, which holds a PostgreSQL advisory lock
//! (`pg_advisory_lock`, keyed by the database's name) while it creates its table and applies
//! what is missing: replicas starting together apply each migration once, the others wait and
//! then find nothing to do. Jobs written queued (or put back in the queue) notify
//! `ragstore_jobs` from a trigger, inside the transaction that writes them; [`listen`] wakes
//! this process's workers on each notification.

mod auth;
mod caches;
mod files;
mod jobs;
mod listen;
mod stores;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Transaction};
use std::str::FromStr;
use std::time::Duration;

use super::{ListWindow, Wakeup};
use crate::domain::{Error, JobFilter, NewJob, Order, Quota, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

type Tx<'a> = Transaction<'a, Postgres>;

/// Connections each process keeps at most (the listener's is apart).
const MAX_CONNECTIONS: u32 = 16;

/// The first key of ragstore's two-key advisory locks (sqlx's migrator uses the one-key form,
/// a separate space); the second names what is locked.
const LOCK_SPACE_CLAIMS: i32 = 0x7261_6701;
const LOCK_SPACE_SESSIONS: i32 = 0x7261_6702;

pub struct PgMetadata {
    pool: PgPool,
    listener: Option<listen::Listener>,
}

impl PgMetadata {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and applies the
    /// migrations this build has and the database lacks. With `wakeup` (a server's, whose
    /// workers wait on it), listens for jobs written by any process and wakes it for each.
    pub async fn connect(url: &str, wakeup: Option<Wakeup>) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid PostgreSQL URL: {e}"))?;
        let options = match options.get_application_name() {
            Some(_) => options,
            None => options.application_name("ragstore"),
        };
        // Named without the password, which the URL may hold.
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        );
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("connecting to PostgreSQL at {target}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("running PostgreSQL migrations on {target}"))?;
        let listener = match wakeup {
            Some(wakeup) => Some(
                listen::Listener::start(options, wakeup)
                    .await
                    .with_context(|| format!("listening for jobs on PostgreSQL at {target}"))?,
            ),
            None => None,
        };
        Ok(Self { pool, listener })
    }
}

/// A database error, classified by its SQLSTATE: what may pass (a lost or refused connection,
/// a deadlock or serialization failure, a server shutting down or out of resources, a
/// cancelled statement, a read-only server during a fail-over) is transient; the rest (a broken
/// constraint, a malformed query, unexpected data) would happen again.
pub(crate) fn db_err(e: sqlx::Error) -> Error {
    let transient = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // 53100 disk_full
            if code == "53100" {
                return Error::out_of_space(format!("metadata database: {e}"));
            }
            transient_sqlstate(&code)
        }
        _ => false,
    };
    let e = anyhow::Error::new(e).context("metadata database");
    if transient {
        Error::Unavailable(e)
    } else {
        Error::Internal(e)
    }
}

fn transient_sqlstate(code: &str) -> bool {
    matches!(
        code.get(..2),
        // connection exception, insufficient resources, operator intervention (shutdown,
        // statement cancelled), system error (I/O)
        Some("08" | "53" | "57" | "58")
    ) || matches!(
        code,
        // serialization_failure, deadlock_detected, lock_not_available, read_only_sql_transaction
        "40001" | "40P01" | "55P03" | "25006"
    )
}

async fn insert_job(tx: &mut Tx<'_>, job: &NewJob, now: i64) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO jobs (kind, project_id, file_id, vector_store_id, status, run_after, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'queued', $5, $5, $5) RETURNING id",
    )
    .bind(job.kind.as_str())
    .bind(job.project_id.as_str())
    .bind(job.file_id.as_ref().map(|f| f.as_str()))
    .bind(job.vector_store_id.as_ref().map(|v| v.as_str()))
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(db_err)
}

/// A cancelled job: a queued one is done with, a running one is stopping (still leased) until
/// its worker releases it.
const CANCEL_STATUS: &str = "CASE status WHEN 'running' THEN 'stopping' ELSE 'cancelled' END";

/// The kinds as a text array parameter.
fn kind_names(kinds: &[crate::domain::JobKind]) -> Vec<&'static str> {
    kinds.iter().map(|k| k.as_str()).collect()
}

/// Cancels the live jobs `filter` selects.
///
/// Transactions that change several jobs lock them in id order, and change jobs before the
/// vector-store files they concern (as a job's finish does: its row, then its file's): two
/// such transactions never hold what the other waits for.
async fn cancel_jobs(tx: &mut Tx<'_>, filter: &JobFilter, now: i64) -> Result<()> {
    if filter.kinds.is_empty() {
        return Ok(());
    }
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "UPDATE jobs SET status = {CANCEL_STATUS}, updated_at = "
    ));
    q.push_bind(now)
        .push(" WHERE id IN (SELECT id FROM jobs WHERE status IN ('queued', 'running') AND kind = ANY(")
        .push_bind(kind_names(&filter.kinds))
        .push(")");
    if let Some(f) = &filter.file_id {
        q.push(" AND file_id = ").push_bind(f.as_str());
    }
    if let Some(s) = &filter.vector_store_id {
        q.push(" AND vector_store_id = ").push_bind(s.as_str());
    }
    q.push(" ORDER BY id FOR UPDATE)");
    q.build().execute(&mut **tx).await.map_err(db_err)?;
    Ok(())
}

/// Appends the cursor conditions, order and limit of a listing window on `(created_at, key)`.
fn push_window<'a>(q: &mut QueryBuilder<'a, Postgres>, w: &'a ListWindow, key: &str) {
    let (after_cmp, before_cmp, dir) = match w.order {
        Order::Asc => (">", "<", "ASC"),
        Order::Desc => ("<", ">", "DESC"),
    };
    for (cursor, cmp) in [(&w.after, after_cmp), (&w.before, before_cmp)] {
        if let Some((created_at, id)) = cursor {
            q.push(format!(" AND (created_at, {key}) {cmp} ("))
                .push_bind(*created_at)
                .push(", ")
                .push_bind(id.as_str())
                .push(")");
        }
    }
    q.push(format!(" ORDER BY created_at {dir}, {key} {dir} LIMIT "))
        .push_bind(i64::from(w.limit));
}

/// A project's live files' bytes (`$1` is the project).
const STORED_BYTES: &str = "SELECT COALESCE(SUM(bytes), 0)::BIGINT FROM files \
     WHERE project_id = $1 AND deleted_at IS NULL";

/// Locks the project's row until the transaction ends, so that writers of what its quotas
/// count (stored bytes, stores) take turns. `FOR NO KEY UPDATE`: inserts that only reference
/// the project (their foreign key takes `FOR KEY SHARE`) do not wait for it.
async fn lock_project(tx: &mut Tx<'_>, project: &str) -> Result<()> {
    sqlx::query("SELECT 1 FROM projects WHERE id = $1 FOR NO KEY UPDATE")
        .bind(project)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Checks `quota` of `owner` against `max`, counting what this transaction wrote. Its owner's
/// row (the project's, or the store's for files per store) must be locked since before those
/// writes. Over the limit, the error
/// drops the transaction, so nothing it wrote remains.
async fn check_quota(tx: &mut Tx<'_>, quota: Quota, owner: &str, max: i64) -> Result<()> {
    let sql = match quota {
        Quota::StoredBytes => STORED_BYTES,
        Quota::Stores => {
            "SELECT COUNT(*) FROM vector_stores WHERE project_id = $1 AND deleted_at IS NULL"
        }
        Quota::FilesPerStore => {
            "SELECT COUNT(*) FROM vector_store_files WHERE vector_store_id = $1"
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn what_may_pass_is_transient() {
        for code in [
            "08006", "08001", "40001", "40P01", "55P03", "25006", "53300", "57P01", "57014",
            "58030",
        ] {
            assert!(super::transient_sqlstate(code), "{code}");
        }
        // A broken constraint, a missing table, bad data: they would happen again.
        for code in ["23505", "23503", "42P01", "22P02", "XX000", ""] {
            assert!(!super::transient_sqlstate(code), "{code}");
        }
    }
}
