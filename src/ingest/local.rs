//! The default [`Embedder`]: all-MiniLM-L6-v2 (int8 ONNX) run in-process by ONNX Runtime through
//! fastembed. No network: the model and the runtime library are files under the models directory,
//! put there by `scripts/fetch-models.sh`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::anyhow;
use async_trait::async_trait;
use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use futures_util::future::try_join_all;
use tokenizers::Tokenizer;
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::chunk::{load_tokenizer, Chunker, Tokens};
use super::embed::{normalize, Embedder};
use crate::domain::{Error, Result};

/// The model's directory under the models directory; also the model name reported.
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
const ORT_DIR: &str = "onnxruntime";
/// Texts per model run: big enough to amortise a run, small enough that padding to the longest
/// text of the batch stays cheap (texts are sorted by length first anyway).
const BATCH_SIZE: usize = 32;
/// all-MiniLM-L6-v2 was trained on 256-token inputs; used when sentence_bert_config.json is absent.
const DEFAULT_MAX_SEQ_LENGTH: usize = 256;

/// all-MiniLM-L6-v2 on ONNX Runtime. At most `threads` model runs at a time, each on its own
/// session with one intra-op thread, all off the async reactor.
pub struct LocalEmbedder {
    dims: usize,
    /// Tokens of text that fit in one model run: the model's window less its special tokens.
    capacity: usize,
    tokenizer: Arc<Tokenizer>,
    sessions: Arc<Mutex<Vec<TextEmbedding>>>,
    permits: Arc<Semaphore>,
    /// How many sessions the pool holds: one call's texts are spread over all of them.
    session_count: usize,
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

impl LocalEmbedder {
    /// Loads the runtime from `<models_dir>/onnxruntime/` and the model from
    /// `<models_dir>/all-MiniLM-L6-v2/`, with `threads` sessions (at least one). Blocking: call it
    /// from `spawn_blocking` or before the server starts.
    pub fn load(models_dir: &Path, threads: usize) -> Result<Self> {
        Self::load_with(models_dir, threads, 1)
    }

    /// A [`Chunker`] counting tokens with this model's tokenizer.
    pub fn chunker(&self) -> Chunker {
        Chunker::new(self.tokens())
    }

    /// `sessions` concurrent runs of `intra_threads` ONNX Runtime threads each. [`Self::load`]
    /// is `load_with(dir, threads, 1)`: independent runs scale better than threads inside one
    /// run on small batches (examples/embed_bench.rs compares the layouts).
    pub fn load_with(models_dir: &Path, sessions: usize, intra_threads: usize) -> Result<Self> {
        let (sessions, intra_threads) = (sessions.max(1), intra_threads.max(1));
        let started = Instant::now();
        let models_dir = std::path::absolute(models_dir)?;
        let model_dir = models_dir.join(MODEL_NAME);
        let read = |name: &str| -> Result<Vec<u8>> {
            let path = model_dir.join(name);
            std::fs::read(&path).map_err(|e| missing(&path, e))
        };
        let onnx_file = read("model.onnx")?;
        let tokenizer_files = TokenizerFiles {
            tokenizer_file: read("tokenizer.json")?,
            config_file: read("config.json")?,
            special_tokens_map_file: read("special_tokens_map.json")?,
            tokenizer_config_file: read("tokenizer_config.json")?,
        };
        let window = max_seq_length(&model_dir);
        let tokenizer = load_tokenizer(&model_dir.join("tokenizer.json"))?;
        let specials = tokenizer
            .encode("", true)
            .map_err(|e| Error::Internal(anyhow!("tokenizer: {e}")))?
            .len();
        let capacity = window.saturating_sub(specials).max(1);

        let environment = ort_environment(&find_ort_library(&models_dir.join(ORT_DIR))?)?;
        let model =
            UserDefinedEmbeddingModel::new(onnx_file, tokenizer_files).with_pooling(Pooling::Mean);
        let mut pool = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let options = InitOptionsUserDefined::new()
                .with_environment(environment.clone())
                .with_max_length(window)
                .with_intra_threads(intra_threads);
            let session = TextEmbedding::try_new_from_user_defined(model.clone(), options)
                .map_err(|e| {
                    Error::Internal(anyhow!(
                        "cannot load {}: {e}",
                        model_dir.join("model.onnx").display()
                    ))
                })?;
            pool.push(session);
        }
        // One run tells the real output size and catches a model that loads but cannot run.
        let dims = match pool.first_mut().map(|s| s.embed(["ragstore"], None)) {
            Some(Ok(v)) => v.first().map_or(0, Vec::len),
            Some(Err(e)) => return Err(Error::Internal(anyhow!("{MODEL_NAME} does not run: {e}"))),
            None => 0,
        };
        if dims == 0 {
            return Err(Error::Internal(anyhow!(
                "{MODEL_NAME} returned an empty embedding"
            )));
        }
        tracing::info!(
            model = MODEL_NAME,
            dims,
            window,
            sessions,
            intra_threads,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        Ok(LocalEmbedder {
            dims,
            capacity,
            tokenizer: Arc::new(tokenizer),
            sessions: Arc::new(Mutex::new(pool)),
            permits: Arc::new(Semaphore::new(sessions)),
            session_count: sessions,
        })
    }

