//! The composition root: builds every backend from [`Config`], once, hands each service and
//! worker the seams it uses, and serves. Tests and benches build the same `App`. Nothing else in
//! the crate imports this module.

use anyhow::Context;
use axum::Router;
use std::fs::File;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, BodyLimits};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Role};
use crate::db::{JobQueue, Metadata, Wakeup};
use crate::index::edge::{EdgeIndex, EdgeOptions};
use crate::index::qdrant::QdrantIndex;
use crate::index::VectorIndex;
use crate::ingest::chunk::Chunker;
use crate::ingest::embed::Embedder;
use crate::ingest::local::{LocalEmbedder, LocalOptions};
use crate::ingest::remote::{RemoteConfig, RemoteEmbedder};
use crate::ingest::worker::{spawn_workers, Worker, WorkerDeps};
use crate::ingest::Pipeline;
use crate::service::auth::AuthService;
use crate::service::files::FileLimits;
use crate::service::maintenance::Housekeeper;
use crate::service::{
    EmbeddingService, FileService, SearchService, Services, StoreService, UploadService,
};
use crate::storage::local::LocalStorage;
use crate::storage::s3::S3Storage;
use crate::storage::{FileStorage, Staging};

/// The backends chosen from [`Config`]. Services and workers are handed the pieces they use;
/// tests and benches reach them here.
#[derive(Clone)]
pub struct Backends {
    pub meta: Arc<dyn Metadata>,
    pub queue: Arc<dyn JobQueue>,
    pub storage: Arc<dyn FileStorage>,
    pub staging: Staging,
    pub index: Arc<dyn VectorIndex>,
    pub pipeline: Pipeline,
    pub clock: Arc<dyn Clock>,
    pub wakeup: Wakeup,
    /// No other process can use these backends (local ones, under the data-dir lock), so what
    /// an earlier run left running or half-written is certainly abandoned.
    pub exclusive: bool,
    /// The most tokens one file may hold.
    pub max_file_tokens: usize,
    /// How long a worker's claim on a job lasts without a heartbeat.
    pub lease_secs: i64,
}

impl Backends {
    fn worker_deps(&self) -> WorkerDeps {
        WorkerDeps {
            meta: self.meta.clone(),
            queue: self.queue.clone(),
            storage: self.storage.clone(),
            staging: self.staging.clone(),
            index: self.index.clone(),
            pipeline: self.pipeline.clone(),
            clock: self.clock.clone(),
            max_file_tokens: self.max_file_tokens,
            lease_secs: self.lease_secs,
        }
    }

    /// A worker of the job queue (tests drive one by hand).
    pub fn worker(&self, name: &str) -> Worker {
        Worker::new(self.worker_deps(), name)
    }

    fn housekeeper(&self, config: &Config) -> Housekeeper {
        Housekeeper::new(
            self.meta.clone(),
            self.queue.clone(),
            self.storage.clone(),
            self.staging.clone(),
            self.clock.clone(),
            self.wakeup.clone(),
            self.exclusive,
            config.reaper_interval(),
        )
    }

