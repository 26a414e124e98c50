//! Wakes this process's workers when any process writes a runnable job: `LISTEN ragstore_jobs`
//! on a connection of its own (the jobs table's triggers notify on commit), one
//! [`Wakeup::wake`] per notification. A lost connection is re-established; whatever was
//! notified meanwhile is lost with it, so every reconnection wakes a worker too, which then
//! claims whatever is waiting.

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use std::time::Duration;
use tokio::task::JoinHandle;

use crate::db::Wakeup;

/// The channel the jobs table's triggers notify (migrations/postgres/0002_vector_stores.sql).
pub(super) const CHANNEL: &str = "ragstore_jobs";

/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub(super) struct Listener {
    pool: PgPool,
    task: JoinHandle<()>,
}

impl Listener {
    /// Listens before it returns: a job written after this is never missed.
    pub(super) async fn start(options: PgConnectOptions, wakeup: Wakeup) -> sqlx::Result<Self> {
        // Its own pool of one connection (the one that listens), so it never takes one from
        // the queries' pool and reconnects with the same options.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(10))
            .connect_lazy_with(options);
        let listener = subscribe(&pool).await?;
        let task = tokio::spawn(run(pool.clone(), listener, wakeup));
        Ok(Self { pool, task })
    }

    pub(super) async fn stop(&self) {
        self.task.abort();
        self.pool.close().await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn subscribe(pool: &PgPool) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

async fn run(pool: PgPool, mut listener: PgListener, wakeup: Wakeup) {
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => wakeup.wake(),
            // The connection dropped and sqlx has already listened again on a new one.
            Ok(None) => {
                tracing::warn!("job notifications: connection lost, listening again");
                wakeup.wake();
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "job notifications: connection failed");
                // Start over on a fresh connection rather than trust the old one's state.
                drop(listener);
                listener = resubscribe(&pool).await;
                wakeup.wake();
            }
        }
    }
}

/// Subscribes again, waiting longer after each failure (up to [`MAX_BACKOFF`]); until then
/// the workers still poll.
async fn resubscribe(pool: &PgPool) -> PgListener {
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::time::sleep(backoff).await;
        match subscribe(pool).await {
            Ok(listener) => {
                tracing::info!("job notifications: listening again");
                return listener;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "job notifications: cannot listen");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
