//! The embedded default [`VectorIndex`]: one `qdrant-edge` shard in the data directory.
//!
//! qdrant-edge 0.7.2 is a synchronous library with no background workers: every call below runs
//! on tokio's blocking pool, and HNSW graphs are only built when the shard's optimisers run,
//! which a thread of this adapter does every [`EdgeOptions::maintain_every`] once enough points
//! changed. Until then new points sit in a plain (brute-force) segment, which is exact but slows
//! down as it grows.
//!
//! Durability is this adapter's business, not its callers': 0.7.2 appends every operation to
//! its WAL but never replays it on load (nor truncates it: `wal/` grows with every write), so
//! what survives a crash is what the last flush wrote to the segments. Every write therefore
//! returns only once it is flushed; concurrent writers share one flush (group commit). The WAL
//! is file-locked: one process, one open `EdgeIndex` per directory.
//!
//! The WAL's contents are dead weight, but its entry numbers are the versions of the
//! operations, which must keep growing (the engine skips an operation older than the point it
//! touches). So whenever the shard is opened, and once the WAL passes
//! [`EdgeOptions::wal_max_bytes`] (upkeep then reopens it), all its closed segments but the
//! newest are removed, oldest first: numbering goes on, and a kill at any point leaves a WAL
//! that opens.
//!
//! A failed flush (a full disk) panics inside 0.7.2 after it has marked the changes clean, so
//! a later flush would not write them: the panic is caught, the write fails (its job retries),
//! and the shard is reopened from disk before the next operation, which drops the changes that
//! never reached it.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use async_trait::async_trait;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    AcornSearchParams, AnyVariants, Condition, CountRequest, CreateIndex, CreateVectorName,
    DeleteVectorName, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard,
    EdgeSparseVectorParams, EdgeVectorParams, FieldCondition, FieldIndexOperations,
    Filter as EdgeFilter, HasVectorCondition, HnswIndexConfig as HnswConfig, JsonPath,
    KeywordIndexParams, Match, Modifier, NamedQuery, OperationError, Payload, PayloadFieldSchema,
    PayloadOps, PayloadSchemaParams, PayloadSchemaType, PointId, PointInsertOperations,
    PointOperations, PointStructPersisted, PointVectorsPersisted, QueryEnum, QueryRequest, Range,
    ScoredPoint, ScoringQuery, ScrollRequest, SearchParams, SetPayloadOp, SparseVector,
    UpdateOperation, UpdateVectorsOp, ValueVariants, VectorInternal, VectorNameConfig,
    VectorNameOperations, VectorOperations, VectorPersisted, VectorStructInternal,
    VectorStructPersisted, WalOptions, WithPayloadInterface, WithVector,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::filter::{self, attribute_path, Bounds, Conditions};
use super::keyword::{Keywords, Sparse, SPARSE_VECTOR};
use super::payload::{self, ATTRIBUTES_KEY, FILE_KEY, PROJECT_KEY, STORE_KEY, TEXT_KEY};
use super::{ExportPage, Hit, KeywordRound, Leg, Point, SearchQuery, StoredPoint, VectorIndex};
use crate::domain::{AttrValue, Attributes, Error, FileId, ProjectId, Result, VectorStoreId};

/// Tuning knobs; [`EdgeOptions::default`] suits a server.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// Upkeep runs the optimisers once this many points were written or deleted since the last
    /// run.
    pub optimize_after: u64,
    /// How often the adapter's own thread does its upkeep; `None`: never by itself (tests call
    /// [`EdgeIndex::maintain`]).
    pub maintain_every: Option<Duration>,
    /// A plain segment larger than this (vectors, in KiB) gets an HNSW graph when optimised;
    /// `None` keeps qdrant's default (10 000 KiB).
    pub indexing_threshold_kb: Option<usize>,
    /// A search whose candidates (the points its store and filter leave) may exceed this
    /// (vectors, in KiB) walks the HNSW graph instead of scanning them; `None` keeps qdrant's
    /// default (10 000 KiB). For a new shard; an existing one keeps what it was created with.
    pub full_scan_threshold_kb: Option<usize>,
    /// Upkeep reopens the shard (truncating its WAL) once the WAL is larger than this.
    pub wal_max_bytes: u64,
    /// Free space kept on the index's disk: writes are refused below it. The engine writes
    /// through memory maps, and a page it cannot get on a full disk kills the process
    /// (SIGBUS), so it must never get there.
    pub min_free_bytes: u64,
}

/// The default full-scan threshold: 30 000 KiB, 20 000 vectors of 384 dimensions. Scanning
/// that many exactly takes a few milliseconds on two cores, less than a filtered walk of the
/// graph with ACORN (~50 ms for a 10 000-point match in a 100 000-point store, `cargo bench
/// --bench search`), and it is exact; qdrant's own default (10 000 KiB) is sized for servers.
pub const FULL_SCAN_KB: usize = 30_000;

impl Default for EdgeOptions {
    fn default() -> Self {
        Self {
            optimize_after: 10_000,
            maintain_every: Some(Duration::from_secs(30)),
            indexing_threshold_kb: None,
            full_scan_threshold_kb: Some(FULL_SCAN_KB),
            wal_max_bytes: 64 << 20,
            min_free_bytes: 64 << 20,
        }
    }
}

pub struct EdgeIndex {
    inner: Arc<Inner>,
    dims: usize,
    keywords: Arc<Keywords>,
    /// Dropped with the index, which stops the upkeep thread.
    _stop_upkeep: Option<mpsc::Sender<()>>,
}

struct Inner {
    /// Held while open: one index per directory.
    _lock: std::fs::File,
    /// `None` only while it is being reopened, or after a reopen failed (retried by the next
    /// operation).
    shard: RwLock<Option<EdgeShard>>,
    dir: PathBuf,
    config: EdgeConfig,
    /// A flush failed: the shard's memory holds changes its disk may never get.
    stale: AtomicBool,
    wal_max_bytes: u64,
    min_free_bytes: AtomicU64,
    /// `EdgeShard::flush` try-locks the WAL and the segment holder and panics when either is
    /// taken, so writers and the optimiser share this gate and flush takes it alone.
    gate: RwLock<()>,
    /// One optimisation at a time; a `maintain` that finds one running returns at once.
    optimizing: Mutex<()>,
    /// Points written or deleted since the last optimisation.
    changed: AtomicU64,
    /// Writes done so far (each numbered when it is applied).
    writes: AtomicU64,
    /// The number of writes the last flush covered; held while flushing, so concurrent writers
    /// wait for one flush instead of each making their own.
    flushed: Mutex<u64>,
    optimize_after: u64,
    /// Attribute keys given a payload index in this process, with the kind of value it
    /// indexes (the first kind seen for the key wins).
    attribute_indexes: Mutex<HashMap<String, PayloadSchemaType>>,
}

/// The shard's configuration: the dense vector, the keyword vector, upkeep and WAL.
fn shard_config(dims: usize, options: &EdgeOptions) -> EdgeConfig {
    EdgeConfig {
        on_disk_payload: true,
        vectors: [(
            String::new(),
            EdgeVectorParams {
                size: dims,
                distance: Distance::Cosine,
                on_disk: None,
                multivector_config: None,
                datatype: None,
                quantization_config: None,
                hnsw_config: options.full_scan_threshold_kb.map(|kb| HnswConfig {
                    full_scan_threshold: kb,
                    ..HnswConfig::default()
                }),
            },
        )]
        .into(),
        sparse_vectors: [(SPARSE_VECTOR.to_owned(), sparse_params())].into(),
        optimizers: EdgeOptimizersConfig {
            indexing_threshold: options.indexing_threshold_kb,
            ..EdgeOptimizersConfig::default()
        },
        // Small segments: each is allocated in full, and truncation removes whole ones.
        wal_options: Some(WalOptions {
            segment_capacity: WAL_SEGMENT_BYTES,
            segment_queue_len: 0,
            retain_closed: std::num::NonZeroUsize::MIN,
        }),
        ..EdgeConfig::default()
    }
}

