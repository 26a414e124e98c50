//! The default [`Embedder`]: all-MiniLM-L6-v2 run in-process by ONNX Runtime (through `ort`).
//! No network: the model and the runtime library are files under the models directory, put there
//! by `scripts/fetch-models.sh`.
//!
//! The model is a graph of ONNX Runtime's fused BERT operators built from the reference weights
//! (see the script). It is run with `ort` directly rather than through fastembed, which fixes the
//! graph optimisation level and has no way to turn off the memory arena or the memory pattern,
//! which are most of the runtime's memory (examples/embed_bench.rs measures both). Tokenizing,
//! mean pooling and normalising are done here the way fastembed does them (a test holds the two
//! to the same vectors).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::anyhow;
use async_trait::async_trait;
use futures_util::future::try_join_all;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::{Encoding, Tokenizer};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::chunk::{load_tokenizer, Chunker, Tokens};
use super::embed::{normalize, Embedder};
use crate::domain::{Error, Result};

/// The model's directory under the models directory; also the model name reported.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
const ORT_DIR: &str = "onnxruntime";
/// all-MiniLM-L6-v2 was trained on 256-token inputs; used when sentence_bert_config.json is absent.
const DEFAULT_MAX_SEQ_LENGTH: usize = 256;
const OUTPUT: &str = "last_hidden_state";
/// The fp32 model file, exact to the reference.
pub const FP32_FILE: &str = "model.onnx";
/// The int8 model file (scripts/fetch-models.sh builds both).
pub const INT8_FILE: &str = "model_int8.onnx";

/// How the model is run. [`LocalEmbedder::load`] uses [`LocalOptions::for_threads`];
/// examples/embed_bench.rs compares the alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOptions {
    /// Model runs at a time, each on its own session.
    pub sessions: usize,
    /// ONNX Runtime threads inside one run.
    pub intra_threads: usize,
    /// Tokens per run, padding included: texts are sorted by length and neighbours batched
    /// until the next would pass this (a text longer than it runs alone). Small is fast: a
    /// run's intermediate tensors then stay in the core's cache (one 256-token window's
    /// widest is 1.5 MB), and the per-run overhead is small next to a window's compute.
    pub batch_tokens: usize,
    /// ONNX Runtime's CPU memory arena: keeps the peak of every run's buffers for the life of
    /// the session.
    pub arena: bool,
    /// ONNX Runtime's memory pattern: plans one block per input shape, cached per shape.
    pub memory_pattern: bool,
    /// Graph optimisation level 0 (none) ..= 3 (all); the model file is already fused.
    pub optimization: u8,
    /// Threads spin waiting for work between runs (only matters with `intra_threads > 1`).
    pub spinning: bool,
    /// The model file in the model's directory.
    pub model_file: String,
}

/// Which of the two model files runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// `model_int8.onnx`: weights quantised per output channel, activations per run (ONNX
    /// Runtime's dynamic quantisation, through the CPU's VNNI instructions). About twice the
    /// tokens per second of fp32, vectors at cosine ~0.99 to the reference; on the retrieval
    /// evaluation it ranks as well as fp32 (README, "Retrieval evaluation"). Each text runs
    /// alone, so its vector never depends on what else was in the batch.
    #[default]
    Int8,
    /// `model.onnx`: the reference fp32 weights, vectors equal to sentence-transformers'.
    Fp32,
}

impl LocalOptions {
    /// `threads` cores for embedding: one session per core, one thread each, which beats
    /// one session with `threads` threads on the server's batches (examples/embed_bench.rs).
    pub fn for_threads(threads: usize) -> Self {
        LocalOptions {
            sessions: threads.max(1),
            ..LocalOptions::default()
        }
    }

    /// [`LocalOptions::for_threads`] running the model file of `precision`.
    pub fn for_precision(threads: usize, precision: Precision) -> Self {
        match precision {
            Precision::Fp32 => Self::for_threads(threads),
            Precision::Int8 => LocalOptions {
                model_file: INT8_FILE.into(),
                // One text per run: dynamic quantisation scales a run's activations by their
                // range over the whole batch, so batching would make a text's vector depend on
                // its neighbours (and on padding).
                batch_tokens: 1,
                // With one text per run a run's buffers are bounded by one window (a few MB),
                // so keeping them in ONNX Runtime's arena costs little and saves an allocation
                // per tensor per run: ~6 % more tokens/s (examples/embed_bench.rs).
                arena: true,
                ..Self::for_threads(threads)
            },
        }
    }
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            sessions: 1,
            intra_threads: 1,
            batch_tokens: 512,
            arena: false,
            memory_pattern: false,
            optimization: 3,
            spinning: false,
            model_file: FP32_FILE.into(),
        }
    }
}

