//! The one typed configuration. Flags and `RAGSTORE_*` environment variables are read here and
//! nowhere else.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "ragstore",
    version,
    about = "Self-hosted, OpenAI-compatible Files, Uploads and Vector Stores server",
    long_about = "ragstore serves OpenAI's /v1/files and /v1/uploads APIs (and, for llama-stack \
                  clients, the same routes under /v1/openai/v1) from a single binary. By default \
                  everything lives under one data directory: a SQLite database and the file blobs.\n\n\
                  Every flag can also be set with the environment variable shown next to it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server until SIGINT or SIGTERM.
    Serve(Box<Config>),
    /// Search a vector store of a running server; prints readable hits.
    Search(crate::cli::SearchArgs),
    /// Upload files and directories into a vector store of a running server, with progress;
    /// run again, it skips the files the store already holds.
    Ingest(crate::cli::IngestArgs),
    /// Manage API keys (in the database of --data-dir, or --database-url).
    #[command(subcommand)]
    Keys(crate::admin::KeysCommand),
    /// List projects and set their quotas.
    #[command(subcommand)]
    Projects(crate::admin::ProjectsCommand),
    /// Copy the vector index to a Qdrant server (or back into the data dir) without
    /// re-embedding; run again to resume an interrupted copy.
    MigrateIndex(crate::admin::MigrateIndexArgs),
}