    /// Embeds `pieces` (each at most one window long) on a pooled session, off the reactor.
    async fn run(&self, pieces: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(e.into()))?;
        let sessions = self.sessions.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut lease = SessionLease::take(&sessions)?;
            let out = lease
                .session()
                .embed(&pieces, Some(pieces.len()))
                .map_err(|e| Error::Internal(anyhow!("{MODEL_NAME}: {e}")))?;
            if out.len() != pieces.len() {
                return Err(Error::Internal(anyhow!(
                    "{MODEL_NAME} returned {} vectors for {} texts",
                    out.len(),
                    pieces.len()
                )));
            }
            Ok(out)
        })
        .await?
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model(&self) -> &str {
        MODEL_NAME
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
        let span = tracing::debug_span!("ingest.embed", texts = texts.len());
        self.embed_texts(texts).instrument(span).await
    }
}

impl LocalEmbedder {
    async fn embed_texts(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let tokenizer = self.tokenizer.clone();
        let capacity = self.capacity;
        let plan = tokio::task::spawn_blocking(move || plan_pieces(&tokenizer, &texts, capacity))
            .await??;

        // Spread one call over every session (a worker embeds 32 chunks at a time; as one
        // batch they would keep one core busy while the others idle).
        let per_batch = plan
            .pieces
            .len()
            .div_ceil(self.session_count)
            .clamp(1, BATCH_SIZE);
        let batches: Vec<Vec<String>> = plan
            .order
            .chunks(per_batch)
            .map(|batch| batch.iter().map(|&i| plan.pieces[i].1.clone()).collect())
            .collect();
        let vectors = try_join_all(batches.into_iter().map(|batch| self.run(batch))).await?;

        let mut sums = vec![vec![0f32; self.dims]; plan.texts];
        for (&i, vector) in plan.order.iter().zip(vectors.into_iter().flatten()) {
            if vector.len() != self.dims {
                return Err(Error::Internal(anyhow!(
                    "{MODEL_NAME} returned {} dims, expected {}",
                    vector.len(),
                    self.dims
                )));
            }
            let sum = &mut sums[plan.pieces[i].0];
            sum.iter_mut().zip(&vector).for_each(|(s, v)| *s += v);
        }
        // The mean's direction is the sum's: normalising the sum is normalising the mean.
        Ok(sums.into_iter().map(normalized).collect())
    }
}

/// Every text cut into pieces that fit one window, and the order to run them in.
struct Plan {
    texts: usize,
    /// (index of the text, piece of it)
    pieces: Vec<(usize, String)>,
    /// Indices into `pieces`, shortest first, so a batch pads little.
    order: Vec<usize>,
}

fn plan_pieces(tokenizer: &Tokenizer, texts: &[String], capacity: usize) -> Result<Plan> {
    let mut pieces = Vec::with_capacity(texts.len());
    let mut lengths = Vec::with_capacity(texts.len());
    for (t, text) in texts.iter().enumerate() {
        for (piece, tokens) in windows(tokenizer, text, capacity)? {
            pieces.push((t, piece.to_owned()));
            lengths.push(tokens);
        }
    }
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by_key(|&i| lengths[i]);
    Ok(Plan {
        texts: texts.len(),
        pieces,
        order,
    })
}

/// `text` cut into consecutive slices of at most `capacity` tokens each (with their token
/// counts), as few as possible and of even size, cut only where a word starts so each slice
/// tokenizes on its own exactly as it did in place. Every byte of `text` is in one slice.
fn windows<'t>(
    tokenizer: &Tokenizer,
    text: &'t str,
    capacity: usize,
) -> Result<Vec<(&'t str, usize)>> {
    let encoding = tokenizer
        .encode(text, false)
        .map_err(|e| Error::Internal(anyhow!("tokenizer: {e}")))?;
    let n = encoding.len();
    if n <= capacity {
        return Ok(vec![(text, n)]);
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
        let end_byte = if end < n { offsets[end].0 } else { text.len() };
        let slice = text.get(start_byte..end_byte).ok_or_else(|| {
            Error::Internal(anyhow!(
                "tokenizer offsets {start_byte}..{end_byte} are not char boundaries"
            ))
        })?;
        out.push((slice, end - start_token));
        (start_token, start_byte) = (end, end_byte);
    }
    Ok(out)
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    normalize(&mut v);
    v
}

/// A session taken from the pool for one run, put back even if the run panics.
struct SessionLease<'p> {
    pool: &'p Mutex<Vec<TextEmbedding>>,
    session: Option<TextEmbedding>,
}

impl<'p> SessionLease<'p> {
    fn take(pool: &'p Mutex<Vec<TextEmbedding>>) -> Result<Self> {
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

    fn session(&mut self) -> &mut TextEmbedding {
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