/// The keyword vector: BM25 term weights, the engine applying each term's IDF at query time.
fn sparse_params() -> EdgeSparseVectorParams {
    EdgeSparseVectorParams {
        modifier: Some(Modifier::Idf),
        on_disk: Some(true),
        ..EdgeSparseVectorParams::default()
    }
}

/// Does the shard whose config this is have its keyword vector?
fn has_keyword_vectors(config_file: &Path) -> Result<bool> {
    let text = std::fs::read(config_file)?;
    let config: EdgeConfig = serde_json::from_slice(&text)
        .map_err(|e| engine(format!("{}: {e}", config_file.display())))?;
    Ok(config.sparse_vectors.contains_key(SPARSE_VECTOR))
}

/// Adds the keyword vector to a shard written without one. Each segment saves its new state as
/// it goes and the shard's config is saved last; the engine refuses to open a shard whose
/// segments disagree, so a kill inside this (a few milliseconds, once per data dir) would need
/// the index rebuilt.
fn add_keyword_vectors() -> std::result::Result<UpdateOperation, OperationError> {
    let config: VectorNameConfig =
        serde_json::from_value(json!({"sparse": {"modifier": "idf"}}))
            .map_err(|e| OperationError::service_error(format!("sparse vector config: {e}")))?;
    Ok(UpdateOperation::VectorNameOperation(
        VectorNameOperations::CreateVectorName(CreateVectorName {
            vector_name: SPARSE_VECTOR.to_owned(),
            config,
        }),
    ))
}

/// Capacity of one WAL segment file.
const WAL_SEGMENT_BYTES: usize = 4 << 20;

/// Attribute keys indexed at most; past this, filters on further keys read the payload.
const MAX_ATTRIBUTE_INDEXES: usize = 64;

impl Inner {
    /// Gives every attribute key of `attributes` a payload index of its value's kind, once.
    /// Filters are on users' own keys; with an index qdrant knows how selective a filter is
    /// and checks it without reading each candidate's payload from disk.
    fn index_attributes<'a>(&self, attributes: impl Iterator<Item = &'a Attributes>) -> Result<()> {
        let mut known = self
            .attribute_indexes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (key, value) in attributes.flatten() {
            if known.len() >= MAX_ATTRIBUTE_INDEXES {
                break;
            }
            if known.contains_key(key) {
                continue;
            }
            let kind = match value {
                AttrValue::String(_) => PayloadSchemaType::Keyword,
                AttrValue::Number(_) => PayloadSchemaType::Float,
                AttrValue::Bool(_) => PayloadSchemaType::Bool,
            };
            let schema = PayloadFieldSchema::FieldType(kind);
            self.write(create_index(path(&attribute_path(key)?)?, schema), 0)?;
            known.insert(key.clone(), kind);
        }
        Ok(())
    }

    /// Runs `f` on the open shard.
    fn with_shard<T>(&self, f: impl FnOnce(&EdgeShard) -> Result<T>) -> Result<T> {
        let slot = self.shard.read().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(shard) => f(shard),
            None => Err(Error::Unavailable(anyhow!(
                "vector index: not open (it could not be reopened; retried on the next call)"
            ))),
        }
    }

    /// Before an operation: reopens the shard if a flush failed or a reopen did.
    fn ensure_open(&self) -> Result<()> {
        let closed = self
            .shard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none();
        if closed || self.stale.load(Ordering::Acquire) {
            self.reopen()?;
        }
        Ok(())
    }

    /// Closes the shard (flushing it) and opens it again from disk, its WAL truncated. Waits
    /// for writes and flushes in progress; searches wait for it.
    fn reopen(&self) -> Result<()> {
        // Locks in one order everywhere: the flush counter, the gate, the shard (a writer
        // waiting for its flush holds the counter and then takes the gate).
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let mut slot = self.shard.write().unwrap_or_else(PoisonError::into_inner);
        // What the close could not flush is dropped with it: the writes that made it failed
        // and are retried.
        close(slot.take());
        truncate_wal(&self.dir)?;
        let shard = EdgeShard::load(&self.dir, Some(self.config.clone()))
            .map_err(|e| Error::Unavailable(anyhow!("vector index: cannot reopen: {e}")))?;
        *slot = Some(shard);
        self.stale.store(false, Ordering::Release);
        // What the old shard had flushed is all there is: nothing to wait for.
        *flushed = self.writes.load(Ordering::Acquire);
        tracing::info!(dir = %self.dir.display(), "vector index reopened, its WAL truncated");
        Ok(())
    }

    /// Refuses to go on unless the index's disk has `need` bytes free over the reserve.
    fn check_room(&self, need: u64) -> Result<()> {
        let reserve = self.min_free_bytes.load(Ordering::Relaxed);
        let free = fs4::available_space(&self.dir)?;
        if free < reserve.saturating_add(need) {
            return Err(Error::out_of_space(format!(
                "vector index: {free} bytes free, {reserve} kept in reserve"
            )));
        }
        Ok(())
    }

    /// Applies `op` and returns once it is durable.
    fn write(&self, op: UpdateOperation, changed: u64) -> Result<()> {
        self.check_room(0)?;
        let seq = {
            let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
            self.with_shard(|shard| shard.update(op).map_err(engine_op))?;
            self.changed.fetch_add(changed, Ordering::AcqRel);
            self.writes.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.durable(seq)
    }

    /// Sets the named vectors of existing points (their other vectors and payload kept) and
    /// returns how many it set. A point deleted meanwhile is skipped, never re-created: the
    /// engine refuses to update a missing point, and the rest are written again without it.
    fn update_vectors(&self, points: Vec<PointVectorsPersisted>) -> Result<u64> {
        let op = |points| {
            UpdateOperation::VectorOperation(VectorOperations::UpdateVectors(UpdateVectorsOp {
                points,
                update_filter: None,
            }))
        };
        let n = points.len() as u64;
        if n == 0 {
            return Ok(0);
        }
        let Err(first) = self.write(op(points.clone()), n) else {
            return Ok(n);
        };
        let ids: Vec<PointId> = points.iter().map(|p| p.id).collect();
        let live: std::collections::HashSet<PointId> = self
            .with_shard(|shard| {
                shard
                    .retrieve(&ids, Some(WithPayloadInterface::Bool(false)), None)
                    .map_err(engine_op)
            })?
            .into_iter()
            .map(|r| r.id)
            .collect();
        if live.len() == ids.len() {
            return Err(first);
        }
        let rest: Vec<_> = points
            .into_iter()
            .filter(|p| live.contains(&p.id))
            .collect();
        let n = rest.len() as u64;
        if n > 0 {
            self.write(op(rest), n)?;
        }
        Ok(n)
    }

    /// Returns once write number `seq` is flushed, flushing if no one else has since.
    fn durable(&self, seq: u64) -> Result<()> {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        if *flushed >= seq {
            return Ok(());
        }
        // Every write numbered up to here was applied before this load, so the flush covers it.
        let target = self.writes.load(Ordering::Acquire);
        self.flush()?;
        *flushed = target;
        Ok(())
    }

    fn count(&self, filter: Option<EdgeFilter>) -> Result<u64> {
        let n = self.with_shard(|shard| {
            shard
                .count(CountRequest {
                    filter,
                    exact: true,
                })
                .map_err(engine_op)
        })?;
        Ok(n as u64)
    }

    /// Writes `payload` (its top-level keys replace theirs) on the points `filter` selects;
    /// how many. Points of an indexed segment are copied to the plain one when their payload
    /// changes, so they count as changed for the next optimisation.
    fn set_payload(&self, filter: Option<EdgeFilter>, payload: Payload) -> Result<u64> {
        let n = self.count(filter.clone())?;
        if n == 0 {
            return Ok(0);
        }
        let op = UpdateOperation::PayloadOperation(PayloadOps::SetPayload(SetPayloadOp {
            payload,
            points: None,
            filter,
            key: None,
        }));
        self.write(op, n)?;
        Ok(n)
    }

    /// Waits for a running optimisation to finish. A flush that fails (0.7.2 panics: a full
    /// disk) leaves the shard stale until it is reopened.
    fn flush(&self) -> Result<()> {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.with_shard(|shard| {
            catch_unwind(AssertUnwindSafe(|| shard.flush())).map_err(|panic| {
                self.stale.store(true, Ordering::Release);
                let why = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown");
                tracing::error!(why, "vector index flush failed; the index will be reopened");
                let e = format!("vector index: flush failed: {why}");
                if why.contains("No space left on device") {
                    Error::out_of_space(e)
                } else {
                    Error::Unavailable(anyhow!(e))
                }
            })
        })
    }

    /// Reopens the shard once its WAL is over the limit.
    fn bound_wal(&self) -> Result<()> {
        let size = dir_bytes(&self.dir.join("wal"));
        if size > self.wal_max_bytes {
            tracing::info!(
                wal_bytes = size,
                "vector index WAL over its limit; truncating it"
            );
            self.reopen()?;
        }
        Ok(())
    }

    /// Runs the optimisers if enough points changed since they last ran.
    fn maintain(&self) -> Result<()> {
        let Ok(_running) = self.optimizing.try_lock() else {
            return Ok(());
        };
        let changed = self.changed.load(Ordering::Acquire);
        // Optimising may rewrite every segment: it waits until the disk has room for that.
        let room = || self.check_room(tree_bytes(&self.dir.join("segments")));
        if changed >= self.optimize_after && room().is_ok() {
            let optimized = {
                let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
                self.with_shard(|shard| shard.optimize().map_err(engine_op))?
            };
            self.changed.fetch_sub(changed, Ordering::AcqRel);
            // What the optimiser rewrote is made durable like any write.
            let seq = self.writes.fetch_add(1, Ordering::AcqRel) + 1;
            self.durable(seq)?;
            tracing::info!(changed, optimized, "vector index optimised");
        }
        self.bound_wal()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        close(
            self.shard
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }
}

/// Closes a shard, which flushes it. A failed flush (a full disk) panics in 0.7.2; that must
/// not take the process down: every acknowledged write was flushed already.
fn close(shard: Option<EdgeShard>) {
    if let Some(shard) = shard {
        if catch_unwind(AssertUnwindSafe(move || drop(shard))).is_err() {
            tracing::warn!("vector index: the flush at close failed");
        }
    }
}

/// Removes the WAL's closed segments but the newest, oldest first, each removal made durable
/// before the next: what remains is always a contiguous run the WAL opens (a kill at any point
/// included). 0.7.2 never replays the WAL, but its entry numbers are the operations' versions,
/// which must keep growing across restarts (the engine skips an operation older than the point
/// it touches), so the newest segment stays and numbering goes on from it.
fn truncate_wal(dir: &Path) -> Result<()> {
    let wal = dir.join("wal");
    let Ok(entries) = std::fs::read_dir(&wal) else {
        return Ok(());
    };
    let mut closed: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let start = name.to_str()?.strip_prefix("closed-")?.parse().ok()?;
            Some((start, e.path()))
        })
        .collect();
    closed.sort();
    closed.pop();
    if closed.is_empty() {
        return Ok(());
    }
    let handle = std::fs::File::open(&wal)?;
    for (_, path) in closed {
        std::fs::remove_file(&path)?;
        handle.sync_all()?;
    }
    Ok(())
}

