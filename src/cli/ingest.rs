//! `ragstore ingest`: uploads files and directory trees into a vector store through the HTTP API,
//! with live progress. Each file carries its content's SHA-256 as the attribute `sha256`, so a
//! second run skips what the store already holds (or is indexing) and retries what failed.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures_util::{Stream, StreamExt};
use globset::{Glob, GlobSet, GlobSetBuilder};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::io::ReaderStream;
use walkdir::WalkDir;

use super::{typed_value, Api};
use crate::domain::attributes::{parse_attributes, MAX_PAIRS, MAX_STRING_CHARS};

/// `ragstore ingest PATH... --vector-store NAME_OR_ID [...]`
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Files and directories to upload. Directories are walked recursively; symbolic links are
    /// not followed, and hidden files and directories (`.name`) are skipped unless an
    /// `--include` pattern names them (e.g. `.github/**`).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The vector store: its id (`vs_…`) or its name. A name no store has is created.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub vector_store: String,
    /// Attributes every file gets, beside `sha256` and `path` (true/false and numbers are
    /// typed). Takes several: `--attributes team=infra year=2024`; put the PATHs first.
    #[arg(long = "attributes", value_name = "KEY=VALUE", num_args = 1..)]
    pub attributes: Vec<String>,
    /// How the server cuts files into chunks: `auto`, or `static:MAX:OVERLAP` in tokens
    /// (e.g. `static:800:400`).
    #[arg(long, value_name = "STRATEGY", default_value = "auto", value_parser = parse_chunking)]
    pub chunking: Value,
    /// Only files whose path (relative to the PATH it was found under) matches GLOB;
    /// repeatable. `*` also matches `/`: `*.md` takes Markdown files at any depth.
    #[arg(long = "include", value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out files (and directories) whose relative path matches GLOB; repeatable.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Files uploaded at once (1 to 32).
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// The server's address.
    #[arg(long, env = "RAGSTORE_SERVER", default_value = "http://127.0.0.1:8321")]
    pub server: String,
    /// An API key, sent as `Authorization: Bearer`.
    #[arg(long, env = "RAGSTORE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// How often a file being indexed is asked about (the server's `openai-poll-after-ms`).
const POLL_EVERY: Duration = Duration::from_millis(500);
/// Bytes read from disk at a time, for hashing and for uploading.
const READ_CHUNK: usize = 64 << 10;
/// Files in flight (being hashed, uploaded or indexed) per upload slot.
const IN_FLIGHT_PER_JOB: usize = 4;

/// `auto` or `static:MAX:OVERLAP` as a `chunking_strategy`, checked as the server checks it.
pub fn parse_chunking(spec: &str) -> Result<Value, String> {
    let strategy = match spec.trim().split(':').collect::<Vec<_>>().as_slice() {
        ["auto"] => json!({"type": "auto"}),
        ["static", max, overlap] => {
            let number = |s: &str, what: &str| {
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{what} must be a whole number of tokens, got {s:?}"))
            };
            json!({"type": "static", "static": {
                "max_chunk_size_tokens": number(max, "MAX")?,
                "chunk_overlap_tokens": number(overlap, "OVERLAP")?,
            }})
        }
        _ => {
            return Err(format!(
                "expected auto or static:MAX:OVERLAP (e.g. static:800:400), got {spec:?}"
            ))
        }
    };
    crate::domain::ChunkingStrategy::parse(&strategy)?;
    Ok(strategy)
}

/// `--attributes KEY=VALUE ...` as an attribute map, refused here (before anything is
/// uploaded) if the server would refuse it once `sha256` and `path` are added.
pub fn user_attributes(specs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for spec in specs {
        let (key, raw) = spec
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .with_context(|| format!("--attributes {spec:?}: expected KEY=VALUE"))?;
        if matches!(key, "sha256" | "path") {
            bail!("--attributes {key}: ragstore ingest sets {key:?} itself");
        }
        map.insert(key.to_owned(), typed_value(raw));
    }
    if map.len() > MAX_PAIRS - 2 {
        bail!(
            "--attributes: at most {} pairs (a file has {MAX_PAIRS}, with sha256 and path), got {}",
            MAX_PAIRS - 2,
            map.len()
        );
    }
    let mut full = map.clone();
    full.insert("sha256".into(), "0".repeat(64).into());
    full.insert("path".into(), "x".into());
    parse_attributes(&Value::Object(full)).map_err(|e| anyhow::anyhow!("--attributes: {e}"))?;
    Ok(map)
}