/// all-MiniLM-L6-v2 on ONNX Runtime. At most `sessions` model runs at a time, each on its own
/// session, all off the async reactor.
pub struct LocalEmbedder {
    dims: usize,
    /// Tokens of text that fit in one model run: the model's window less its special tokens.
    capacity: usize,
    tokenizer: Arc<Tokenizer>,
    /// The special tokens the tokenizer puts before and after a text ([CLS] and [SEP]).
    specials: Arc<Specials>,
    sessions: Arc<Mutex<Vec<Session>>>,
    permits: Arc<Semaphore>,
    /// Bulk (ingestion) runs pass this gate before they queue for a session, so at most one
    /// per session waits or runs: a search's query never queues behind a whole file's worth.
    bulk_gate: Arc<Semaphore>,
    /// How many sessions the pool holds: one call's texts are spread over all of them.
    session_count: usize,
    batch_tokens: usize,
    /// Whether the model takes `token_type_ids` (all zero here: one segment).
    token_types: bool,
    /// [`Embedder::vectors_id`]: the model name, plus the model file when it is not the
    /// reference one (its vectors differ slightly, so cached ones are not reused across them).
    vectors_id: String,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dims", &self.dims)
            .field("capacity", &self.capacity)
            .field("free_sessions", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Specials {
    before: Vec<u32>,
    after: Vec<u32>,
}

impl LocalEmbedder {
    /// Loads the runtime from `<models_dir>/onnxruntime/` and the model from
    /// `<models_dir>/all-MiniLM-L6-v2/`, for `threads` concurrent runs (at least one).
    /// Blocking: call it from `spawn_blocking` or before the server starts.
    pub fn load(models_dir: &Path, threads: usize) -> Result<Self> {
        Self::load_options(models_dir, &LocalOptions::for_threads(threads))
    }

    /// A [`Chunker`] counting tokens with this model's tokenizer.
    pub fn chunker(&self) -> Chunker {
        Chunker::new(self.tokens())
    }

    /// `sessions` concurrent runs of `intra_threads` ONNX Runtime threads each, otherwise as
    /// [`Self::load`].
    pub fn load_with(models_dir: &Path, sessions: usize, intra_threads: usize) -> Result<Self> {
        Self::load_options(
            models_dir,
            &LocalOptions {
                sessions,
                intra_threads,
                ..LocalOptions::default()
            },
        )
    }

    /// Loads with every option spelled out (examples/embed_bench.rs compares them).
    pub fn load_options(models_dir: &Path, options: &LocalOptions) -> Result<Self> {
        let sessions = options.sessions.max(1);
        let started = Instant::now();
        let models_dir = std::path::absolute(models_dir)?;
        let model_dir = models_dir.join(MODEL_NAME);
        let model_path = model_dir.join(&options.model_file);
        let onnx_file = std::fs::read(&model_path).map_err(|e| missing(&model_path, e))?;
        let tokenizer_path = model_dir.join("tokenizer.json");
        if let Err(e) = std::fs::metadata(&tokenizer_path) {
            return Err(missing(&tokenizer_path, e));
        }
        let window = max_seq_length(&model_dir);
        let tokenizer = load_tokenizer(&tokenizer_path)?;
        let specials = Specials::of(&tokenizer)?;
        let capacity = window
            .saturating_sub(specials.before.len() + specials.after.len())
            .max(1);

        let environment = ort_environment(&find_ort_library(&models_dir.join(ORT_DIR))?)?;
        let mut pool = Vec::with_capacity(sessions);
        // The sessions share the weights ONNX Runtime repacks for its matrix kernels, instead of
        // each holding its own copy.
        let shared = ort::session::builder::PrepackedWeights::new();
        for _ in 0..sessions {
            let session =
                build_session(&environment, options, &onnx_file, &shared).map_err(|e| {
                    Error::Internal(anyhow!("cannot load {}: {e}", model_path.display()))
                })?;
            pool.push(session);
        }
        drop(onnx_file);
        let token_types = pool.first().is_some_and(|s| {
            s.inputs()
                .iter()
                .any(|input| input.name() == "token_type_ids")
        });
        let mut embedder = LocalEmbedder {
            dims: 0,
            capacity,
            tokenizer: Arc::new(tokenizer),
            specials: Arc::new(specials),
            sessions: Arc::new(Mutex::new(pool)),
            permits: Arc::new(Semaphore::new(sessions)),
            bulk_gate: Arc::new(Semaphore::new(sessions)),
            session_count: sessions,
            batch_tokens: options.batch_tokens.max(1),
            token_types,
            vectors_id: if options.model_file == FP32_FILE {
                MODEL_NAME.to_owned()
            } else {
                format!("{MODEL_NAME}/{}", options.model_file)
            },
        };
        // One run tells the real output size and catches a model that loads but cannot run.
        let probe = plan(
            &embedder.tokenizer,
            &embedder.specials,
            &["ragstore".to_owned()],
            capacity,
        )
        .and_then(|plan| embedder.run_blocking(&plan.pieces))
        .map_err(|e| Error::Internal(anyhow!("{MODEL_NAME} does not run: {e}")))?;
        embedder.dims = probe.first().map_or(0, Vec::len);
        if embedder.dims == 0 {
            return Err(Error::Internal(anyhow!(
                "{MODEL_NAME} returned an empty embedding"
            )));
        }
        tracing::info!(
            model = MODEL_NAME,
            file = %options.model_file,
            dims = embedder.dims,
            window,
            sessions,
            intra_threads = options.intra_threads,
            batch_tokens = options.batch_tokens,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        Ok(embedder)
    }

    /// Runs `pieces` on a pooled session, off the reactor: one vector per piece, normalised.
    async fn run(&self, pieces: Vec<Piece>, bulk: bool) -> Result<Vec<Vec<f32>>> {
        let gate = if bulk {
            Some(
                self.bulk_gate
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| Error::Internal(e.into()))?,
            )
        } else {
            None
        };
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        let sessions = self.sessions.clone();
        let token_types = self.token_types;
        tokio::task::spawn_blocking(move || {
            let (_gate, _permit) = (gate, permit);
            let mut lease = SessionLease::take(&sessions)?;
            run_batch(lease.session(), &pieces, token_types)
        })
        .await?
    }

    /// [`Self::run`] on the calling thread (loading, before the pool is shared).
    fn run_blocking(&self, pieces: &[Piece]) -> Result<Vec<Vec<f32>>> {
        let mut lease = SessionLease::take(&self.sessions)?;
        run_batch(lease.session(), pieces, self.token_types)
    }
}

impl Specials {
    /// What the tokenizer's post-processor puts around a text, found by encoding one word
    /// with and without special tokens.
    fn of(tokenizer: &Tokenizer) -> Result<Self> {
        let encode = |specials| {
            tokenizer
                .encode("ragstore", specials)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| Error::Internal(anyhow!("tokenizer: {e}")))
        };
        let (bare, full) = (encode(false)?, encode(true)?);
        let at = full
            .windows(bare.len())
            .position(|w| w == bare.as_slice())
            .filter(|_| !bare.is_empty())
            .ok_or_else(|| Error::Internal(anyhow!("tokenizer: text not found among its ids")))?;
        Ok(Specials {
            before: full[..at].to_vec(),
            after: full[at + bare.len()..].to_vec(),
        })
    }

    fn wrap(&self, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.before.len() + ids.len() + self.after.len());
        out.extend_from_slice(&self.before);
        out.extend_from_slice(ids);
        out.extend_from_slice(&self.after);
        out
    }
}