/// What one `ragstore serve` process does. Replicas sharing PostgreSQL, a bucket and a Qdrant
/// server can split the work: API replicas answer clients (and embed search queries), workers
/// run the ingestion jobs (the expensive part) and scale on their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP API and the ingestion workers.
    All,
    /// The HTTP API only: jobs are enqueued here and run by workers.
    Api,
    /// Ingestion workers only; HTTP serves nothing but /health, /ready and /metrics.
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything the server needs to start. Tests build it with [`Config::for_data_dir`].
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RAGSTORE_ADDR", default_value = "127.0.0.1:8321")]
    pub addr: SocketAddr,

    /// Directory holding the SQLite database, file blobs and temporary uploads. Created if missing.
    #[arg(long, env = "RAGSTORE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// PostgreSQL database for the metadata and the job queue, which replicas can share
    /// (postgres://user:password@host:5432/database); unset = SQLite in --data-dir.
    #[arg(long, env = "RAGSTORE_DATABASE_URL", hide_env_values = true, value_parser = parse_database_url)]
    pub database_url: Option<String>,

    /// What this process does: all (API and ingestion workers), api (no workers) or worker
    /// (ingestion only; HTTP serves /health, /ready and /metrics).
    #[arg(long, env = "RAGSTORE_ROLE", value_enum, default_value = "all")]
    pub role: Role,

    /// Where file bytes live: unset, under the data dir; `s3://bucket/prefix` for an
    /// S3-compatible bucket (endpoint, region and credentials from the usual AWS_* variables,
    /// AWS_ENDPOINT_URL for MinIO and other S3-compatible stores).
    #[arg(long, env = "RAGSTORE_STORAGE_URL")]
    pub storage_url: Option<String>,

    /// Largest file accepted by POST /v1/files (e.g. 512MiB, 1GB, 1048576).
    #[arg(long, env = "RAGSTORE_MAX_FILE_BYTES", default_value = "512MiB", value_parser = parse_bytes)]
    pub max_file_bytes: u64,

    /// Largest single part accepted by POST /v1/uploads/{id}/parts.
    #[arg(long, env = "RAGSTORE_MAX_PART_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub max_part_bytes: u64,

    /// Largest total size an Upload may declare.
    #[arg(long, env = "RAGSTORE_MAX_UPLOAD_BYTES", default_value = "8GiB", value_parser = parse_bytes)]
    pub max_upload_bytes: u64,

    /// Largest file accepted with purpose=batch (it must also be valid JSONL).
    #[arg(long, env = "RAGSTORE_MAX_BATCH_FILE_BYTES", default_value = "200MiB", value_parser = parse_bytes)]
    pub max_batch_file_bytes: u64,

    /// Default lifetime of purpose=batch files without expires_after, in seconds (0 = never expire).
    #[arg(long, env = "RAGSTORE_BATCH_FILE_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub batch_file_ttl_secs: i64,

    /// How long an Upload accepts parts before it expires, in seconds.
    #[arg(long, env = "RAGSTORE_UPLOAD_TTL_SECS", default_value_t = 3600)]
    pub upload_ttl_secs: i64,

    /// How often the reaper removes expired files and uploads, in seconds.
    #[arg(long, env = "RAGSTORE_REAPER_INTERVAL_SECS", default_value_t = 60.0)]
    pub reaper_interval_secs: f64,

    /// How long a replica's claim on an ingestion job lasts, in seconds, renewed every quarter
    /// of it while the job runs. A replica that dies mid-job holds it until then; after that
    /// (and the next reaper pass) another replica runs it again from the start.
    #[arg(long, env = "RAGSTORE_JOB_LEASE_SECS", default_value_t = crate::ingest::worker::LEASE_SECS, value_parser = clap::value_parser!(i64).range(2..))]
    pub job_lease_secs: i64,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, in seconds.
    #[arg(long, env = "RAGSTORE_SHUTDOWN_GRACE_SECS", default_value_t = 30.0)]
    pub shutdown_grace_secs: f64,

    /// Connections served at once; more are answered 503 (retry-after: 1) and closed. Lowered
    /// at start if the open-file limit cannot hold them.
    #[arg(long, env = "RAGSTORE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Seconds a client has to send a request's headers; also how long an idle keep-alive
    /// connection is kept open.
    #[arg(long, env = "RAGSTORE_HEADER_TIMEOUT_SECS", default_value_t = 30.0)]
    pub header_timeout_secs: f64,

    /// Seconds a request body may stall between two reads, and a response on a client that
    /// stopped reading it, before the connection is dropped.
    #[arg(long, env = "RAGSTORE_BODY_TIMEOUT_SECS", default_value_t = 60.0)]
    pub body_timeout_secs: f64,

    /// Directory holding the embedding model and the ONNX Runtime library
    /// (fetched by scripts/fetch-models.sh).
    #[arg(long, env = "RAGSTORE_MODELS_DIR", default_value = "./models")]
    pub models_dir: PathBuf,

    /// Ingestion jobs run at once. They take turns on the embedding model batch by batch, so a
    /// small file attached after a huge one does not wait for it; searches go before them.
    #[arg(long, env = "RAGSTORE_WORKERS", default_value_t = 4)]
    pub workers: usize,

    /// Concurrent runs of the local embedding model (one thread each); 0 = one per CPU core.
    #[arg(long, env = "RAGSTORE_EMBED_THREADS", default_value_t = 0)]
    pub embed_threads: usize,

    /// Which build of the local model runs: int8 (model_int8.onnx, about twice as fast, ranks
    /// as well on the retrieval evaluation) or fp32 (model.onnx, vectors exact to the
    /// reference sentence-transformers model).
    #[arg(
        long,
        env = "RAGSTORE_EMBEDDING_PRECISION",
        value_enum,
        default_value = "int8"
    )]
    pub embedding_precision: crate::ingest::local::Precision,

    /// A cross-encoder in ONNX (a directory with model.onnx and its tokenizer.json, config.json,
    /// special_tokens_map.json, tokenizer_config.json) that re-scores a search's top candidates
    /// when it asks for `ranking_options.ranker: "rerank"`. Bring your own, e.g. an ONNX export
    /// of cross-encoder/ms-marco-MiniLM-L-6-v2; without one that ranker is a 400.
    #[arg(long, env = "RAGSTORE_RERANKER_MODEL")]
    pub reranker_model: Option<PathBuf>,

    /// Use an OpenAI-compatible embeddings endpoint (e.g. http://host:8000/v1) instead of the
    /// local model.
    #[arg(long, env = "RAGSTORE_EMBEDDING_URL")]
    pub embedding_url: Option<String>,

    /// Model name sent to --embedding-url.
    #[arg(
        long,
        env = "RAGSTORE_EMBEDDING_MODEL",
        default_value = "all-MiniLM-L6-v2"
    )]
    pub embedding_model: String,

    /// Bearer key for --embedding-url.
    #[arg(long, env = "RAGSTORE_EMBEDDING_API_KEY", hide_env_values = true)]
    pub embedding_api_key: Option<String>,

    /// Window (tokens) of the remote model; `auto` chunking fits inside it.
    #[arg(long, env = "RAGSTORE_EMBEDDING_MAX_TOKENS", default_value_t = 256)]
    pub embedding_max_tokens: usize,

    /// How often the vector index does its upkeep (builds HNSW graphs once enough points
    /// changed), in seconds; 0 = never by itself.
    #[arg(long, env = "RAGSTORE_INDEX_UPKEEP_SECS", default_value_t = 30.0)]
    pub index_upkeep_secs: f64,

    /// The most tokens of text one file may hold in a vector store (OpenAI's limit for
    /// file_search is 2,000,000); a longer file fails with invalid_file.
    #[arg(long, env = "RAGSTORE_MAX_FILE_TOKENS", default_value_t = 2_000_000)]
    pub max_file_tokens: usize,

    /// Run ingestion workers inside the server (tests turn this off to drive the queue by hand).
    #[arg(skip = true)]
    pub workers_enabled: bool,

    /// Log line format.
    #[arg(long, env = "RAGSTORE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Serve without API keys on a non-loopback address. Without it, a server whose database
    /// holds no API key only starts on a loopback address (127.0.0.1, ::1).
    #[arg(long, env = "RAGSTORE_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,

    #[command(flatten)]
    pub quotas: QuotaArgs,

    #[command(flatten)]
    pub rate_limits: RateLimitArgs,

    #[command(flatten)]
    pub qdrant: QdrantArgs,
}