/// Which files of a walk are taken: `--exclude` leaves out, `--include` (when given) picks, and
/// hidden paths are taken only when an include pattern that names a hidden component matches.
#[derive(Debug)]
pub struct PathFilter {
    include: Option<GlobSet>,
    include_hidden: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl PathFilter {
    pub fn new(include: &[String], exclude: &[String]) -> anyhow::Result<Self> {
        let hidden: Vec<String> = include
            .iter()
            .filter(|p| names_hidden(p))
            .cloned()
            .collect();
        Ok(Self {
            include: glob_set("--include", include)?,
            include_hidden: glob_set("--include", &hidden)?,
            exclude: glob_set("--exclude", exclude)?,
        })
    }

    /// Whether the file at `rel` (relative, `/`-separated) is taken; `named` when it was given
    /// as a PATH itself (then hidden or not does not matter).
    pub fn takes(&self, rel: &str, named: bool) -> bool {
        if matches(&self.exclude, rel) {
            return false;
        }
        if !named && is_hidden(rel) {
            return matches(&self.include_hidden, rel);
        }
        self.include.as_ref().is_none_or(|g| g.is_match(rel))
    }

    /// Whether the walk goes into the directory at `rel`.
    pub fn enters(&self, rel: &str) -> bool {
        !matches(&self.exclude, rel) && (!is_hidden(rel) || self.include_hidden.is_some())
    }
}

fn glob_set(flag: &str, patterns: &[String]) -> anyhow::Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        set.add(Glob::new(p).with_context(|| format!("{flag} {p:?}"))?);
    }
    Ok(Some(set.build().with_context(|| flag.to_owned())?))
}

fn matches(set: &Option<GlobSet>, rel: &str) -> bool {
    set.as_ref().is_some_and(|g| g.is_match(rel))
}

/// A path with a component starting with a dot.
fn is_hidden(rel: &str) -> bool {
    rel.split('/').any(|c| c.starts_with('.'))
}

/// A pattern that names a hidden component itself (`.github/**`, `**/.notes.md`).
fn names_hidden(pattern: &str) -> bool {
    pattern
        .split('/')
        .any(|c| c.starts_with('.') && c != "." && c != "..")
}

/// A file to ingest.
#[derive(Debug, Clone)]
struct Candidate {
    /// Where it is on disk.
    path: PathBuf,
    /// How the output names it: its path as found.
    shown: String,
    /// Its path relative to the PATH it was found under, `/`-separated: what the globs match
    /// and the `path` attribute holds.
    rel: String,
    size: u64,
}

/// What walking the PATHs found: files to ingest, and paths that could not be read, with why.
#[derive(Debug, Default)]
struct Found {
    files: Vec<Candidate>,
    unreadable: Vec<(String, String)>,
}

fn collect(paths: &[PathBuf], filter: &PathFilter) -> anyhow::Result<Found> {
    let mut found = Found::default();
    for arg in paths {
        let meta = std::fs::metadata(arg).with_context(|| format!("{}", arg.display()))?;
        if meta.is_file() {
            let rel = arg
                .file_name()
                .map_or_else(|| arg.to_string_lossy(), |n| n.to_string_lossy())
                .into_owned();
            if filter.takes(&rel, true) {
                found.files.push(Candidate {
                    path: arg.clone(),
                    shown: arg.display().to_string(),
                    rel,
                    size: meta.len(),
                });
            }
            continue;
        }
        if !meta.is_dir() {
            bail!("{}: neither a file nor a directory", arg.display());
        }
        let mut walk = WalkDir::new(arg)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = walk.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    let shown = e.path().unwrap_or(arg.as_path()).display().to_string();
                    let reason = e
                        .io_error()
                        .map_or_else(|| e.to_string(), ToString::to_string);
                    found
                        .unreadable
                        .push((shown, format!("cannot read it: {reason}")));
                    continue;
                }
            };
            if entry.depth() == 0 {
                continue;
            }
            let rel = relative(entry.path(), arg);
            let kind = entry.file_type();
            if kind.is_dir() {
                if !filter.enters(&rel) {
                    walk.skip_current_dir();
                }
            } else if kind.is_file() && filter.takes(&rel, false) {
                let shown = entry.path().display().to_string();
                match entry.metadata() {
                    Ok(m) => found.files.push(Candidate {
                        path: entry.path().to_owned(),
                        shown,
                        rel,
                        size: m.len(),
                    }),
                    Err(e) => found
                        .unreadable
                        .push((shown, format!("cannot read it: {e}"))),
                }
            }
            // Symbolic links (and sockets, FIFOs, devices) are neither followed nor read.
        }
    }
    Ok(found)
}