fn build_session(
    environment: &ort::environment::Environment,
    options: &LocalOptions,
    model: &[u8],
    shared: &ort::session::builder::PrepackedWeights,
) -> std::result::Result<Session, String> {
    let level = match options.optimization {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::All,
    };
    let cpu = ort::ep::CPU::default()
        .with_arena_allocator(options.arena)
        .build();
    let text = |e: ort::Error<_>| e.to_string();
    Session::builder(environment)
        .map_err(|e| e.to_string())?
        .with_execution_providers([cpu])
        .map_err(text)?
        .with_optimization_level(level)
        .map_err(text)?
        .with_intra_threads(options.intra_threads.max(1))
        .map_err(text)?
        .with_inter_threads(1)
        .map_err(text)?
        .with_memory_pattern(options.memory_pattern)
        .map_err(text)?
        .with_intra_op_spinning(options.spinning)
        .map_err(text)?
        .with_prepacked_weights(shared)
        .map_err(text)?
        .commit_from_memory(model)
        .map_err(|e| e.to_string())
}

/// One batch through the model: ids padded to the longest, mean pooling over the real tokens,
/// each vector normalised (as fastembed and sentence-transformers do).
fn run_batch(session: &mut Session, pieces: &[Piece], token_types: bool) -> Result<Vec<Vec<f32>>> {
    let rows = pieces.len();
    let width = pieces.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    if rows == 0 || width == 0 {
        return Ok(vec![Vec::new(); rows]);
    }
    let mut ids = vec![0i64; rows * width];
    let mut mask = vec![0i64; rows * width];
    for (r, piece) in pieces.iter().enumerate() {
        for (c, &id) in piece.ids.iter().enumerate() {
            ids[r * width + c] = i64::from(id);
            mask[r * width + c] = 1;
        }
    }
    let model_error = |e: ort::Error| Error::Internal(anyhow!("{MODEL_NAME}: {e}"));
    let shape = [rows, width];
    let mut inputs = vec![
        (
            "input_ids",
            Tensor::from_array((shape, ids))
                .map_err(model_error)?
                .into_dyn(),
        ),
        (
            "attention_mask",
            Tensor::from_array((shape, mask.clone()))
                .map_err(model_error)?
                .into_dyn(),
        ),
    ];
    if token_types {
        inputs.push((
            "token_type_ids",
            Tensor::from_array((shape, vec![0i64; rows * width]))
                .map_err(model_error)?
                .into_dyn(),
        ));
    }
    let outputs = session.run(inputs).map_err(model_error)?;
    let hidden = outputs
        .get(OUTPUT)
        .ok_or_else(|| Error::Internal(anyhow!("{MODEL_NAME} has no output {OUTPUT}")))?;
    let (out_shape, values) = hidden.try_extract_tensor::<f32>().map_err(model_error)?;
    let dims = match **out_shape {
        [r, w, d] if r as usize == rows && w as usize == width && d > 0 => d as usize,
        _ => {
            return Err(Error::Internal(anyhow!(
                "{MODEL_NAME} returned shape {out_shape:?} for {rows}x{width} tokens"
            )))
        }
    };
    Ok(pieces
        .iter()
        .enumerate()
        .map(|(r, piece)| {
            let mut sum = vec![0f32; dims];
            let start = r * width * dims;
            for token in values[start..start + piece.ids.len() * dims].chunks_exact(dims) {
                sum.iter_mut().zip(token).for_each(|(s, v)| *s += v);
            }
            let n = piece.ids.len() as f32;
            sum.iter_mut().for_each(|s| *s /= n);
            normalized(sum)
        })
        .collect())
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        MODEL_NAME
    }

    fn vectors_id(&self) -> &str {
        &self.vectors_id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    /// The text tokens one run reads: the model's 256-token window less [CLS] and [SEP], so an
    /// `auto` chunk of this size is embedded whole in a single run.
    fn max_input_tokens(&self) -> usize {
        self.capacity
    }

    fn tokens(&self) -> Tokens {
        Tokens::Model(self.tokenizer.clone())
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let span = tracing::debug_span!("embed", texts = texts.len());
        self.embed_texts(texts, false).instrument(span).await
    }

    async fn embed_bulk(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let span = tracing::debug_span!("ingest.embed", texts = texts.len());
        self.embed_texts(texts, true).instrument(span).await
    }
}