/// Disk space the files under `dir` take, recursively.
fn tree_bytes(dir: &Path) -> u64 {
    let nested: u64 = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| tree_bytes(&e.path()))
                .sum()
        })
        .unwrap_or(0);
    nested + dir_bytes(dir)
}

/// Disk space the files in `dir` take (0 if it cannot be read): WAL segments are sparse on
/// file systems that cannot allocate them up front, so their length says little.
fn dir_bytes(dir: &Path) -> u64 {
    #[cfg(unix)]
    fn used(m: &std::fs::Metadata) -> u64 {
        std::os::unix::fs::MetadataExt::blocks(m) * 512
    }
    #[cfg(not(unix))]
    fn used(m: &std::fs::Metadata) -> u64 {
        m.len()
    }
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| used(&m))
                .sum()
        })
        .unwrap_or(0)
}

fn create_index(field_name: JsonPath, schema: PayloadFieldSchema) -> UpdateOperation {
    UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
        field_name,
        field_schema: Some(schema),
    }))
}

fn engine(e: impl std::fmt::Display) -> Error {
    Error::Internal(anyhow!("vector index: {e}"))
}

/// An engine error, classified: resource and I/O trouble may pass; a refused operation (wrong
/// dimensions, payload types, validation) or inconsistent storage would happen again.
fn engine_op(e: OperationError) -> Error {
    // The engine passes I/O errors on as text.
    if e.to_string().contains("No space left on device") {
        return Error::out_of_space(format!("vector index: {e}"));
    }
    let transient = matches!(
        e,
        OperationError::ServiceError { .. }
            | OperationError::OutOfMemory { .. }
            | OperationError::Timeout { .. }
            | OperationError::Cancelled { .. }
    );
    let e = anyhow!("vector index: {e}");
    if transient {
        Error::Unavailable(e)
    } else {
        Error::Internal(e)
    }
}

impl EdgeIndex {
    /// Opens the shard in `dir`, creating it on first use, with one unnamed dense vector of
    /// `dims` (cosine).
    pub fn open(dir: &Path, dims: usize) -> Result<Self> {
        Self::open_with(dir, dims, EdgeOptions::default())
    }

    pub fn open_with(dir: &Path, dims: usize, options: EdgeOptions) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        // One open index per directory (the WAL it truncates must not be in use).
        let lock = std::fs::File::create(dir.join("index.lock"))?;
        lock.try_lock()
            .map_err(|_| engine(format!("{} is open in another index", dir.display())))?;
        let config = shard_config(dims, &options);
        // `load` checks the config against the segments on disk (a different `dims` fails).
        let config_file = dir.join("edge_config.json");
        let shard = if config_file.exists() {
            // The last run's WAL is never replayed: keep only what numbering needs.
            truncate_wal(dir)?;
            if has_keyword_vectors(&config_file)? {
                EdgeShard::load(dir, Some(config.clone()))
            } else {
                // Written before keyword vectors: open it as it is, then add the sparse
                // vector to every segment (existing points get theirs from the keyword jobs).
                let mut before = config.clone();
                before.sparse_vectors.clear();
                EdgeShard::load(dir, Some(before)).and_then(|shard| {
                    shard.update(add_keyword_vectors()?)?;
                    shard.flush();
                    Ok(shard)
                })
            }
        } else {
            EdgeShard::new(dir, config.clone())
        }
        .map_err(|e| engine(format!("cannot open {}: {e}", dir.display())))?;

        // Re-issued on every open: a no-op for segments that have them, and it covers a plain
        // segment the engine creates at load time from its (empty) default schema.
        for (key, is_tenant) in [(STORE_KEY, true), (FILE_KEY, false), (PROJECT_KEY, false)] {
            let schema =
                PayloadFieldSchema::FieldParams(PayloadSchemaParams::Keyword(KeywordIndexParams {
                    is_tenant: Some(is_tenant),
                    ..KeywordIndexParams::default()
                }));
            shard
                .update(create_index(path(key)?, schema))
                .map_err(engine_op)?;
        }