    fn services(&self, config: &Config) -> Services {
        let auth = AuthService::new(
            self.meta.clone(),
            self.clock.clone(),
            config.open_allowed(),
            config.quotas.quotas(),
        );
        let files = FileService::new(
            self.meta.clone(),
            self.storage.clone(),
            self.staging.clone(),
            self.clock.clone(),
            self.wakeup.clone(),
            FileLimits {
                max_file_bytes: config.max_file_bytes,
                max_part_bytes: config.max_part_bytes,
                max_upload_bytes: config.max_upload_bytes,
                max_batch_file_bytes: config.max_batch_file_bytes,
                batch_file_ttl_secs: config.batch_file_ttl_secs,
                upload_ttl_secs: config.upload_ttl_secs,
            },
            auth.clone(),
        );
        let embedder = self.pipeline.embedder.clone();
        Services {
            uploads: UploadService::new(
                self.meta.clone(),
                self.storage.clone(),
                self.staging.clone(),
                self.clock.clone(),
                files.clone(),
            ),
            files,
            stores: StoreService::new(
                self.meta.clone(),
                self.index.clone(),
                self.clock.clone(),
                self.wakeup.clone(),
                self.pipeline.auto_chunk_tokens(),
                embedder.clone(),
                auth.clone(),
            ),
            search: SearchService::new(
                self.meta.clone(),
                self.index.clone(),
                embedder.clone(),
                self.clock.clone(),
            )
            .with_reranker(self.pipeline.reranker.clone()),
            embeddings: EmbeddingService::new(embedder.clone(), self.clock.now()),
            readiness: crate::service::readiness::ReadinessService::new(
                self.meta.clone(),
                self.storage.clone(),
                self.index.clone(),
                embedder,
            ),
            auth,
            metrics: crate::service::metrics::MetricsService::new(
                self.meta.clone(),
                self.queue.clone(),
                self.index.clone(),
                self.clock.clone(),
            ),
        }
    }
}

pub struct App {
    config: Arc<Config>,
    backends: Backends,
    services: Services,
    rate_limits: Arc<api::gate::RateLimits>,
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
        // Installed before anything is recorded.
        crate::metrics::handle();
        // The local backends live in the data dir, which one process at a time may use.
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

        let wakeup = Wakeup::new();
        let db = crate::db::open(
            config.database_url.as_deref(),
            &dir.join("ragstore.db"),
            Some(wakeup.clone()),
        )
        .await?;
        let storage: Arc<dyn FileStorage> = match &config.storage_url {
            Some(url) => {
                let s3 = S3Storage::open(url)?;
                tracing::info!(url = s3.url(), "file storage: S3");
                Arc::new(s3)
            }
            None => Arc::new(LocalStorage::new(dir.join("blobs"))?),
        };
        let staging = Staging::new(dir.join("tmp"))?;
        let pipeline = build_pipeline(&config, embedder).await?;
        record_collection(&config, &pipeline, db.meta.as_ref(), clock.now()).await?;
        let index = open_index(&config, &pipeline).await?;
        let backends = Backends {
            meta: db.meta,
            queue: db.queue,
            storage,
            staging,
            index,
            pipeline,
            clock,
            wakeup,
            // Under the data-dir lock, on SQLite and local files, no other process can hold a
            // lease or have just written a blob; a shared database or bucket may hold another
            // replica's work in flight.
            exclusive: !db.shared && config.storage_url.is_none(),
            max_file_tokens: config.max_file_tokens,
            lease_secs: config.job_lease_secs,
        };
        backends
            .housekeeper(&config)
            .startup_sweep()
            .await
            .context("start-up sweep")?;
        adopt_points(&backends).await?;
        schedule_keyword_index(&backends).await?;
        let services = backends.services(&config);
        let keys = backends.meta.any_live_key().await?;
        if !config.open_allowed() && !keys {
            anyhow::bail!(
                "refusing to serve on {} without API keys: anyone who can reach it could read \
                 and delete everything. Create a key with `ragstore keys create --project NAME` \
                 (same --data-dir or --database-url), bind a loopback address, or pass --insecure-no-auth",
                config.addr
            );
        }
        if !keys {
            tracing::warn!(
                addr = %config.addr,
                "no API keys: serving without authentication, every request acts for the \
                 default project (create a key with `ragstore keys create --project NAME` and the \
                 same --data-dir or --database-url)"
            );
        }
        let rate_limits = Arc::new(api::gate::RateLimits::new(&config.rate_limits));
        Ok(Self {
            config: Arc::new(config),
            backends,
            services,
            rate_limits,
            _lock: lock,
        })
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    pub fn services(&self) -> &Services {
        &self.services
    }