impl LocalEmbedder {
    async fn embed_texts(&self, texts: Vec<String>, bulk: bool) -> Result<Vec<Vec<f32>>> {
        let (tokenizer, specials) = (self.tokenizer.clone(), self.specials.clone());
        let capacity = self.capacity;
        let plan =
            tokio::task::spawn_blocking(move || plan(&tokenizer, &specials, &texts, capacity))
                .await??;
        let batches = plan.batches(self.batch_tokens, self.session_count);
        let vectors = try_join_all(batches.iter().map(|batch| {
            let pieces: Vec<Piece> = batch.iter().map(|&i| plan.pieces[i].clone()).collect();
            let (texts, tokens) = (pieces.len(), pieces.iter().map(|p| p.ids.len()).sum());
            async move {
                let started = std::time::Instant::now();
                let vectors = self.run(pieces, bulk).await?;
                crate::metrics::embedded(texts, tokens, started.elapsed());
                Ok::<_, Error>(vectors)
            }
        }))
        .await?;

        let mut sums = vec![vec![0f32; self.dims]; plan.texts];
        for (&i, vector) in batches.iter().flatten().zip(vectors.into_iter().flatten()) {
            if vector.len() != self.dims {
                return Err(Error::Internal(anyhow!(
                    "{MODEL_NAME} returned {} dims, expected {}",
                    vector.len(),
                    self.dims
                )));
            }
            let sum = &mut sums[plan.pieces[i].text];
            sum.iter_mut().zip(&vector).for_each(|(s, v)| *s += v);
        }
        // The mean's direction is the sum's: normalising the sum is normalising the mean.
        Ok(sums.into_iter().map(normalized).collect())
    }
}

/// One window of one text, as the model reads it (special tokens included).
#[derive(Debug, Clone)]
struct Piece {
    /// Index of the text it is from.
    text: usize,
    ids: Vec<u32>,
}

/// Every text cut into pieces that fit one window.
struct Plan {
    texts: usize,
    pieces: Vec<Piece>,
}

impl Plan {
    /// Indices into `pieces` in batches: sorted by length so a batch pads little, neighbours
    /// grouped while the padded batch stays within `batch_tokens`, and at most a
    /// `1/sessions` share of the pieces in one batch so a call keeps every session busy.
    fn batches(&self, batch_tokens: usize, sessions: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.pieces.len()).collect();
        order.sort_by_key(|&i| self.pieces[i].ids.len());
        let share = self.pieces.len().div_ceil(sessions.max(1)).max(1);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut current: Vec<usize> = Vec::new();
        for i in order {
            // Sorted ascending, so this piece is the longest of the batch it joins.
            let width = self.pieces[i].ids.len();
            if !current.is_empty()
                && ((current.len() + 1) * width > batch_tokens || current.len() == share)
            {
                batches.push(std::mem::take(&mut current));
            }
            current.push(i);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }
}

/// Every text cut into windows that fit the model, as the token ids it reads.
fn plan(
    tokenizer: &Tokenizer,
    specials: &Specials,
    texts: &[String],
    capacity: usize,
) -> Result<Plan> {
    let mut pieces = Vec::with_capacity(texts.len());
    for (t, text) in texts.iter().enumerate() {
        let encoding = encode(tokenizer, text)?;
        for (tokens, _) in window_ranges(&encoding, text.len(), capacity) {
            let ids = specials.wrap(&encoding.get_ids()[tokens]);
            pieces.push(Piece { text: t, ids });
        }
    }
    Ok(Plan {
        texts: texts.len(),
        pieces,
    })
}

fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Encoding> {
    tokenizer
        .encode(text, false)
        .map_err(|e| Error::Internal(anyhow!("tokenizer: {e}")))
}

/// `text` cut into consecutive slices of at most `capacity` tokens each (with their token
/// counts), as few as possible and of even size, cut only where a word starts so each slice
/// tokenizes on its own exactly as it did in place. Every byte of `text` is in one slice.
#[cfg(test)]
fn windows<'t>(
    tokenizer: &Tokenizer,
    text: &'t str,
    capacity: usize,
) -> Result<Vec<(&'t str, usize)>> {
    let encoding = encode(tokenizer, text)?;
    window_ranges(&encoding, text.len(), capacity)
        .into_iter()
        .map(|(tokens, bytes)| {
            let slice = text.get(bytes.clone()).ok_or_else(|| {
                Error::Internal(anyhow!(
                    "tokenizer offsets {bytes:?} are not char boundaries"
                ))
            })?;
            Ok((slice, tokens.len()))
        })
        .collect()
}

/// The windows of [`windows`] as token and byte ranges of `encoding`, the encoding of a text
/// `text_len` bytes long. The model reads each window's tokens as they are in `encoding`.
fn window_ranges(
    encoding: &Encoding,
    text_len: usize,
    capacity: usize,
) -> Vec<(Range<usize>, Range<usize>)> {
    let n = encoding.len();
    if n <= capacity {
        return vec![(0..n, 0..text_len)];
    }
    let offsets = encoding.get_offsets();
    let words = encoding.get_word_ids();
    let target = n.div_ceil(n.div_ceil(capacity));
    let mut out = Vec::new();
    let (mut start_token, mut start_byte) = (0, 0);
    while start_token < n {
        let mut end = (start_token + target).min(n);
        if end < n {
            // Back off to the start of a word; a single word longer than a window is cut inside.
            let word_start = (start_token + 1..=end)
                .rev()
                .find(|&j| words[j] != words[j - 1]);
            end = word_start.unwrap_or(end);
        }
        let end_byte = if end < n { offsets[end].0 } else { text_len };
        out.push((start_token..end, start_byte..end_byte));
        (start_token, start_byte) = (end, end_byte);
    }
    out
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    normalize(&mut v);
    v
}

/// A session taken from the pool for one run, put back even if the run panics.
struct SessionLease<'p> {
    pool: &'p Mutex<Vec<Session>>,
    session: Option<Session>,
}

impl<'p> SessionLease<'p> {
    fn take(pool: &'p Mutex<Vec<Session>>) -> Result<Self> {
        let session = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        match session {
            // Never empty: each run holds one of as many permits as there are sessions.
            None => Err(Error::Internal(anyhow!("no embedding session free"))),
            Some(s) => Ok(SessionLease {
                pool,
                session: Some(s),
            }),
        }
    }

    fn session(&mut self) -> &mut Session {
        match self.session.as_mut() {
            Some(s) => s,
            None => unreachable!("a lease holds its session until dropped"),
        }
    }
}

impl Drop for SessionLease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            self.pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(s);
        }
    }
}

fn missing(path: &Path, e: std::io::Error) -> Error {
    Error::Internal(anyhow!(
        "embedding model file {} is missing or unreadable ({e}); run scripts/fetch-models.sh \
         (or set the models directory to where it put them)",
        path.display()
    ))
}

/// `max_seq_length` from sentence_bert_config.json, else the model's known 256.
fn max_seq_length(model_dir: &Path) -> usize {
    std::fs::read(model_dir.join("sentence_bert_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("max_seq_length")?.as_u64())
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n > 2)
        .unwrap_or(DEFAULT_MAX_SEQ_LENGTH)
}

/// The process's one ONNX Runtime environment, loaded from `<models_dir>/onnxruntime/` on first
/// use: for anything else in the process that runs ONNX models (examples/embed_bench.rs runs
/// fastembed beside this embedder).
pub fn onnx_runtime(models_dir: &Path) -> Result<ort::environment::Environment> {
    ort_environment(&find_ort_library(
        &std::path::absolute(models_dir)?.join(ORT_DIR),
    )?)
}

/// `libonnxruntime.so`, else the newest `libonnxruntime.so.1.*`, in `dir`.
fn find_ort_library(dir: &Path) -> Result<PathBuf> {
    let plain = dir.join("libonnxruntime.so");
    if plain.is_file() {
        return Ok(plain);
    }
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| missing(&plain, e))?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let version = path
                .file_name()?
                .to_str()?
                .strip_prefix("libonnxruntime.so.")?
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, path))
        })
        .collect();
    versioned.sort();
    versioned.pop().map(|(_, path)| path).ok_or_else(|| {
        missing(
            &plain,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no libonnxruntime.so*"),
        )
    })
}