/// A Qdrant server for the vectors, instead of the embedded index in the data dir.
#[derive(Debug, Clone, Args)]
pub struct QdrantArgs {
    /// Keep vectors in the Qdrant server at this gRPC URL (e.g. http://127.0.0.1:6334) instead
    /// of the embedded index in the data dir.
    #[arg(long = "qdrant-url", env = "RAGSTORE_QDRANT_URL")]
    pub url: Option<String>,
    /// API key of the Qdrant server.
    #[arg(
        long = "qdrant-api-key",
        env = "RAGSTORE_QDRANT_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// Shards of a new collection (default: the server's).
    #[arg(long = "qdrant-shards", env = "RAGSTORE_QDRANT_SHARDS")]
    pub shards: Option<u32>,
    /// Copies of each shard in a new collection (default: the server's).
    #[arg(
        long = "qdrant-replication-factor",
        env = "RAGSTORE_QDRANT_REPLICATION_FACTOR"
    )]
    pub replication_factor: Option<u32>,
    /// Copies a write must reach before it is acknowledged, in a new collection (default: the
    /// server's, 1).
    #[arg(
        long = "qdrant-write-consistency",
        env = "RAGSTORE_QDRANT_WRITE_CONSISTENCY"
    )]
    pub write_consistency: Option<u32>,
    /// Collections are named PREFIX_MODEL_DIMENSIONS.
    #[arg(
        long = "qdrant-collection-prefix",
        env = "RAGSTORE_QDRANT_COLLECTION_PREFIX",
        default_value = "ragstore"
    )]
    pub collection_prefix: String,
}

impl QdrantArgs {
    /// How to reach the server at `url`, and how to lay out a new collection.
    pub fn options(&self, url: &str) -> crate::index::qdrant::QdrantOptions {
        crate::index::qdrant::QdrantOptions {
            api_key: self.api_key.clone(),
            collection_prefix: self.collection_prefix.clone(),
            shard_number: self.shards,
            replication_factor: self.replication_factor,
            write_consistency_factor: self.write_consistency,
            ..crate::index::qdrant::QdrantOptions::new(url)
        }
    }
}

/// Default quotas of every project (`ragstore projects set-quota` overrides them per project).
#[derive(Debug, Clone, Args)]
pub struct QuotaArgs {
    /// Bytes of files a project may store (OpenAI's per-project figure is 2.5 TB).
    #[arg(long = "quota-stored-bytes", env = "RAGSTORE_QUOTA_STORED_BYTES", default_value = "2500GB", value_parser = parse_bytes)]
    pub stored_bytes: u64,
    /// Files one vector store may hold.
    #[arg(
        long = "quota-files-per-store",
        env = "RAGSTORE_QUOTA_FILES_PER_STORE",
        default_value_t = 10_000
    )]
    pub files_per_store: u64,
    /// Vector stores a project may hold.
    #[arg(
        long = "quota-stores",
        env = "RAGSTORE_QUOTA_STORES",
        default_value_t = 10_000
    )]
    pub stores: u64,
}

impl QuotaArgs {
    pub fn quotas(&self) -> crate::domain::Quotas {
        let i = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        crate::domain::Quotas {
            stored_bytes: i(self.stored_bytes),
            files_per_store: i(self.files_per_store),
            stores: i(self.stores),
        }
    }
}

