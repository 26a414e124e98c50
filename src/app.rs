//! Builds every backend from [`Config`], once, and serves. Tests build the same `App`.

use anyhow::Context;
use axum::Router;
use std::fs::File;
use std::future::IntoFuture;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::sqlite::SqliteMetadata;
use crate::db::Metadata;
use crate::service::maintenance;
use crate::storage::local::LocalStorage;
use crate::storage::{FileStorage, Staging};

/// What every handler and service gets: the configuration and the seams, as trait objects.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub meta: Arc<dyn Metadata>,
    pub storage: Arc<dyn FileStorage>,
    pub staging: Staging,
    pub clock: Arc<dyn Clock>,
}

pub struct App {
    state: AppState,
    /// Held for the life of the process: one server per data dir.
    _lock: File,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        let lock = File::create(dir.join("ragstore.lock"))
            .with_context(|| format!("creating lock file in {}", dir.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "data dir {} is in use by another ragstore process",
                dir.display()
            )
        })?;

        let meta = SqliteMetadata::open(&dir.join("ragstore.db")).await?;
        let storage = LocalStorage::new(dir.join("blobs"))?;
        let staging = Staging::new(dir.join("tmp"))?;
        let state = AppState {
            config: Arc::new(config),
            meta: Arc::new(meta),
            storage: Arc::new(storage),
            staging,
            clock,
        };
        maintenance::startup_sweep(&state)
            .await
            .context("start-up sweep")?;
        Ok(Self { state, _lock: lock })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn router(&self) -> Router {
        crate::api::router(self.state.clone())
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish (up to the
    /// configured grace), stops the reaper and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let reaper = maintenance::spawn_reaper(self.state.clone(), shutdown.clone());
        let server = axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result.context("HTTP server")?,
            _ = shutdown.cancelled() => {
                match tokio::time::timeout(self.state.config.shutdown_grace(), &mut server).await {
                    Ok(result) => result.context("HTTP server")?,
                    Err(_) => tracing::warn!("in-flight requests did not finish within the shutdown grace; stopping anyway"),
                }
            }
        }
        if let Err(e) = reaper.await {
            tracing::warn!(error = %e, "reaper task ended abnormally");
        }
        self.state.meta.close().await;
        tracing::info!("shut down cleanly");
        Ok(())
    }
}