    pub fn router(&self) -> Router {
        if self.config.role == Role::Worker {
            return api::ops_router(self.services.clone());
        }
        api::router(
            self.services.clone(),
            BodyLimits {
                file: self.config.max_file_bytes,
                part: self.config.max_part_bytes,
            },
            self.rate_limits.clone(),
        )
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish (up to the
    /// configured grace), stops the reaper and the workers, and closes the database.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let reaper = self
            .backends
            .housekeeper(&self.config)
            .spawn_reaper(shutdown.clone());
        let limits = self.rate_limits.clone();
        let forget = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = forget.cancelled() => break,
                    _ = every.tick() => limits.forget_idle(),
                }
            }
        });
        let workers = if self.config.workers_enabled && self.config.role != Role::Api {
            spawn_workers(
                self.backends.worker_deps(),
                self.backends.wakeup.clone(),
                self.config.worker_count(),
                shutdown.clone(),
            )
        } else {
            Vec::new()
        };
        crate::http::serve(
            listener,
            self.router(),
            self.config.http_limits().fit_to_fd_limit(),
            shutdown.clone(),
            self.config.shutdown_grace(),
        )
        .await;
        // Shutdown: the workers and the reaper stop on the same token.
        shutdown.cancel();
        if let Err(e) = reaper.await {
            tracing::warn!(error = %e, "reaper task ended abnormally");
        }
        for w in workers {
            if let Err(e) = w.await {
                tracing::warn!(error = %e, "worker task ended abnormally");
            }
        }
        self.backends.meta.close().await;
        tracing::info!("shut down cleanly");
        Ok(())
    }
}

/// The embedded index's directory under the data dir.
pub(crate) const INDEX_DIR: &str = "index";

/// Records in the database where this model's vectors live (the first start with it), or checks
/// that this start agrees with the record: the same collection and dimensions, and, on the
/// embedded index (one set of vectors in the data dir), the same model. A disagreement (a
/// changed collection prefix, another model over an existing embedded index) stops the start
/// before anything is written, naming both.
async fn record_collection(
    config: &Config,
    pipeline: &Pipeline,
    meta: &dyn crate::db::Metadata,
    now: i64,
) -> anyhow::Result<()> {
    let (model, dims) = (pipeline.embedder.model(), pipeline.embedder.dims());
    let (engine, collection) = match &config.qdrant.url {
        Some(url) => {
            let options = config.qdrant.options(url);
            let name =
                crate::index::qdrant::collection_name(&options.collection_prefix, model, dims);
            ("qdrant", name)
        }
        None => ("embedded", INDEX_DIR.to_owned()),
    };
    if engine == "embedded" {
        let recorded = meta.index_collections().await?;
        if let Some(other) = recorded
            .iter()
            .find(|c| c.engine == engine && c.model != model)
        {
            anyhow::bail!(
                "the embedded index in {} holds the vectors of model {} ({} dimensions), as the \
                 database records; this server embeds with {model}: searches would compare \
                 vectors of two models. Start with {}, or use another data dir (and \
                 re-attach the files there to embed them with {model})",
                config.data_dir.join(INDEX_DIR).display(),
                other.model,
                other.dims,
                other.model
            );
        }
    }
    let want = crate::domain::IndexCollection {
        engine: engine.to_owned(),
        model: model.to_owned(),
        collection,
        dims: u32::try_from(dims).context("embedding dimensions")?,
        created_at: now,
    };
    let held = meta.record_collection(&want).await?;
    if held.collection != want.collection || held.dims != want.dims {
        anyhow::bail!(
            "the database records the vectors of model {model} on the {engine} index in \
             collection {} ({} dimensions); this start would use {} ({} dimensions). Start \
             with the settings that wrote them (the Qdrant collection prefix), or copy the \
             collection with `ragstore migrate-index`",
            held.collection,
            held.dims,
            want.collection,
            want.dims
        );
    }
    Ok(())
}