/// `path` below `root`, `/`-separated.
fn relative(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The `path` attribute: the relative path, its end kept if it is longer than a value may be.
fn attribute_path(rel: &str) -> String {
    let chars = rel.chars().count();
    if chars <= MAX_STRING_CHARS {
        return rel.to_owned();
    }
    let tail: String = rel.chars().skip(chars - (MAX_STRING_CHARS - 1)).collect();
    format!("…{tail}")
}

/// The file's name as sent in the form: quotes, backslashes and control characters (which a
/// quoted `filename` cannot carry safely) become `_`.
fn form_filename(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    name.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The file's SHA-256, lowercase hex, read a chunk at a time.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Counts a file's bytes as they leave: for this attempt of this file, for the run, on the bar.
#[derive(Clone)]
struct Meter {
    attempt: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    bar: ProgressBar,
}

impl Meter {
    fn add(&self, n: u64) {
        self.attempt.fetch_add(n, Ordering::Relaxed);
        self.total.fetch_add(n, Ordering::Relaxed);
        self.bar.inc(n);
    }

    /// Takes back what the last attempt counted (the server refused it; it is sent again).
    fn restart(&self) {
        let n = self.attempt.swap(0, Ordering::Relaxed);
        self.total.fetch_sub(n, Ordering::Relaxed);
        self.bar.dec(n);
    }
}

/// The file's bytes streamed from disk, counted by `meter` as they leave: exactly the `size` it
/// had when it was listed, or an error (a file that changed meanwhile is not sent wrong).
fn file_stream(
    disk: std::fs::File,
    size: u64,
    meter: Meter,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let at_end = meter.clone();
    ReaderStream::with_capacity(tokio::fs::File::from_std(disk), READ_CHUNK)
        .map(move |chunk| {
            let chunk = chunk?;
            if meter.attempt.load(Ordering::Relaxed) + chunk.len() as u64 > size {
                return Err(changed());
            }
            meter.add(chunk.len() as u64);
            Ok(chunk)
        })
        .chain(
            futures_util::stream::once(async move {
                // Shorter than listed: the stream ended early.
                (at_end.attempt.load(Ordering::Relaxed) != size).then(|| Err(changed()))
            })
            .filter_map(std::future::ready),
        )
}

fn changed() -> std::io::Error {
    std::io::Error::other("the file changed while it was being uploaded")
}

/// The live display: files done of all (with ETA), bytes uploaded (with throughput), chunks
/// indexed. Hidden when the output is not a terminal.
struct Progress {
    interactive: bool,
    multi: MultiProgress,
    files: ProgressBar,
    bytes: ProgressBar,
    chunks: ProgressBar,
    /// File bytes sent in the run.
    sent: Arc<AtomicU64>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    fn new(interactive: bool, files: u64, bytes: u64) -> Self {
        let target = if interactive {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let files = multi.add(
            ProgressBar::new(files)
                .with_style(style("{prefix:>7} [{wide_bar}] {pos}/{len}  ETA {eta}"))
                .with_prefix("files"),
        );
        let bytes = multi.add(
            ProgressBar::new(bytes)
                .with_style(style(
                    "{prefix:>7} {bytes} of {total_bytes} uploaded, {binary_bytes_per_sec}",
                ))
                .with_prefix("bytes"),
        );
        let chunks = multi.add(
            ProgressBar::no_length()
                .with_style(style("{prefix:>7} {pos} indexed"))
                .with_prefix("chunks"),
        );
        if interactive {
            for bar in [&files, &bytes, &chunks] {
                bar.enable_steady_tick(Duration::from_millis(250));
            }
        }
        Self {
            interactive,
            multi,
            files,
            bytes,
            chunks,
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A line above the bars (or just a line, without them).
    fn line(&self, out: &mut impl Write, text: &str) -> std::io::Result<()> {
        if self.interactive {
            self.multi.suspend(|| writeln!(out, "{text}"))
        } else {
            writeln!(out, "{text}")
        }
    }

    fn finish(&self) {
        for bar in [&self.files, &self.bytes, &self.chunks] {
            bar.finish_and_clear();
        }
        // Only a terminal has bars to clear; there is nothing to do if that fails.
        let _ = self.multi.clear();
    }
}

/// What every file's task shares.
struct Shared {
    api: Api,
    store: String,
    attributes: Map<String, Value>,
    chunking: Value,
    /// Content hashes the store holds (`None`), or that a file of this run took (its name).
    seen: Mutex<HashMap<String, Option<String>>>,
    uploads: Semaphore,
    progress: Progress,
}

/// How one file ended.
#[derive(Debug)]
enum Outcome {
    Indexed { chunks: u64 },
    Skipped(String),
    Failed(String),
}

/// Ingests one file; whatever goes wrong is its outcome.
async fn ingest_one(shared: Arc<Shared>, file: Candidate) -> (Candidate, Outcome) {
    let meter = Meter {
        attempt: Arc::new(AtomicU64::new(0)),
        total: shared.progress.sent.clone(),
        bar: shared.progress.bytes.clone(),
    };
    let outcome = ingest_file(&shared, &file, &meter)
        .await
        .unwrap_or_else(|e| Outcome::Failed(format!("{e:#}")));
    // What was not uploaded (skipped, or failed early) leaves the bytes to do.
    let sent = meter.attempt.load(Ordering::Relaxed);
    shared
        .progress
        .bytes
        .dec_length(file.size.saturating_sub(sent));
    (file, outcome)
}

async fn ingest_file(shared: &Shared, file: &Candidate, meter: &Meter) -> anyhow::Result<Outcome> {
    let path = file.path.clone();
    let hash = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await?
        .context("cannot read it")?;
    {
        let mut seen = shared.seen.lock().unwrap_or_else(PoisonError::into_inner);
        match seen.get(&hash) {
            Some(None) => return Ok(Outcome::Skipped("already in store".into())),
            Some(Some(first)) => {
                return Ok(Outcome::Skipped(format!("same content as {first}")));
            }
            None => {
                seen.insert(hash.clone(), Some(file.shown.clone()));
            }
        }
    }
    let file_id = {
        let _slot = shared.uploads.acquire().await?;
        upload(shared, file, meter).await?
    };
    let mut attributes = shared.attributes.clone();
    attributes.insert("sha256".into(), hash.into());
    attributes.insert("path".into(), attribute_path(&file.rel).into());
    let api = &shared.api;
    let url = format!("{}/v1/vector_stores/{}/files", api.base, shared.store);
    let body = json!({
        "file_id": file_id,
        "attributes": attributes,
        "chunking_strategy": shared.chunking,
    });
    let mut vf = match api.send(api.http.post(&url).json(&body)).await {
        Ok(vf) => vf,
        Err(e) => {
            // Not attached, the upload is of no use: remove it (if that fails too, the
            // attach's error is the one to report).
            let gone = api.http.delete(format!("{}/v1/files/{file_id}", api.base));
            let _ = api.send(gone).await;
            return Err(e);
        }
    };
    let mut counted = 0;
    loop {
        let indexed = vf["progress"]["chunks_indexed"].as_u64().unwrap_or(0);
        if indexed > counted {
            shared.progress.chunks.inc(indexed - counted);
            counted = indexed;
        }
        match vf["status"].as_str() {
            Some("completed") => return Ok(Outcome::Indexed { chunks: indexed }),
            Some("failed") => {
                let e = &vf["last_error"];
                let reason = e["message"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .or_else(|| e["code"].as_str())
                    .unwrap_or("failed without a reason");
                return Ok(Outcome::Failed(reason.to_owned()));
            }
            Some("cancelled") => return Ok(Outcome::Failed("indexing was cancelled".into())),
            _ => {}
        }
        tokio::time::sleep(POLL_EVERY).await;
        vf = api.send(api.http.get(format!("{url}/{file_id}"))).await?;
    }
}

/// `POST /v1/files` (purpose `assistants`), the file streamed from disk: its id.
async fn upload(shared: &Shared, file: &Candidate, meter: &Meter) -> anyhow::Result<String> {
    let api = &shared.api;
    let url = format!("{}/v1/files", api.base);
    let created = api
        .send_with(|| {
            meter.restart();
            let disk = std::fs::File::open(&file.path).context("cannot read it")?;
            let body = reqwest::Body::wrap_stream(file_stream(disk, file.size, meter.clone()));
            let part = reqwest::multipart::Part::stream_with_length(body, file.size)
                .file_name(form_filename(&file.path))
                .mime_str("application/octet-stream")?;
            let form = reqwest::multipart::Form::new()
                .text("purpose", "assistants")
                .part("file", part);
            Ok(api.http.post(&url).multipart(form))
        })
        .await?;
    created["id"]
        .as_str()
        .map(str::to_owned)
        .context("the server's answer names no file")
}

/// Files and their bytes.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    files: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// What the run did, for the summary.
#[derive(Debug, Default)]
struct Report {
    uploaded: Tally,
    skipped: Tally,
    failed: Tally,
    chunks: u64,
    failures: Vec<(String, String)>,
}

/// `12.3s`, `4m 05s`, `2h 10m`.
fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// The summary table, then the failed files with their reasons.
fn write_summary(
    out: &mut impl Write,
    report: &Report,
    elapsed: Duration,
    sent: u64,
) -> std::io::Result<()> {
    let total = Tally {
        files: report.uploaded.files + report.skipped.files + report.failed.files,
        bytes: report.uploaded.bytes + report.skipped.bytes + report.failed.bytes,
    };
    writeln!(out)?;
    writeln!(out, "  {:<10}{:>8}{:>14}", "", "files", "bytes")?;
    for (label, t) in [
        ("uploaded", report.uploaded),
        ("skipped", report.skipped),
        ("failed", report.failed),
        ("total", total),
    ] {
        let bytes = HumanBytes(t.bytes).to_string();
        writeln!(out, "  {label:<10}{:>8}{bytes:>14}", t.files)?;
    }
    let per_sec = (sent as f64 / elapsed.as_secs_f64().max(0.001)) as u64;
    writeln!(out, "  chunks indexed: {}", report.chunks)?;
    writeln!(
        out,
        "  elapsed: {}, {} sent ({}/s)",
        duration_text(elapsed),
        HumanBytes(sent),
        HumanBytes(per_sec)
    )?;
    if !report.failures.is_empty() {
        writeln!(out, "failed files:")?;
        for (shown, reason) in &report.failures {
            writeln!(out, "  {shown}: {reason}")?;
        }
    }
    Ok(())
}

/// The content hashes of the store's files that are indexed or being indexed.
async fn stored_hashes(api: &Api, store: &str) -> anyhow::Result<HashSet<String>> {
    let files = api
        .list_all(&format!("/v1/vector_stores/{store}/files"))
        .await?;
    Ok(files
        .iter()
        .filter(|f| matches!(f["status"].as_str(), Some("completed" | "in_progress")))
        .filter_map(|f| f["attributes"]["sha256"].as_str().map(str::to_owned))
        .collect())
}

/// Runs `ragstore ingest`, writing progress lines and the summary to `out`; with `interactive`
/// (a terminal), live bars instead of a line per file. An error if any file failed.
pub async fn ingest(
    args: IngestArgs,
    out: &mut impl Write,
    interactive: bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    if !(1..=32).contains(&args.jobs) {
        bail!("--jobs must be between 1 and 32");
    }
    let attributes = user_attributes(&args.attributes)?;
    let filter = PathFilter::new(&args.include, &args.exclude)?;
    let paths = args.paths.clone();
    let found = tokio::task::spawn_blocking(move || collect(&paths, &filter)).await??;
    if found.files.is_empty() && found.unreadable.is_empty() {
        writeln!(
            out,
            "nothing to ingest: no file found (or all were left out)"
        )?;
        return Ok(());
    }

    let api = Api::new(&args.server, args.api_key);
    let store = match api.find_store(&args.vector_store).await? {
        Some(id) => id,
        None => {
            let created = api
                .send(
                    api.http
                        .post(format!("{}/v1/vector_stores", api.base))
                        .json(&json!({"name": args.vector_store})),
                )
                .await?;
            let id = created["id"]
                .as_str()
                .context("the server's answer names no vector store")?
                .to_owned();
            writeln!(out, "created vector store {:?} ({id})", args.vector_store)?;
            id
        }
    };
    let known = stored_hashes(&api, &store).await?;
    let count = (found.files.len() + found.unreadable.len()) as u64;
    let bytes: u64 = found.files.iter().map(|f| f.size).sum();
    let named = if args.vector_store == store {
        String::new()
    } else {
        format!(" ({:?})", args.vector_store)
    };
    writeln!(
        out,
        "ingesting {count} files ({}) into vector store {store}{named}",
        HumanBytes(bytes)
    )?;

    let shared = Arc::new(Shared {
        api,
        store,
        attributes,
        chunking: args.chunking,
        seen: Mutex::new(known.into_iter().map(|h| (h, None)).collect()),
        uploads: Semaphore::new(args.jobs),
        progress: Progress::new(interactive, count, bytes),
    });
    let progress = &shared.progress;
    let mut report = Report::default();
    for (shown, reason) in found.unreadable {
        progress.line(out, &format!("FAILED {shown}: {reason}"))?;
        progress.files.inc(1);
        report.failed.add(0);
        report.failures.push((shown, reason));
    }

    let mut queue = found.files.into_iter();
    let mut tasks = JoinSet::new();
    loop {
        while tasks.len() < args.jobs * IN_FLIGHT_PER_JOB {
            let Some(file) = queue.next() else { break };
            tasks.spawn(ingest_one(shared.clone(), file));
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let (file, outcome) = joined.context("a file's task stopped")?;
        progress.files.inc(1);
        match outcome {
            Outcome::Indexed { chunks } => {
                report.uploaded.add(file.size);
                report.chunks += chunks;
                if !interactive {
                    let s = if chunks == 1 { "" } else { "s" };
                    progress.line(out, &format!("ok {} ({chunks} chunk{s})", file.shown))?;
                }
            }
            Outcome::Skipped(why) => {
                report.skipped.add(file.size);
                if !interactive {
                    progress.line(out, &format!("skipped {} ({why})", file.shown))?;
                }
            }
            Outcome::Failed(reason) => {
                report.failed.add(file.size);
                progress.line(out, &format!("FAILED {}: {reason}", file.shown))?;
                report.failures.push((file.shown, reason));
            }
        }
    }
    progress.finish();
    write_summary(
        out,
        &report,
        started.elapsed(),
        progress.sent.load(Ordering::Relaxed),
    )?;
    if report.failed.files > 0 {
        bail!("{} of {count} files failed", report.failed.files);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> PathFilter {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        PathFilter::new(&own(include), &own(exclude)).unwrap()
    }

    #[test]
    fn ingest_globs_pick_files_and_hidden_ones_only_when_named() {
        let all = filter(&[], &[]);
        assert!(all.takes("notes.txt", false));
        assert!(all.takes("sub/deep/guide.md", false));
        assert!(!all.takes(".env", false), "hidden files are skipped");
        assert!(!all.takes(".git/config", false));
        assert!(!all.enters(".git"));
        assert!(all.enters("sub"));
        assert!(all.takes(".env", true), "a PATH given by name is taken");

        let md = filter(&["*.md"], &["drafts/**", "*.tmp.md"]);
        assert!(md.takes("guide.md", false));
        assert!(md.takes("sub/guide.md", false), "* crosses directories");
        assert!(!md.takes("notes.txt", false));
        assert!(!md.takes("drafts/x.md", false));
        assert!(!md.takes("a.tmp.md", false));
        assert!(
            !md.takes(".github/readme.md", false),
            "*.md does not name hidden files"
        );
        assert!(!md.enters(".github"));

        let hidden = filter(&[".github/**"], &[]);
        assert!(hidden.enters(".github"));
        assert!(hidden.takes(".github/workflows/ci.yml", false));
        assert!(!hidden.takes("notes.txt", false));

        let prune = filter(&[], &["build"]);
        assert!(!prune.enters("build"));
        assert!(prune.enters("src"));

        assert!(PathFilter::new(&["a[".to_owned()], &[]).is_err());
    }

    #[test]
    fn ingest_chunking_is_auto_or_static_max_overlap() {
        assert_eq!(parse_chunking("auto").unwrap(), json!({"type": "auto"}));
        assert_eq!(
            parse_chunking("static:800:400").unwrap(),
            json!({"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}})
        );
        assert!(parse_chunking("static:800").is_err());
        assert!(parse_chunking("static:big:1").is_err());
        assert!(parse_chunking("static:800:401")
            .unwrap_err()
            .contains("half"));
        assert!(parse_chunking("static:50:0").is_err());
        assert!(parse_chunking("magic").is_err());
    }

    #[test]
    fn ingest_attributes_are_typed_and_checked_before_uploading() {
        let specs = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let m = user_attributes(&specs(&["team=infra", "year=2024", "w=1.5", "ok=true"])).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"team": "infra", "year": 2024, "w": 1.5, "ok": true})
        );
        assert!(user_attributes(&specs(&["novalue"])).is_err());
        assert!(user_attributes(&specs(&["sha256=x"])).is_err());
        assert!(user_attributes(&specs(&["path=x"])).is_err());
        let many: Vec<String> = (0..15).map(|i| format!("k{i}=v")).collect();
        assert!(user_attributes(&many).is_err());
        assert!(user_attributes(&many[..14]).is_ok());
        assert!(user_attributes(&[format!("long={}", "x".repeat(600))]).is_err());
        assert!(user_attributes(&[format!("{}=x", "k".repeat(65))]).is_err());
    }

    #[test]
    fn ingest_names_and_paths_fit_the_form_and_the_attribute() {
        assert_eq!(attribute_path("a/b.txt"), "a/b.txt");
        let long = format!("{}/end.txt", "d".repeat(600));
        let cut = attribute_path(&long);
        assert_eq!(cut.chars().count(), MAX_STRING_CHARS);
        assert!(cut.starts_with('…') && cut.ends_with("/end.txt"));
        assert_eq!(
            form_filename(Path::new("dir/say \"hi\"\\.txt")),
            "say _hi__.txt"
        );
        assert_eq!(
            relative(Path::new("root/a/b.md"), Path::new("root")),
            "a/b.md"
        );
    }

    #[test]
    fn ingest_summary_counts_and_lists_failures() {
        let mut report = Report::default();
        report.uploaded.add(2048);
        report.uploaded.add(1024);
        report.failed.add(10);
        report.chunks = 7;
        report
            .failures
            .push(("docs/broken.pdf".into(), "bad PDF".into()));
        let mut out = Vec::new();
        write_summary(&mut out, &report, Duration::from_millis(1500), 3082).unwrap();
        let text = String::from_utf8(out).unwrap();
        let row = |label: &str| {
            text.lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .find(|w| w.first() == Some(&label))
                .unwrap()
        };
        assert_eq!(row("uploaded")[1], "2", "{text}");
        assert_eq!(row("skipped")[1], "0", "{text}");
        assert_eq!(row("failed")[1], "1", "{text}");
        assert_eq!(row("total")[1], "3", "{text}");
        assert!(text.contains("chunks indexed: 7"), "{text}");
        assert!(text.contains("elapsed: 1.5s"), "{text}");
        assert!(text.contains("  docs/broken.pdf: bad PDF"), "{text}");
    }

    async fn drain(
        body: impl Stream<Item = std::io::Result<Bytes>>,
    ) -> Result<Vec<u8>, std::io::Error> {
        use futures_util::TryStreamExt;
        body.try_fold(Vec::new(), |mut out, chunk| async move {
            out.extend_from_slice(&chunk);
            Ok(out)
        })
        .await
    }

    #[tokio::test]
    async fn ingest_upload_streams_the_file_and_counts_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let meter = Meter {
            attempt: Arc::new(AtomicU64::new(0)),
            total: Arc::new(AtomicU64::new(0)),
            bar: ProgressBar::hidden(),
        };
        let body = |size: u64| {
            meter.restart();
            file_stream(std::fs::File::open(&path).unwrap(), size, meter.clone())
        };
        let sent = drain(body(content.len() as u64)).await.unwrap();
        assert_eq!(sent, content);
        assert_eq!(meter.total.load(Ordering::Relaxed), content.len() as u64);
        meter.restart();
        assert_eq!(meter.total.load(Ordering::Relaxed), 0);

        // A file that is not the size it was listed with is an error, not a wrong upload.
        assert!(drain(body(content.len() as u64 - 1)).await.is_err());
        assert!(drain(body(content.len() as u64 + 1)).await.is_err());
    }
}