        // Points left unindexed by the previous run count towards the next optimisation.
        // The engine counts the vectors of every index but plain ones, so the keyword vectors
        // always count as indexed: a point has two vectors, and what lacks is dense graphs.
        let info = shard.info();
        let unindexed = (2 * info.points_count).saturating_sub(info.indexed_vectors_count) as u64;
        let inner = Arc::new(Inner {
            _lock: lock,
            shard: RwLock::new(Some(shard)),
            dir: dir.to_path_buf(),
            config,
            stale: AtomicBool::new(false),
            wal_max_bytes: options.wal_max_bytes,
            min_free_bytes: AtomicU64::new(options.min_free_bytes),
            gate: RwLock::new(()),
            optimizing: Mutex::new(()),
            changed: AtomicU64::new(unindexed),
            writes: AtomicU64::new(0),
            flushed: Mutex::new(0),
            optimize_after: options.optimize_after,
            attribute_indexes: Mutex::new(HashMap::new()),
        });
        let stop = options
            .maintain_every
            .map(|every| spawn_upkeep(Arc::downgrade(&inner), every))
            .transpose()?;
        Ok(Self {
            inner,
            dims,
            keywords: Arc::new(Keywords::new()?),
            _stop_upkeep: stop,
        })
    }

    /// The dense vectors' dimensions of the index in `dir`; `None` if there is none.
    pub fn stored_dims(dir: &Path) -> Result<Option<usize>> {
        let config_file = dir.join("edge_config.json");
        if !config_file.exists() {
            return Ok(None);
        }
        let config: EdgeConfig = serde_json::from_slice(&std::fs::read(&config_file)?)
            .map_err(|e| engine(format!("{}: {e}", config_file.display())))?;
        Ok(config.vectors.get("").map(|v| v.size))
    }

    /// Removes the keyword vectors of the closed index in `dir`, leaving it as an index written
    /// before they existed: what tests of the upgrade start from.
    #[doc(hidden)]
    pub fn forget_keyword_vectors(dir: &Path) -> Result<()> {
        let shard = EdgeShard::load(dir, None)
            .map_err(|e| engine(format!("cannot open {}: {e}", dir.display())))?;
        shard
            .update(UpdateOperation::VectorNameOperation(
                VectorNameOperations::DeleteVectorName(DeleteVectorName {
                    vector_name: SPARSE_VECTOR.to_owned(),
                }),
            ))
            .map_err(engine_op)?;
        shard.flush();
        Ok(())
    }

    /// Flushes whatever is not yet durable (every write already is when it returns).
    pub async fn flush(&self) -> Result<()> {
        self.blocking(|inner| inner.flush()).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            inner.ensure_open()?;
            f(&inner)
        })
        .await?
    }
}

#[async_trait]
impl VectorIndex for EdgeIndex {
    #[tracing::instrument(name = "index.upsert", skip_all, fields(points = points.len()))]
    async fn upsert(&self, points: Vec<Point>) -> Result<()> {
        let points = points
            .into_iter()
            .map(|p| payload::stored(p, &self.keywords))
            .collect::<Result<Vec<_>>>()?;
        self.write_points(points).await
    }

    #[tracing::instrument(name = "index.search", skip_all, fields(store = %q.store, limit = q.limit))]
    async fn search(&self, q: &SearchQuery) -> Result<Vec<Hit>> {
        let (filter, limit) = (q.filter.as_ref(), q.limit);
        let query = match &q.leg {
            Leg::Dense(v) => {
                payload::check_dims(v, self.dims)?;
                NamedQuery::default_dense(v.clone())
            }
            Leg::Keyword(text) => {
                let sparse = self.keywords.query(text);
                if sparse.is_empty() {
                    return Ok(Vec::new());
                }
                NamedQuery {
                    query: VectorInternal::Sparse(to_engine_sparse(sparse)),
                    using: Some(SPARSE_VECTOR.to_owned()),
                }
            }
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let scope = filter::search::<EdgeConditions>(q)?;
        // Attribute keys are the users' own and have no payload index, so qdrant cannot
        // estimate a filter's selectivity, and a plain filtered walk of the HNSW graph stops
        // early when most neighbours fail it. ACORN also explores neighbours' neighbours.
        let dense = matches!(q.leg, Leg::Dense(_));
        let params = filter.filter(|_| dense).map(|_| SearchParams {
            acorn: Some(AcornSearchParams {
                enable: true,
                max_selectivity: Some(OrderedFloat(1.0)),
            }),
            // ACORN's two-hop walk costs more per step than the plain one, so a narrower beam
            // than qdrant's default (100) keeps filtered searches fast; the unit test below
            // checks it still finds the true nearest.
            hnsw_ef: Some((2 * limit).max(32)),
            ..SearchParams::default()
        });
        let request = QueryRequest {
            prefetches: Vec::new(),
            query: Some(ScoringQuery::Vector(QueryEnum::Nearest(query))),
            filter: Some(scope),
            score_threshold: q.score_threshold.map(OrderedFloat),
            limit,
            offset: 0,
            params,
            with_vector: WithVector::Bool(false),
            with_payload: WithPayloadInterface::Bool(true),
        };
        let found = self
            .blocking(move |inner| {
                inner.with_shard(|shard| shard.query(request).map_err(engine_op))
            })
            .await?;
        found.into_iter().map(to_hit).collect()
    }

    #[tracing::instrument(name = "index.delete_file", skip_all, fields(file = %file))]
    async fn delete_file(&self, store: Option<&VectorStoreId>, file: &FileId) -> Result<()> {
        let filter = filter::scope::<EdgeConditions>(store, Some(file))?;
        self.delete(filter).await
    }

    #[tracing::instrument(name = "index.delete_store", skip_all, fields(store = %store))]
    async fn delete_store(&self, store: &VectorStoreId) -> Result<()> {
        let filter = filter::scope::<EdgeConditions>(Some(store), None)?;
        self.delete(filter).await
    }

    #[tracing::instrument(name = "index.set_attributes", skip_all, fields(store = %store, file = %file))]
    async fn set_attributes(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        attributes: &Attributes,
    ) -> Result<()> {
        let filter = filter::scope::<EdgeConditions>(Some(store), Some(file))?;
        let value = serde_json::to_value(attributes).context("attributes to JSON")?;
        // Setting a top-level key replaces its whole value, so keys absent from the new map go.
        let payload = Payload([(ATTRIBUTES_KEY.to_owned(), value)].into_iter().collect());
        let attributes = attributes.clone();
        self.blocking(move |inner| {
            inner.index_attributes(std::iter::once(&attributes))?;
            inner.set_payload(filter, payload).map(|_| ())
        })
        .await
    }

    async fn adopt_store(&self, store: &VectorStoreId, project: &ProjectId) -> Result<u64> {
        let filter = Some(filter::unadopted::<EdgeConditions>(store, project)?);
        let payload = Payload(
            [(
                PROJECT_KEY.to_owned(),
                Value::String(project.as_str().into()),
            )]
            .into_iter()
            .collect(),
        );
        self.blocking(move |inner| inner.set_payload(filter, payload))
            .await
    }

    async fn count(&self, store: Option<&VectorStoreId>, file: Option<&FileId>) -> Result<u64> {
        let filter = filter::scope::<EdgeConditions>(store, file)?;
        self.blocking(move |inner| inner.count(filter)).await
    }

    #[tracing::instrument(name = "index.index_keywords", skip_all, fields(store = %store))]
    async fn index_keywords(
        &self,
        store: &VectorStoreId,
        from: Option<Uuid>,
        limit: usize,
    ) -> Result<KeywordRound> {
        let filter = filter::without_keywords::<EdgeConditions>(store)?;
        let keywords = Arc::clone(&self.keywords);
        self.blocking(move |inner| {
            let request = ScrollRequest {
                offset: from.map(PointId::Uuid),
                limit: Some(limit.max(1)),
                filter: Some(filter),
                with_payload: Some(WithPayloadInterface::Fields(vec![path(TEXT_KEY)?])),
                with_vector: WithVector::Bool(false),
                order_by: None,
            };
            let (records, next) =
                inner.with_shard(|shard| shard.scroll(request).map_err(engine_op))?;
            let mut points = Vec::with_capacity(records.len());
            for r in records {
                let text = r
                    .payload
                    .as_ref()
                    .and_then(|p| p.0.get(TEXT_KEY))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                points.push(PointVectorsPersisted {
                    id: r.id,
                    vector: VectorStructPersisted::Named(
                        [(
                            SPARSE_VECTOR.to_owned(),
                            VectorPersisted::Sparse(to_engine_sparse(keywords.document(text))),
                        )]
                        .into(),
                    ),
                });
            }
            let indexed = inner.update_vectors(points)?;
            let next = next.map(uuid_of).transpose()?;
            Ok(KeywordRound { indexed, next })
        })
        .await
    }

    async fn missing_keywords(&self, store: &VectorStoreId) -> Result<u64> {
        let filter = filter::without_keywords::<EdgeConditions>(store)?;
        self.blocking(move |inner| inner.count(Some(filter))).await
    }

    async fn export_points(&self, from: Option<Uuid>, limit: usize) -> Result<ExportPage> {
        self.blocking(move |inner| {
            let request = ScrollRequest {
                offset: from.map(PointId::Uuid),
                limit: Some(limit.max(1)),
                filter: None,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(true),
                order_by: None,
            };
            let (records, next) =
                inner.with_shard(|shard| shard.scroll(request).map_err(engine_op))?;
            Ok(ExportPage {
                points: records
                    .into_iter()
                    .map(to_stored_point)
                    .collect::<Result<_>>()?,
                next: next.map(uuid_of).transpose()?,
            })
        })
        .await
    }

    #[tracing::instrument(name = "index.import", skip_all, fields(points = points.len()))]
    async fn import_points(&self, points: Vec<StoredPoint>) -> Result<()> {
        self.write_points(points).await
    }

    /// Runs the optimisers now if enough points changed (the upkeep thread does this by itself).
    #[tracing::instrument(name = "index.maintain", skip_all)]
    async fn maintain(&self) -> Result<()> {
        self.blocking(|inner| inner.maintain()).await
    }
}

/// The adapter's upkeep: every `every`, optimise if enough changed. Stops when the index is
/// dropped (its end of the channel goes away) or gone.
fn spawn_upkeep(inner: Weak<Inner>, every: Duration) -> Result<mpsc::Sender<()>> {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("index-upkeep".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let Some(inner) = inner.upgrade() else { return };
                if let Err(e) = inner.maintain() {
                    tracing::error!(error = ?e, "index maintenance failed");
                }
            }
        })
        .map_err(|e| engine(format!("cannot start the upkeep thread: {e}")))?;
    Ok(stop)
}