/// The vector index: the Qdrant server of `--qdrant-url` (the collection of the embedding
/// model), or the embedded one in the data dir.
async fn open_index(config: &Config, pipeline: &Pipeline) -> anyhow::Result<Arc<dyn VectorIndex>> {
    let dims = pipeline.embedder.dims();
    if let Some(url) = &config.qdrant.url {
        let options = config.qdrant.options(url);
        let index = QdrantIndex::open(&options, pipeline.embedder.model(), dims)
            .await
            .with_context(|| format!("opening the vector index on the Qdrant server {url}"))?;
        tracing::info!(
            url,
            collection = index.collection(),
            "vectors in a Qdrant server"
        );
        return Ok(Arc::new(index));
    }
    let index_dir = config.data_dir.join(INDEX_DIR);
    let options = EdgeOptions {
        maintain_every: (config.index_upkeep_secs > 0.0)
            .then(|| std::time::Duration::from_secs_f64(config.index_upkeep_secs)),
        ..EdgeOptions::default()
    };
    let index =
        tokio::task::spawn_blocking(move || EdgeIndex::open_with(&index_dir, dims, options))
            .await
            .context("opening the vector index")??;
    Ok(Arc::new(index))
}

/// Marks points written before the index recorded projects with their store's project (a
/// search filters on it). Cheap once done: a count per store.
async fn adopt_points(backends: &Backends) -> anyhow::Result<()> {
    let mut adopted = 0;
    for (store, project) in backends.meta.live_stores().await? {
        adopted += backends.index.adopt_store(&store, &project).await?;
    }
    if adopted > 0 {
        tracing::info!(
            points = adopted,
            "marked index points with their store's project"
        );
    }
    Ok(())
}

/// Queues a keyword job for each store with points written before keyword vectors existed (or
/// whose job a crash interrupted): searches work throughout, their keyword leg seeing those
/// points once the job has reached them. Cheap once done: a count per store.
async fn schedule_keyword_index(backends: &Backends) -> anyhow::Result<()> {
    let now = backends.clock.now();
    let mut queued = 0;
    for (store, project) in backends.meta.live_stores().await? {
        if backends.index.missing_keywords(&store).await? > 0
            && backends
                .meta
                .enqueue_keyword_index(&store, &project, now)
                .await?
        {
            queued += 1;
        }
    }
    if queued > 0 {
        tracing::info!(stores = queued, "queued keyword indexing of older points");
    }
    Ok(())
}

/// The embedder (local model, or a remote endpoint) and the chunker that sizes chunks as the
/// embedder counts tokens.
async fn build_pipeline(
    config: &Config,
    given: Option<Arc<dyn Embedder>>,
) -> anyhow::Result<Pipeline> {
    let embedder: Arc<dyn Embedder> = match (given, &config.embedding_url) {
        (Some(e), _) => e,
        (None, Some(url)) => {
            let mut remote = RemoteConfig::new(url.clone(), config.embedding_model.clone());
            remote.api_key = config.embedding_api_key.clone();
            remote.max_input_tokens = config.embedding_max_tokens;
            Arc::new(RemoteEmbedder::new(remote).await?)
        }
        (None, None) => {
            let models = config.models_dir.clone();
            let threads = config.embed_thread_count();
            let options = LocalOptions::for_precision(threads, config.embedding_precision);
            Arc::new(
                tokio::task::spawn_blocking(move || LocalEmbedder::load_options(&models, &options))
                    .await??,
            )
        }
    };
    let reranker = match &config.reranker_model {
        Some(dir) => {
            let (dir, models) = (dir.clone(), config.models_dir.clone());
            let threads = config.embed_thread_count();
            let reranker = tokio::task::spawn_blocking(move || {
                crate::ingest::rerank::Reranker::load(&dir, &models, threads)
            })
            .await??;
            tracing::info!(
                model = reranker.name(),
                "reranker loaded: ranker 'rerank' is available"
            );
            Some(Arc::new(reranker))
        }
        None => None,
    };
    Ok(Pipeline {
        chunker: Arc::new(Chunker::new(embedder.tokens())),
        embedder,
        reranker,
    })
}
