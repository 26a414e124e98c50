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
use crate::index::edge::EdgeIndex;
use crate::index::VectorIndex;
use crate::ingest::chunk::Chunker;
use crate::ingest::embed::Embedder;
use crate::ingest::local::LocalEmbedder;
use crate::ingest::remote::{RemoteConfig, RemoteEmbedder};
use crate::ingest::worker::spawn_workers;
use crate::ingest::Pipeline;
use crate::service::maintenance;
use crate::storage::local::LocalStorage;
use crate::storage::{FileStorage, Staging};
use tokio::sync::Notify;

/// What every handler and service gets: the configuration and the seams, as trait objects.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub meta: Arc<dyn Metadata>,
    pub storage: Arc<dyn FileStorage>,
    pub staging: Staging,
    pub index: Arc<dyn VectorIndex>,
    pub pipeline: Pipeline,
    pub clock: Arc<dyn Clock>,
    /// Wakes a worker when a job is enqueued.
    pub jobs_notify: Arc<Notify>,
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
        Self::build_custom(config, clock, None).await
    }

    /// With a given embedder instead of the configured one (tests count its calls).
    pub async fn build_custom(
        config: Config,
        clock: Arc<dyn Clock>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> anyhow::Result<Self> {
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
        let pipeline = build_pipeline(&config, embedder).await?;
        let dims = pipeline.embedder.dims();
        let index_dir = dir.join("index");
        let index = tokio::task::spawn_blocking(move || EdgeIndex::open(&index_dir, dims))
            .await
            .context("opening the vector index")??;
        let state = AppState {
            config: Arc::new(config),
            meta: Arc::new(meta),
            storage: Arc::new(storage),
            staging,
            index: Arc::new(index),
            pipeline,
            clock,
            jobs_notify: Arc::new(Notify::new()),
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
        let maintainer = maintenance::spawn_index_maintainer(
            self.state.clone(),
            std::time::Duration::from_secs(30),
            shutdown.clone(),
        );
        let workers = if self.state.config.workers_enabled {
            spawn_workers(
                self.state.clone(),
                self.state.config.worker_count(),
                shutdown.clone(),
            )
        } else {
            Vec::new()
        };
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
        if let Err(e) = maintainer.await {
            tracing::warn!(error = %e, "index maintenance task ended abnormally");
        }
        if let Err(e) = reaper.await {
            tracing::warn!(error = %e, "reaper task ended abnormally");
        }
        for w in workers {
            if let Err(e) = w.await {
                tracing::warn!(error = %e, "worker task ended abnormally");
            }
        }
        if let Err(e) = self.state.index.flush().await {
            tracing::error!(error = ?e, "could not flush the vector index");
        }
        self.state.meta.close().await;
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// The embedder (local model, or a remote endpoint) and the chunker (the local tokenizer).
async fn build_pipeline(
    config: &Config,
    given: Option<Arc<dyn Embedder>>,
) -> anyhow::Result<Pipeline> {
    let models = config.models_dir.clone();
    let tokenizer = models.join("all-MiniLM-L6-v2").join("tokenizer.json");
    let chunker = Chunker::from_tokenizer_file(&tokenizer).map_err(|e| {
        anyhow::anyhow!(
            "{e}: the tokenizer is missing from {}; run scripts/fetch-models.sh",
            models.display()
        )
    })?;
    let embedder: Arc<dyn Embedder> = match (given, &config.embedding_url) {
        (Some(e), _) => e,
        (None, Some(url)) => {
            let mut remote = RemoteConfig::new(url.clone(), config.embedding_model.clone());
            remote.api_key = config.embedding_api_key.clone();
            remote.max_input_tokens = config.embedding_max_tokens;
            Arc::new(RemoteEmbedder::new(remote).await?)
        }
        (None, None) => {
            let threads = config.embed_thread_count();
            Arc::new(
                tokio::task::spawn_blocking(move || LocalEmbedder::load(&models, threads))
                    .await??,
            )
        }
    };
    Ok(Pipeline {
        embedder,
        chunker: Arc::new(chunker),
    })
}