impl EdgeIndex {
    /// Inserts or overwrites points, giving their attribute keys payload indexes first.
    async fn write_points(&self, points: Vec<StoredPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let n = points.len() as u64;
        let attributes = payload::distinct_attributes(&points);
        let list = points
            .into_iter()
            .map(|p| {
                payload::check_dims(&p.vector, self.dims)?;
                Ok(to_engine_point(p.id, p.vector, p.keywords, p.payload))
            })
            .collect::<Result<Vec<_>>>()?;
        let op = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
            PointInsertOperations::PointsList(list),
        ));
        self.blocking(move |inner| {
            inner.index_attributes(attributes.iter())?;
            inner.write(op, n)
        })
        .await
    }

    async fn delete(&self, filter: Option<EdgeFilter>) -> Result<()> {
        let Some(filter) = filter else {
            return Ok(());
        };
        self.blocking(move |inner| {
            let n = inner.count(Some(filter.clone()))?;
            if n == 0 {
                return Ok(());
            }
            let op = UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter));
            inner.write(op, n)
        })
        .await
    }
}

fn to_engine_sparse(s: Sparse) -> SparseVector {
    SparseVector {
        indices: s.indices,
        values: s.values,
    }
}

fn from_engine_sparse(s: SparseVector) -> Sparse {
    Sparse {
        indices: s.indices,
        values: s.values,
    }
}

/// A point as the engine stores it: its dense vector, its keyword vector (if it has one yet)
/// and its payload.
fn to_engine_point(
    id: Uuid,
    vector: Vec<f32>,
    sparse: Option<Sparse>,
    payload: Map<String, Value>,
) -> PointStructPersisted {
    let mut vectors = HashMap::from([(String::new(), VectorPersisted::Dense(vector))]);
    if let Some(sparse) = sparse {
        vectors.insert(
            SPARSE_VECTOR.to_owned(),
            VectorPersisted::Sparse(to_engine_sparse(sparse)),
        );
    }
    PointStructPersisted {
        id: PointId::Uuid(id),
        vector: VectorStructPersisted::Named(vectors.into_iter().collect()),
        payload: Some(Payload(payload)),
    }
}

fn uuid_of(id: PointId) -> Result<Uuid> {
    match id {
        PointId::Uuid(id) => Ok(id),
        other => Err(engine(format!("unexpected numeric point id {other}"))),
    }
}

/// A point the engine read back, as any index stores it.
fn to_stored_point(r: qdrant_edge::Record) -> Result<StoredPoint> {
    let id = uuid_of(r.id)?;
    let (mut vector, mut keywords) = (None, None);
    match r.vector {
        Some(VectorStructInternal::Single(v)) => vector = Some(v),
        Some(VectorStructInternal::Named(named)) => {
            for (name, v) in named {
                match (name.as_str(), v) {
                    ("", VectorInternal::Dense(d)) => vector = Some(d),
                    (SPARSE_VECTOR, VectorInternal::Sparse(s)) => {
                        keywords = Some(from_engine_sparse(s));
                    }
                    (name, _) => {
                        return Err(engine(format!("point {id}: unexpected vector {name:?}")))
                    }
                }
            }
        }
        _ => {}
    }
    let vector = vector.ok_or_else(|| engine(format!("point {id}: no dense vector")))?;
    Ok(StoredPoint {
        id,
        vector,
        keywords,
        payload: r.payload.map(|p| p.0).unwrap_or_default(),
    })
}

fn to_hit(p: ScoredPoint) -> Result<Hit> {
    payload::hit(
        uuid_of(p.id)?,
        p.score,
        p.payload.map(|p| p.0).unwrap_or_default(),
    )
}

fn path(key: &str) -> Result<JsonPath> {
    key.parse()
        .map_err(|()| engine(format!("invalid payload path {key}")))
}

/// qdrant-edge's conditions: Qdrant's segment types.
struct EdgeConditions;

fn field(condition: FieldCondition) -> Condition {
    Condition::Field(condition)
}

impl Conditions for EdgeConditions {
    type Condition = Condition;
    type Filter = EdgeFilter;

    fn keyword(path_: &str, value: &str) -> Result<Condition> {
        let value = Match::new_value(ValueVariants::String(value.to_owned()));
        Ok(field(FieldCondition::new_match(path(path_)?, value)))
    }

    fn any_keyword(path_: &str, values: Vec<String>) -> Result<Condition> {
        // `AnyVariants` holds an `IndexSet` with a hasher the engine does not re-export.
        let any: AnyVariants =
            serde_json::from_value(Value::from(values)).context("match any strings")?;
        Ok(field(FieldCondition::new_match(
            path(path_)?,
            Match::new_any(any),
        )))
    }

    fn boolean(path_: &str, value: bool) -> Result<Condition> {
        let value = Match::new_value(ValueVariants::Bool(value));
        Ok(field(FieldCondition::new_match(path(path_)?, value)))
    }

    fn range(path_: &str, b: Bounds) -> Result<Condition> {
        let range = Range {
            gt: b.gt.map(OrderedFloat),
            gte: b.gte.map(OrderedFloat),
            lt: b.lt.map(OrderedFloat),
            lte: b.lte.map(OrderedFloat),
        };
        Ok(field(FieldCondition::new_range(path(path_)?, range)))
    }

    fn has_vector(name: &str) -> Condition {
        Condition::HasVector(HasVectorCondition::from(name.to_owned()))
    }

    fn filter(
        must: Vec<Condition>,
        should: Vec<Condition>,
        must_not: Vec<Condition>,
    ) -> EdgeFilter {
        let some = |v: Vec<Condition>| (!v.is_empty()).then_some(v);
        EdgeFilter {
            must: some(must),
            should: some(should),
            must_not: some(must_not),
            ..EdgeFilter::new()
        }
    }