/// The process's one ONNX Runtime environment, created on first use from `library`. ort allows
/// one environment per process and loads one library, so later calls reuse the first; a failed
/// attempt leaves nothing behind and may be retried (hence a Mutex, not a OnceLock).
fn ort_environment(library: &Path) -> Result<ort::environment::Environment> {
    static ENVIRONMENT: Mutex<Option<(PathBuf, ort::environment::Environment)>> = Mutex::new(None);
    let mut current = ENVIRONMENT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((loaded, environment)) = current.as_ref() {
        if loaded != library {
            tracing::warn!(
                loaded = %loaded.display(),
                requested = %library.display(),
                "ONNX Runtime is already loaded in this process; keeping the loaded library"
            );
        }
        return Ok(environment.clone());
    }
    let environment = ort::init_from(library)
        .map_err(|e| {
            Error::Internal(anyhow!(
                "cannot load ONNX Runtime: {e}; run scripts/fetch-models.sh to fetch version 1.31.1"
            ))
        })?
        .with_name("ragstore")
        .build()
        .map_err(|e| Error::Internal(anyhow!("cannot start ONNX Runtime: {e}")))?;
    *current = Some((library.to_path_buf(), environment.clone()));
    Ok(environment)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::Chunking;
    use std::sync::OnceLock;

    fn models_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    /// One loaded model shared by the tests (it holds no runtime-bound state).
    fn embedder() -> &'static LocalEmbedder {
        static EMBEDDER: OnceLock<LocalEmbedder> = OnceLock::new();
        EMBEDDER.get_or_init(|| {
            LocalEmbedder::load(&models_dir(), 2)
                .expect("model missing: run scripts/fetch-models.sh first")
        })
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn norm(a: &[f32]) -> f32 {
        dot(a, a).sqrt()
    }

    fn long_text(words: usize) -> String {
        let topics = [
            "The harbour town woke early and fishermen mended their nets by the grey water.",
            "Compilers translate source code into machine instructions through many passes.",
            "A good sourdough needs patience, a lively starter and a very hot oven.",
            "Volcanic eruptions reshape islands and fertilise the soil for centuries.",
        ];
        let mut s = String::new();
        let mut i = 0;
        while s.split_whitespace().count() < words {
            s.push_str(topics[(i / 6) % topics.len()]);
            s.push(' ');
            i += 1;
        }
        s
    }

    #[tokio::test]
    async fn similar_sentences_are_closer() {
        let e = embedder();
        assert_eq!(e.model(), "all-MiniLM-L6-v2");
        assert_eq!(e.dims(), 384);
        assert_eq!(e.max_input_tokens(), 254);
        let chunks = e
            .chunker()
            .chunk(&long_text(400), Chunking::auto(254), false);
        assert!(chunks.len() > 1 && chunks.iter().all(|c| c.tokens <= 254));
        let v = e
            .embed(vec![
                "A cat sits on the mat".into(),
                "A kitten is sitting on a rug".into(),
                "Quarterly tax filing deadlines".into(),
            ])
            .await
            .unwrap();
        assert_eq!(v.len(), 3);
        for x in &v {
            assert_eq!(x.len(), 384);
            assert!((norm(x) - 1.0).abs() < 1e-4, "{}", norm(x));
        }
        let (near, far) = (dot(&v[0], &v[1]), dot(&v[0], &v[2]));
        assert!(near > far + 0.2, "near {near}, far {far}");
    }

    /// A query asked while a whole file is being embedded waits for at most one bulk run per
    /// session, not for the file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interactive_calls_do_not_queue_behind_bulk_work() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let e = LocalEmbedder::load_options(
            &models_dir(),
            &LocalOptions {
                sessions: 1,
                batch_tokens: 64,
                ..LocalOptions::default()
            },
        )
        .unwrap();
        let e = Arc::new(e);
        let bulk_done = Arc::new(AtomicBool::new(false));
        let texts: Vec<String> = (0..400).map(|i| format!("{} {i}", long_text(40))).collect();
        let bulk = {
            let (e, done) = (e.clone(), bulk_done.clone());
            tokio::spawn(async move {
                let v = e.embed_bulk(texts).await.unwrap();
                done.store(true, Ordering::SeqCst);
                v.len()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !bulk_done.load(Ordering::SeqCst),
            "the bulk call is still running"
        );
        let q = e.embed(vec!["where is the harbour".into()]).await.unwrap();
        assert_eq!(q.len(), 1);
        assert!(
            !bulk_done.load(Ordering::SeqCst),
            "the query did not wait for the bulk call"
        );
        assert_eq!(bulk.await.unwrap(), 400);
    }

    #[tokio::test]
    async fn vectors_do_not_depend_on_the_batch() {
        let e = embedder();
        let alone = e.embed(vec!["A cat sits on the mat".into()]).await.unwrap();
        let mut texts: Vec<String> = (0..70)
            .map(|i| format!("filler sentence {i} about nothing"))
            .collect();
        texts.push(long_text(300));
        texts.insert(40, "A cat sits on the mat".into());
        let batched = e.embed(texts).await.unwrap();
        assert_eq!(batched.len(), 72);
        assert!(dot(&alone[0], &batched[40]) > 0.9999);
        assert!(e.embed(Vec::new()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn long_text_is_embedded_whole() {
        let e = embedder();
        let text = long_text(800);
        let tokens = e.tokenizer.encode(text.as_str(), false).unwrap().len();
        assert!((1000..1200).contains(&tokens), "{tokens}");
        let pieces = windows(&e.tokenizer, &text, e.capacity).unwrap();
        let fewest = tokens.div_ceil(254);
        assert!(
            (fewest..=fewest + 1).contains(&pieces.len()),
            "{}",
            pieces.len()
        );
        assert_eq!(pieces.iter().map(|(p, _)| *p).collect::<String>(), text);
        for (piece, n) in &pieces {
            assert!(*n <= 254);
            assert_eq!(e.tokenizer.encode(*piece, false).unwrap().len(), *n);
        }

        // The first 256 tokens (what a truncating embedder would read).
        let encoding = e.tokenizer.encode(text.as_str(), false).unwrap();
        let head = &text[..encoding.get_offsets()[256].0];
        let v = e.embed(vec![text.clone(), head.into()]).await.unwrap();
        assert!((norm(&v[0]) - 1.0).abs() < 1e-4);
        assert!(dot(&v[0], &v[1]) < 0.99, "{}", dot(&v[0], &v[1]));

        // It is the normalised mean of its windows.
        let parts = e
            .embed(pieces.iter().map(|(p, _)| p.to_string()).collect())
            .await
            .unwrap();
        let mut mean = vec![0f32; 384];
        for p in &parts {
            mean.iter_mut().zip(p).for_each(|(m, x)| *m += x);
        }
        assert!(dot(&normalized(mean), &v[0]) > 0.9999);
    }

    /// sentence-transformers' all-MiniLM-L6-v2 (the reference fp32 model, torch): the first 8
    /// of 384 dims of each text's vector and their cosines. Catches pooling (CLS instead of the
    /// mean, padding counted), normalisation, a wrong tokenization or weights.
    #[tokio::test]
    async fn matches_sentence_transformers() {
        let texts = [
            "A cat sits on the mat",
            "A kitten is sitting on a rug",
            "Quarterly tax filing deadlines",
            "apt-get install builds the dependency tree of a Debian package before it unpacks anything.",
        ];
        let heads: [[f32; 8]; 4] = [
            [
                0.128725, -0.032673, -0.022916, 0.040231, -0.035454, 0.031558, 0.049991, 0.028024,
            ],
            [
                0.054712, -0.015917, 0.020789, 0.041939, -0.035156, 0.040964, 0.008861, 0.029521,
            ],
            [
                -0.016602, -0.015124, 0.020906, -0.018228, -0.019636, -0.046234, -0.04872, 0.003894,
            ],
            [
                -0.109849, 0.019982, 0.101204, -0.0537, 0.049376, -0.099957, -0.051646, -0.059978,
            ],
        ];
        let cosines = [
            (0, 1, 0.694509),
            (0, 2, 0.030187),
            (0, 3, -0.099473),
            (1, 2, 0.074503),
            (1, 3, -0.014023),
            (2, 3, -0.048566),
        ];
        let v = embedder()
            .embed(texts.iter().map(|t| t.to_string()).collect())
            .await
            .unwrap();
        for (vector, head) in v.iter().zip(heads) {
            for (got, want) in vector.iter().zip(head) {
                assert!((got - want).abs() < 2e-4, "{:?} vs {head:?}", &vector[..8]);
            }
        }
        for (a, b, want) in cosines {
            let got = dot(&v[a], &v[b]);
            assert!((got - want).abs() < 2e-4, "{a}-{b}: {got} vs {want}");
        }
    }

    /// fastembed on the same model file and tokenizer gives the same vectors (one text per run,
    /// as a batch of one has no padding to differ on).
    #[tokio::test]
    async fn matches_fastembed_on_the_same_model() {
        use fastembed::UserDefinedEmbeddingModel;
        use fastembed::{InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles};
        let dir = models_dir().join(MODEL_NAME);
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let model = UserDefinedEmbeddingModel::new(
            read("model.onnx"),
            TokenizerFiles {
                tokenizer_file: read("tokenizer.json"),
                config_file: read("config.json"),
                special_tokens_map_file: read("special_tokens_map.json"),
                tokenizer_config_file: read("tokenizer_config.json"),
            },
        )
        .with_pooling(Pooling::Mean);
        let environment =
            ort_environment(&find_ort_library(&models_dir().join(ORT_DIR)).unwrap()).unwrap();
        let options = InitOptionsUserDefined::new()
            .with_environment(environment)
            .with_max_length(256)
            .with_intra_threads(1);
        let mut fastembed = TextEmbedding::try_new_from_user_defined(model, options).unwrap();
        let e = embedder();
        let encoding = e.tokenizer.encode(long_text(400).as_str(), false).unwrap();
        let window = long_text(400)[..encoding.get_offsets()[e.capacity].0].to_string();
        let texts = vec![
            "hello".to_string(),
            "A cat sits on the mat".into(),
            "Compilers translate source code into machine instructions.".into(),
            window,
        ];
        let ours = e.embed(texts.clone()).await.unwrap();
        let theirs = fastembed.embed(&texts, Some(1)).unwrap();
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(dot(a, b) >= 0.99999, "text {i}: cosine {}", dot(a, b));
        }
    }

    fn plan_of(lengths: &[usize]) -> Plan {
        Plan {
            texts: lengths.len(),
            pieces: lengths
                .iter()
                .enumerate()
                .map(|(text, &n)| Piece {
                    text,
                    ids: vec![1; n],
                })
                .collect(),
        }
    }

    #[test]
    fn batches_are_sorted_within_budget_and_spread_over_sessions() {
        let plan = plan_of(&[256, 10, 256, 12, 256, 256, 11, 300]);
        let batches = plan.batches(600, 1);
        let widths: Vec<Vec<usize>> = batches
            .iter()
            .map(|b| b.iter().map(|&i| plan.pieces[i].ids.len()).collect())
            .collect();
        assert_eq!(
            widths,
            vec![vec![10, 11, 12], vec![256, 256], vec![256, 256], vec![300]]
        );
        for batch in &batches {
            let width = batch
                .iter()
                .map(|&i| plan.pieces[i].ids.len())
                .max()
                .unwrap();
            assert!(batch.len() == 1 || batch.len() * width <= 600);
        }
        // Two sessions: no batch holds more than half the pieces, so both get work.
        let batches = plan_of(&[5; 8]).batches(4096, 2);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4]);
        // Every piece once.
        let mut all: Vec<usize> = plan.batches(300, 3).into_iter().flatten().collect();
        all.sort();
        assert_eq!(all, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn windows_cover_text_at_word_starts() {
        let e = embedder();
        let text = "unbelievably internationalisation ".repeat(200);
        let pieces = windows(&e.tokenizer, &text, 100).unwrap();
        assert_eq!(pieces.iter().map(|(p, _)| *p).collect::<String>(), text);
        for (i, (piece, n)) in pieces.iter().enumerate() {
            assert!(*n <= 100, "{n}");
            assert!(*n > 50 || i + 1 == pieces.len(), "{n}");
            assert!(piece.starts_with("unbelievably"), "{piece:.20}");
        }
        assert_eq!(windows(&e.tokenizer, "", 100).unwrap(), vec![("", 0)]);
    }

    /// The model files, without the runtime library, into `models_dir`.
    fn copy_model_files(models_dir_copy: &Path) {
        let model = models_dir_copy.join(MODEL_NAME);
        std::fs::create_dir_all(&model).unwrap();
        for f in [
            "model.onnx",
            "tokenizer.json",
            "config.json",
            "special_tokens_map.json",
            "tokenizer_config.json",
        ] {
            std::fs::copy(models_dir().join(MODEL_NAME).join(f), model.join(f)).unwrap();
        }
    }

    #[test]
    fn missing_models_name_the_fetch_script() {
        let dir = tempfile::tempdir().unwrap();
        let err = LocalEmbedder::load(dir.path(), 1).unwrap_err().to_string();
        assert!(err.contains("scripts/fetch-models.sh"), "{err}");
        assert!(err.contains("model.onnx"), "{err}");

        // A model without a runtime library.
        copy_model_files(dir.path());
        let err = LocalEmbedder::load(dir.path(), 1).unwrap_err().to_string();
        assert!(err.contains("scripts/fetch-models.sh"), "{err}");
        assert!(err.contains("libonnxruntime.so"), "{err}");
    }

    /// ort keeps the first library it loads for the life of the process, so a bad one is tried
    /// in a fresh process: this test binary, running only `bad_library_child`.
    #[test]
    fn a_bad_library_is_an_error_not_a_panic() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "ingest::local::tests::bad_library_child"])
            .args(["--ignored", "--nocapture", "--test-threads=1"])
            .env("RAGSTORE_TEST_BAD_ORT_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
        assert!(stdout.contains("CHILD CHECKED"), "{stdout}\n{stderr}");
    }

    #[test]
    #[ignore = "run in a fresh process by a_bad_library_is_an_error_not_a_panic"]
    fn bad_library_child() {
        if std::env::var_os("RAGSTORE_TEST_BAD_ORT_CHILD").is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        copy_model_files(dir.path());
        let ort = dir.path().join(ORT_DIR);
        std::fs::create_dir_all(&ort).unwrap();
        std::fs::write(ort.join("libonnxruntime.so.1.31.1"), b"not a shared object").unwrap();
        let err = LocalEmbedder::load(dir.path(), 1).unwrap_err().to_string();
        assert!(err.contains("cannot load ONNX Runtime"), "{err}");
        assert!(err.contains("scripts/fetch-models.sh"), "{err}");

        // Nothing was left behind: the real library still loads afterwards.
        let e = LocalEmbedder::load(&models_dir(), 1).unwrap();
        assert_eq!(e.dims(), 384);
        std::io::Write::write_all(&mut std::io::stdout(), b"CHILD CHECKED\n").unwrap();
    }
}