/// Requests per minute each API key may make, by kind (0 = no limit). The first three are the
/// llama-stack Files defaults.
#[derive(Debug, Clone, Args)]
pub struct RateLimitArgs {
    /// File uploads: POST /v1/files, POST /v1/uploads, upload sessions.
    #[arg(
        long = "rate-uploads",
        env = "RAGSTORE_RATE_UPLOADS",
        default_value_t = 100
    )]
    pub uploads: u32,
    /// Reads of files: GET /v1/files, /v1/files/{id}, /v1/files/{id}/content.
    #[arg(
        long = "rate-retrievals",
        env = "RAGSTORE_RATE_RETRIEVALS",
        default_value_t = 1000
    )]
    pub retrievals: u32,
    /// Deletions (DELETE on any route).
    #[arg(
        long = "rate-deletions",
        env = "RAGSTORE_RATE_DELETIONS",
        default_value_t = 100
    )]
    pub deletions: u32,
    /// Searches: POST /v1/vector_stores/{id}/search.
    #[arg(
        long = "rate-searches",
        env = "RAGSTORE_RATE_SEARCHES",
        default_value_t = 1000
    )]
    pub searches: u32,
    /// Attaches: POST /v1/vector_stores/{id}/files and /file_batches.
    #[arg(
        long = "rate-attaches",
        env = "RAGSTORE_RATE_ATTACHES",
        default_value_t = 1000
    )]
    pub attaches: u32,
    /// Replicas sharing the limits: each enforces 1/N of every limit, so N replicas behind a
    /// balancer that spreads a key's requests evenly hold the limit together.
    #[arg(
        long = "rate-limit-replicas",
        env = "RAGSTORE_RATE_LIMIT_REPLICAS",
        default_value_t = 1
    )]
    pub replicas: u32,
}

impl Config {
    /// The defaults, with everything under `data_dir`.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        use clap::FromArgMatches;
        let matches = <Self as clap::Args>::augment_args(clap::Command::new("ragstore"))
            .no_binary_name(true)
            .get_matches_from(std::iter::empty::<String>());
        let mut config = match Self::from_arg_matches(&matches) {
            Ok(c) => c,
            // The defaults are literals above; they always parse.
            Err(e) => unreachable!("default config does not parse: {e}"),
        };
        config.data_dir = data_dir.into();
        config
    }

    /// Whether the server may run without API keys: on a loopback address, or when told to.
    pub fn open_allowed(&self) -> bool {
        self.addr.ip().is_loopback() || self.insecure_no_auth
    }

    pub fn worker_count(&self) -> usize {
        self.workers.max(1)
    }

    pub fn embed_thread_count(&self) -> usize {
        if self.embed_threads > 0 {
            self.embed_threads
        } else {
            cores()
        }
    }

    pub fn reaper_interval(&self) -> Duration {
        Duration::from_secs_f64(self.reaper_interval_secs.max(0.01))
    }

    pub fn http_limits(&self) -> crate::http::HttpLimits {
        crate::http::HttpLimits {
            max_connections: self.max_connections.max(1),
            header_timeout: Duration::from_secs_f64(self.header_timeout_secs.max(0.01)),
            body_timeout: Duration::from_secs_f64(self.body_timeout_secs.max(0.01)),
            max_header_bytes: MAX_HEADER_BYTES,
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_secs.max(0.0))
    }
}

/// Largest request head (request line and headers) the server reads.
const MAX_HEADER_BYTES: usize = 64 << 10;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A `postgres://` or `postgresql://` URL, as given.
pub fn parse_database_url(s: &str) -> Result<String, String> {
    let scheme = s
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(s.to_owned()),
        _ => Err(
            "expected a postgres:// or postgresql:// URL (leave it unset for SQLite in --data-dir)"
                .to_owned(),
        ),
    }
}

/// `512MiB`, `8GB`, `64M`, `1048576` -> bytes. Decimal units (KB, MB, GB) are powers of 1000,
/// binary ones (KiB, MiB, GiB, and bare K, M, G) powers of 1024.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 512MiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit '{other}' in '{s}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("8GB"), Ok(8_000_000_000));
        assert_eq!(parse_bytes("10"), Ok(10));
        assert_eq!(parse_bytes("1k"), Ok(1024));
        assert!(parse_bytes("MB").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }

    #[test]
    fn database_urls() {
        for ok in [
            "postgres://u:p@h:5432/db",
            "postgresql://h/db",
            "POSTGRES://h/db",
        ] {
            assert_eq!(parse_database_url(ok).as_deref(), Ok(ok));
        }
        for bad in ["sqlite://x.db", "mysql://h/db", "h:5432/db", ""] {
            assert!(parse_database_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults() {
        let c = Config::for_data_dir("/tmp/x");
        assert_eq!(c.max_file_bytes, 512 << 20);
        assert_eq!(c.max_upload_bytes, 8 << 30);
        assert_eq!(c.addr.port(), 8321);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.database_url, None, "SQLite in the data dir by default");
    }
}