    fn nest(filter: EdgeFilter) -> Condition {
        Condition::Filter(filter)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::Filter;
    use crate::index::point_id;
    use serde_json::json;
    use std::collections::BTreeSet;

    const DIMS: usize = 8;

    /// The old positional form of a query, for brevity.
    async fn find(
        idx: &EdgeIndex,
        store: &VectorStoreId,
        vector: Vec<f32>,
        filter: Option<&Filter>,
        exclude_files: &[FileId],
        limit: usize,
        score_threshold: Option<f32>,
    ) -> Result<Vec<Hit>> {
        idx.search(&SearchQuery {
            store: store.clone(),
            project: ProjectId::default_project(),
            leg: Leg::Dense(vector),
            filter: filter.cloned(),
            exclude_files: exclude_files.to_vec(),
            limit,
            score_threshold,
        })
        .await
    }

    fn store(s: &str) -> VectorStoreId {
        VectorStoreId::parse(&format!("vs_{s}")).unwrap()
    }

    fn file(s: &str) -> FileId {
        FileId::parse(&format!("file-{s}")).unwrap()
    }

    fn attrs(v: Value) -> Attributes {
        serde_json::from_value(v).unwrap()
    }

    /// Unit vector along axis `i`, tilted towards axis `j` by `t`.
    fn axis(i: usize, j: usize, t: f32) -> Vec<f32> {
        let mut v = vec![0.0; DIMS];
        v[i] = 1.0;
        v[j] += t;
        v
    }

    /// Deterministic pseudo-random vectors (xorshift), so failures reproduce.
    fn random_vectors(n: usize, mut seed: u64) -> Vec<Vec<f32>> {
        (0..n)
            .map(|_| {
                (0..DIMS)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        (seed % 2001) as f32 / 1000.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    fn point(vs: &VectorStoreId, f: &FileId, chunk: u32, vector: Vec<f32>, a: Value) -> Point {
        Point {
            id: point_id(f, vs, chunk),
            vector,
            vector_store_id: vs.clone(),
            project_id: ProjectId::default_project(),
            file_id: f.clone(),
            chunk_index: chunk,
            text: format!("{f} chunk {chunk}"),
            attributes: attrs(a),
            extra: json!({"page": chunk + 1}).as_object().cloned().unwrap(),
        }
    }

    fn open(dir: &Path) -> EdgeIndex {
        EdgeIndex::open(dir, DIMS).unwrap()
    }

    fn info(idx: &EdgeIndex) -> qdrant_edge::ShardInfo {
        idx.inner.with_shard(|shard| Ok(shard.info())).unwrap()
    }

    /// Dense vectors in HNSW graphs, about: the engine counts keyword vectors as indexed
    /// always (one a point), dense ones only once in a graph.
    fn graph_vectors(idx: &EdgeIndex) -> usize {
        let i = info(idx);
        i.indexed_vectors_count.saturating_sub(i.points_count)
    }

    /// Points of file `f` in store `a` whose text makes each write about 500 KB.
    fn heavy(f: &FileId, from: u32) -> Vec<Point> {
        (from..from + 50)
            .map(|c| Point {
                text: "x".repeat(10_000),
                ..point(
                    &store("a"),
                    f,
                    c,
                    axis(c as usize % DIMS, 0, 0.5),
                    json!({}),
                )
            })
            .collect()
    }

    fn wal_bytes(dir: &Path) -> u64 {
        dir_bytes(&dir.join("wal"))
    }

    #[tokio::test]
    async fn the_wal_is_truncated_on_open_and_when_over_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let options = EdgeOptions {
            maintain_every: None,
            wal_max_bytes: 1 << 20,
            ..EdgeOptions::default()
        };
        let (f, g) = (file("f"), file("g"));
        {
            let idx = EdgeIndex::open_with(dir.path(), DIMS, options.clone()).unwrap();
            // About 15 MB of writes: three closed 4 MiB segments and an open one.
            for i in 0..30 {
                idx.upsert(heavy(&f, i * 50)).await.unwrap();
            }
            let before = wal_bytes(dir.path());
            assert!(before > 12 << 20, "the WAL grew: {before}");
            idx.maintain().await.unwrap();
            let after = wal_bytes(dir.path());
            assert!(
                after < before / 2,
                "upkeep truncated it: {before} -> {after}"
            );
            assert_eq!(idx.count(None, Some(&f)).await.unwrap(), 1500);
            // Operations after the truncation still apply to points written before it: the
            // WAL's numbering, which versions them, went on.
            idx.delete_file(None, &f).await.unwrap();
            assert_eq!(idx.count(None, Some(&f)).await.unwrap(), 0);
            for i in 0..30 {
                idx.upsert(heavy(&g, i * 50)).await.unwrap();
            }
        }
        // A restart truncates it too, and what was deleted stays deleted.
        let before = wal_bytes(dir.path());
        let idx = EdgeIndex::open_with(dir.path(), DIMS, options).unwrap();
        assert!(wal_bytes(dir.path()) < before / 2);
        assert_eq!(idx.count(None, Some(&f)).await.unwrap(), 0);
        assert_eq!(idx.count(None, Some(&g)).await.unwrap(), 1500);
        idx.delete_file(None, &g).await.unwrap();
        drop(idx);
        let idx = open(dir.path());
        assert_eq!(idx.count(None, None).await.unwrap(), 0);
    }

    /// A reopen (the WAL over its limit) while writers wait for their flush: both finish. The
    /// reopen took the shard's locks and then the flush counter, a writer the counter and then
    /// the flush gate, so the two could wait on each other for good (the 30-minute soak hung
    /// on it: ingestion and searches stopped at a WAL truncation).
    #[test]
    fn a_reopen_while_writers_flush_does_not_deadlock() {
        // On a thread of its own, so a deadlock fails the test instead of hanging it (a runtime
        // waits for its blocking threads when it is dropped).
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(4)
                .enable_all()
                .build()
                .unwrap();
            let count = rt.block_on(reopen_while_writers_flush());
            let _ = done.send(count);
        });
        let count = finished
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("writers and upkeep finish (no deadlock)");
        assert_eq!(count, 450);
    }

    async fn reopen_while_writers_flush() -> u64 {
        let dir = tempfile::tempdir().unwrap();
        let options = EdgeOptions {
            maintain_every: None,
            // Every upkeep reopens.
            wal_max_bytes: 0,
            ..EdgeOptions::default()
        };
        let idx = Arc::new(EdgeIndex::open_with(dir.path(), DIMS, options).unwrap());
        let a = store("a");
        let mut tasks = Vec::new();
        for w in 0..3 {
            let (idx, a) = (idx.clone(), a.clone());
            tasks.push(tokio::spawn(async move {
                let f = file(&format!("w{w}"));
                for i in 0..150 {
                    let p = point(&a, &f, i, axis(i as usize % DIMS, 0, 0.5), json!({}));
                    idx.upsert(vec![p]).await.unwrap();
                }
            }));
        }
        let upkeep = idx.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..150 {
                upkeep.maintain().await.unwrap();
            }
        }));
        for t in futures_util::future::join_all(tasks).await {
            t.unwrap();
        }
        idx.count(Some(&a), None).await.unwrap()
    }

    /// Below the free-space reserve writes are refused as out of space (and retried by their
    /// jobs) instead of reaching the engine's memory maps; searches go on; writes resume once
    /// there is room.
    #[tokio::test]
    async fn writes_are_refused_below_the_free_space_reserve() {
        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path());
        let (a, f, g) = (store("a"), file("f"), file("g"));
        idx.upsert(heavy(&f, 0)).await.unwrap();
        idx.inner.min_free_bytes.store(u64::MAX, Ordering::Relaxed);
        let err = idx.upsert(heavy(&g, 0)).await.unwrap_err();
        assert!(err.is_out_of_space() && err.is_transient(), "{err:?}");
        let err = idx.delete_file(Some(&a), &f).await.unwrap_err();
        assert!(err.is_out_of_space(), "{err:?}");
        assert_eq!(idx.count(Some(&a), None).await.unwrap(), 50);
        let hits = find(&idx, &a, axis(1, 0, 0.5), None, &[], 3, None)
            .await
            .unwrap();
        assert_eq!(hits.len(), 3);
        idx.inner.min_free_bytes.store(0, Ordering::Relaxed);
        idx.upsert(heavy(&g, 0)).await.unwrap();
        assert_eq!(idx.count(Some(&a), None).await.unwrap(), 100);
    }

    const WAL_CRASH_DIR: &str = "RAGSTORE_EDGE_WAL_CRASH_DIR";

    /// Only does something as the child process of `a_kill_while_the_wal_is_truncated_loses_nothing`:
    /// writes and truncates the WAL after every write, reporting each write once it returned.
    #[tokio::test]
    #[allow(clippy::print_stdout)]
    async fn wal_crash_child() {
        let Ok(dir) = std::env::var(WAL_CRASH_DIR) else {
            return;
        };
        let options = EdgeOptions {
            maintain_every: None,
            wal_max_bytes: 0,
            ..EdgeOptions::default()
        };
        let idx = EdgeIndex::open_with(Path::new(&dir), DIMS, options).unwrap();
        for i in 0.. {
            idx.upsert(heavy(&file("f"), i * 50)).await.unwrap();
            println!("written {}", (i + 1) * 50);
            idx.maintain().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_kill_while_the_wal_is_truncated_loses_nothing() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        for round in 0..3u64 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "index::edge::tests::wal_crash_child",
                    "--nocapture",
                ])
                .env(WAL_CRASH_DIR, dir.path())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            // Kill it at a different point of its write-and-truncate loop each round.
            let mut written = 0u64;
            let mut seen = 0;
            while seen < 3 + round * 2 {
                let line = lines.next().unwrap().unwrap();
                if let Some(n) = line.strip_prefix("written ") {
                    written = n.parse().unwrap();
                    seen += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(7 * round));
            child.kill().unwrap();
            child.wait().unwrap();
            let idx = open(dir.path());
            let n = idx.count(None, None).await.unwrap();
            assert!(
                n >= written,
                "round {round}: {n} points, {written} acknowledged"
            );
            drop(idx);
            std::fs::remove_dir_all(dir.path()).unwrap();
            std::fs::create_dir_all(dir.path()).unwrap();
        }
    }

    /// A point of `f` in `vs` whose text is `text`.
    fn texted(vs: &VectorStoreId, f: &FileId, chunk: u32, text: &str, a: Value) -> Point {
        Point {
            text: text.to_owned(),
            ..point(vs, f, chunk, axis(chunk as usize % DIMS, 1, 0.0), a)
        }
    }

    fn keyword_query(vs: &VectorStoreId, text: &str, filter: Option<Filter>) -> SearchQuery {
        SearchQuery {
            store: vs.clone(),
            project: ProjectId::default_project(),
            leg: Leg::Keyword(text.to_owned()),
            filter,
            exclude_files: Vec::new(),
            limit: 10,
            score_threshold: None,
        }
    }

    async fn keyword_chunks(idx: &EdgeIndex, q: &SearchQuery) -> Vec<u32> {
        let hits = idx.search(q).await.unwrap();
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
        hits.iter().map(|h| h.chunk_index).collect()
    }

    /// An index written before keyword vectors existed: dense vectors only.
    fn old_index(dir: &Path, points: Vec<Point>) {
        let mut config = shard_config(DIMS, &EdgeOptions::default());
        config.sparse_vectors.clear();
        let shard = EdgeShard::new(dir, config).unwrap();
        let list = points
            .into_iter()
            .map(|p| {
                let (id, vector, payload) = payload::split(p).unwrap();
                let mut raw = to_engine_point(id, vector.clone(), None, payload);
                raw.vector = VectorStructPersisted::Single(vector);
                raw
            })
            .collect();
        shard
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)),
            ))
            .unwrap();
        shard.flush();
    }

    #[tokio::test]
    async fn older_points_get_keyword_vectors_and_deleted_ones_stay_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (a, f, g) = (store("a"), file("f"), file("g"));
        let points: Vec<Point> = (0..7)
            .map(|i| {
                let file = if i == 3 { &g } else { &f };
                texted(
                    &a,
                    file,
                    i,
                    &format!("chunk {i} mentions zypper{i} and apt"),
                    json!({}),
                )
            })
            .collect();
        old_index(dir.path(), points.clone());

        let idx = open(dir.path());
        assert_eq!(idx.missing_keywords(&a).await.unwrap(), 7);
        assert!(keyword_chunks(&idx, &keyword_query(&a, "apt", None))
            .await
            .is_empty());
        // The dense leg works throughout.
        let dense = find(&idx, &a, points[2].vector.clone(), None, &[], 1, None)
            .await
            .unwrap();
        assert_eq!(dense.len(), 1);
        // A file deleted before the job gets to it is not brought back.
        idx.delete_file(None, &g).await.unwrap();
        let mut from = None;
        let mut rounds = 0;
        let mut indexed = 0;
        loop {
            let round = idx.index_keywords(&a, from, 2).await.unwrap();
            indexed += round.indexed;
            rounds += 1;
            match round.next {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        assert_eq!((indexed, rounds), (6, 3));
        assert_eq!(idx.missing_keywords(&a).await.unwrap(), 0);
        assert_eq!(idx.count(Some(&a), None).await.unwrap(), 6);
        assert_eq!(idx.count(None, Some(&g)).await.unwrap(), 0);
        let all = keyword_chunks(&idx, &keyword_query(&a, "apt", None)).await;
        assert_eq!(all.len(), 6);
        assert_eq!(
            keyword_chunks(&idx, &keyword_query(&a, "zypper5", None)).await,
            vec![5]
        );
        // Run again: nothing to do, nothing duplicated.
        assert_eq!(
            idx.index_keywords(&a, None, 100).await.unwrap(),
            KeywordRound::default()
        );
        // Reopened, it is an index with keyword vectors like any other.
        drop(idx);
        let idx = open(dir.path());
        assert_eq!(
            keyword_chunks(&idx, &keyword_query(&a, "zypper5", None)).await,
            vec![5]
        );
        idx.upsert(vec![texted(&a, &f, 9, "zypper9 is new", json!({}))])
            .await
            .unwrap();
        assert_eq!(
            keyword_chunks(&idx, &keyword_query(&a, "zypper9", None)).await,
            vec![9]
        );
        assert_eq!(idx.count(Some(&a), None).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn updating_vectors_skips_a_point_deleted_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path());
        let (a, f, g) = (store("a"), file("f"), file("g"));
        idx.upsert(vec![
            texted(&a, &f, 0, "kept", json!({})),
            texted(&a, &g, 1, "gone", json!({})),
        ])
        .await
        .unwrap();
        let gone = point_id(&g, &a, 1);
        idx.delete_file(None, &g).await.unwrap();
        let vectors = |id| PointVectorsPersisted {
            id: PointId::Uuid(id),
            vector: VectorStructPersisted::Named(
                [(
                    SPARSE_VECTOR.to_owned(),
                    VectorPersisted::Sparse(SparseVector::default()),
                )]
                .into(),
            ),
        };
        let n = idx
            .inner
            .update_vectors(vec![vectors(point_id(&f, &a, 0)), vectors(gone)])
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(idx.count(Some(&a), None).await.unwrap(), 1);
        assert_eq!(idx.count(None, Some(&g)).await.unwrap(), 0);
    }

    /// The shard is locked while open, keeps its payload indexes, knows its dimensions and
    /// refuses others.
    #[tokio::test]
    async fn reopening_keeps_points_and_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let idx = open(dir.path());
        let (a, f) = (store("a"), file("f"));
        idx.upsert(vec![point(
            &a,
            &f,
            0,
            axis(0, 1, 0.0),
            json!({"lang": "en"}),
        )])
        .await
        .unwrap();
        drop(idx);

        let idx = open(dir.path());
        // The WAL is locked while a shard is open: a second open of the same dir fails.
        assert!(EdgeIndex::open(dir.path(), DIMS).is_err());
        assert_eq!(idx.count(None, None).await.unwrap(), 1);
        let schema = info(&idx).payload_schema;
        assert!(schema.contains_key(&path(STORE_KEY).unwrap()));
        assert!(schema.contains_key(&path(FILE_KEY).unwrap()));
        assert!(schema.contains_key(&path(&attribute_path("lang").unwrap()).unwrap()));
        drop(idx);
        assert_eq!(EdgeIndex::stored_dims(dir.path()).unwrap(), Some(DIMS));
        assert_eq!(
            EdgeIndex::stored_dims(&dir.path().join("none")).unwrap(),
            None
        );
        assert!(EdgeIndex::open(dir.path(), DIMS * 2).is_err());
    }

    const CRASH_DIR: &str = "RAGSTORE_EDGE_CRASH_DIR";

    /// Only does something as the child process of `flushed_points_survive_a_crash`.
    #[tokio::test]
    async fn crash_child() {
        let Ok(dir) = std::env::var(CRASH_DIR) else {
            return;
        };
        let idx = open(Path::new(&dir));
        let (a, f, g) = (store("a"), file("f"), file("g"));
        let batch = |fi: &FileId| -> Vec<Point> {
            (0..50)
                .map(|c| point(&a, fi, c, axis(c as usize % DIMS, 0, 0.5), json!({})))
                .collect()
        };
        idx.upsert(batch(&f)).await.unwrap();
        idx.flush().await.unwrap();
        idx.upsert(batch(&g)).await.unwrap();
        std::process::abort();
    }

    const KEYWORD_CRASH_DIR: &str = "RAGSTORE_EDGE_KEYWORD_CRASH_DIR";
    const OLD_POINTS: u32 = 3_000;

    /// Only does something as the child process of
    /// `a_crash_while_keywords_are_indexed_resumes_without_duplicates`: three rounds, then dies.
    #[tokio::test]
    async fn keyword_crash_child() {
        let Ok(dir) = std::env::var(KEYWORD_CRASH_DIR) else {
            return;
        };
        let idx = open(Path::new(&dir));
        let mut from = None;
        for _ in 0..3 {
            from = idx
                .index_keywords(&store("a"), from, 500)
                .await
                .unwrap()
                .next;
        }
        std::process::abort();
    }

    #[tokio::test]
    async fn a_crash_while_keywords_are_indexed_resumes_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let (a, f) = (store("a"), file("f"));
        let points: Vec<Point> = (0..OLD_POINTS)
            .map(|i| {
                texted(
                    &a,
                    &f,
                    i,
                    &format!("chunk {i} names term{}", i % 50),
                    json!({}),
                )
            })
            .collect();
        old_index(dir.path(), points);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "index::edge::tests::keyword_crash_child",
                "--nocapture",
            ])
            .env(KEYWORD_CRASH_DIR, dir.path())
            .output()
            .unwrap()
            .status;
        assert!(!status.success(), "the child aborts");
        let idx = open(dir.path());
        // Each round was durable when it returned.
        assert_eq!(idx.missing_keywords(&a).await.unwrap(), 1_500);
        let mut from = None;
        let mut indexed = 0;
        loop {
            let round = idx.index_keywords(&a, from, 700).await.unwrap();
            indexed += round.indexed;
            match round.next {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        assert_eq!(indexed, 1_500);
        assert_eq!(idx.missing_keywords(&a).await.unwrap(), 0);
        assert_eq!(idx.count(None, None).await.unwrap(), u64::from(OLD_POINTS));
        let mut q = keyword_query(&a, "term7", None);
        q.limit = 100;
        let hits = idx.search(&q).await.unwrap();
        let ids: BTreeSet<Uuid> = hits.iter().map(|h| h.id).collect();
        assert_eq!((hits.len(), ids.len()), (60, 60));
        assert!(hits.iter().all(|h| h.chunk_index % 50 == 7));
    }

    #[tokio::test]
    async fn flushed_points_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "index::edge::tests::crash_child", "--nocapture"])
            .env(CRASH_DIR, dir.path())
            .output()
            .unwrap()
            .status;
        assert!(!status.success(), "the child aborts");
        let idx = open(dir.path());
        assert_eq!(
            idx.count(Some(&store("a")), Some(&file("f")))
                .await
                .unwrap(),
            50
        );
        let hits = find(&idx, &store("a"), axis(3, 0, 0.5), None, &[], 1, None)
            .await
            .unwrap();
        assert_eq!(hits[0].chunk_index % DIMS as u32, 3);
    }

    #[tokio::test]
    async fn maintain_builds_the_graph_and_search_stays_correct() {
        let dir = tempfile::tempdir().unwrap();
        let options = EdgeOptions {
            maintain_every: None,
            optimize_after: 1_000,
            indexing_threshold_kb: Some(1),
            full_scan_threshold_kb: None,
            ..EdgeOptions::default()
        };
        let idx = Arc::new(EdgeIndex::open_with(dir.path(), DIMS, options.clone()).unwrap());
        let (a, b) = (store("a"), store("b"));
        let vectors = random_vectors(1_200, 0x9e37_79b9_7f4a_7c15);
        let points: Vec<Point> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (vs, f) = if i % 3 == 0 {
                    (&b, file("odd"))
                } else {
                    (&a, file(&format!("f{}", i % 10)))
                };
                point(
                    vs,
                    &f,
                    i as u32,
                    v.clone(),
                    json!({"n": i % 7, "even": i % 2 == 0}),
                )
            })
            .collect();
        let graphs = || graph_vectors(&idx);

        idx.upsert(points[..900].to_vec()).await.unwrap();
        idx.maintain().await.unwrap();
        assert_eq!(graphs(), 0, "below the threshold nothing is optimised");
        idx.upsert(points[900..].to_vec()).await.unwrap();

        // Searches run while the graph is built.
        let during = {
            let idx = Arc::clone(&idx);
            let (a, probes) = (a.clone(), points.clone());
            tokio::spawn(async move {
                let mut checked = 0;
                for p in probes.iter().filter(|p| p.vector_store_id == a).take(200) {
                    let hits = find(&idx, &a, p.vector.clone(), None, &[], 3, None)
                        .await
                        .unwrap();
                    assert_eq!(hits[0].id, p.id);
                    checked += 1;
                }
                checked
            })
        };
        idx.maintain().await.unwrap();
        assert_eq!(during.await.unwrap(), 200);
        assert!(graphs() > 0, "maintain built an HNSW index");
        assert_eq!(idx.inner.changed.load(Ordering::Acquire), 0);

        assert_eq!(idx.count(None, None).await.unwrap(), 1_200);
        assert_eq!(idx.count(Some(&b), None).await.unwrap(), 400);
        let filter = Filter::parse(&json!({"type": "and", "filters": [
            {"type": "eq", "key": "n", "value": 3},
            {"type": "eq", "key": "even", "value": true}
        ]}))
        .unwrap();
        for p in points.iter().step_by(7).take(60) {
            let hits = find(
                &idx,
                &p.vector_store_id,
                p.vector.clone(),
                None,
                &[],
                5,
                None,
            )
            .await
            .unwrap();
            assert_eq!(hits[0].id, p.id, "nearest of its own vector");
            assert!(hits
                .iter()
                .all(|h| (h.chunk_index % 3 == 0) == (p.vector_store_id == b)));

            let hits = find(&idx, &a, p.vector.clone(), Some(&filter), &[], 1000, None)
                .await
                .unwrap();
            let got: BTreeSet<u32> = hits.iter().map(|h| h.chunk_index).collect();
            let want: BTreeSet<u32> = (0..1_200u32)
                .filter(|i| i % 3 != 0 && i % 7 == 3 && i % 2 == 0)
                .collect();
            assert_eq!(got, want);
        }

        // Writes after optimisation land next to the graph and are found too.
        let f0 = file("f0");
        idx.set_attributes(&a, &f0, &attrs(json!({"moved": true})))
            .await
            .unwrap();
        let moved = Filter::parse(&json!({"type": "eq", "key": "moved", "value": true})).unwrap();
        let hits = find(&idx, &a, vectors[10].clone(), Some(&moved), &[], 1000, None)
            .await
            .unwrap();
        assert_eq!(hits.len(), 80);
        assert!(hits.iter().all(|h| h.file_id == f0));
        assert_eq!(hits[0].chunk_index, 10);
        idx.delete_file(Some(&a), &f0).await.unwrap();
        assert_eq!(idx.count(None, None).await.unwrap(), 1_120);

        // The graph survives a restart.
        drop(idx);
        let idx = EdgeIndex::open_with(dir.path(), DIMS, options).unwrap();
        assert!(graph_vectors(&idx) > 0);
        let hits = find(&idx, &b, vectors[999].clone(), None, &[], 1, None)
            .await
            .unwrap();
        assert_eq!(hits[0].chunk_index, 999);
    }
}
