//! The workers of the durable job queue. Each claims a job under a lease, runs its stages and
//! finishes it, fenced on the lease. Every stage is idempotent (outputs are keyed by file and
//! chunking, point ids are deterministic), so a job interrupted anywhere simply runs again.

use std::sync::Arc;
use std::time::Duration;

use ragstore_extract::{extract_owned, location_of, ExtractError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::db::{ChunkRow, FileText, JobQueue, Metadata, Wakeup};
use crate::domain::cascade::ingest_outcome;
use crate::domain::{
    Chunking, Error, FileId, FileRecord, FileStatus, IngestErrorCode, Job, JobEnd, JobKind,
    ProjectId, Purpose, Result, VsFileRecord, VsFileStatus,
};
use crate::index::{point_id, Point, VectorIndex};
use crate::ingest::Pipeline;
use crate::storage::{FileStorage, Staging};

/// How long a claimed job stays ours without a heartbeat.
pub const LEASE_SECS: i64 = 120;
/// Transient failures are retried this many times, with exponential backoff, before failing.
pub const MAX_ATTEMPTS: i64 = 6;
/// Tokens per embedding call after the first. Other jobs and searches get their turn run by run
/// whatever this is (the embedder's bulk gate); what it sets is how often a batch is written
/// (every write makes the index durable) and progress is recorded. 32k tokens (~170 chunks)
/// ingested R-intro.pdf in 3.55-3.74 s against 4.0-4.2 s with 8k or 16k batches.
const EMBED_BATCH_TOKENS: usize = 32768;
/// The first call is smaller, so the first chunks of a large file are searchable at once.
const FIRST_BATCH_TOKENS: usize = 2048;
/// Cached chunks read per batch at most.
const INDEX_BATCH: usize = 256;
/// Points given their keyword vectors per round of the keyword job (one durable write each).
const KEYWORD_ROUND: usize = 1024;

/// Stages of an ingest job, in order. Tests stop a job after one to simulate a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The text is extracted (or found chunked already).
    Extract,
    /// The first batch of chunks is cached.
    Chunk,
    /// The first batch is embedded, not yet indexed.
    Embed,
    /// The first batch is indexed (searchable), the rest not yet.
    FirstBatch,
    /// Every chunk is indexed; the job is not finished.
    Index,
}

/// How a stage failed.
enum Failure {
    /// Retry later (I/O, database, embedder or index hiccups).
    Transient(Error),
    /// No retry: the file itself is the problem.
    Permanent(IngestErrorCode, String),
    /// The job was cancelled or its lease lost; stop quietly.
    Cancelled,
    /// A test asked to stop here.
    Stopped,
}

/// Backends say whether a failure may pass: only those are retried.
impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        if e.is_transient() {
            Failure::Transient(e)
        } else {
            tracing::error!(error = ?e, "job failed with an error that would happen again");
            Failure::Permanent(
                IngestErrorCode::ServerError,
                SERVER_ERROR_MESSAGE.to_owned(),
            )
        }
    }
}

/// What a client sees when a job failed for the server's reasons; the log has the cause.
const SERVER_ERROR_MESSAGE: &str = "The server could not process this file; see the server logs.";
const OUT_OF_SPACE_MESSAGE: &str =
    "The server ran out of disk space while processing this file; attach it again once space is freed.";

type StageResult<T> = std::result::Result<T, Failure>;

/// The seams a worker uses.
#[derive(Clone)]
pub struct WorkerDeps {
    pub meta: Arc<dyn Metadata>,
    pub queue: Arc<dyn JobQueue>,
    pub storage: Arc<dyn FileStorage>,
    pub staging: Staging,
    pub index: Arc<dyn VectorIndex>,
    pub pipeline: Pipeline,
    pub clock: Arc<dyn Clock>,
    /// The most tokens one file may hold (OpenAI's limit for `file_search` is 2,000,000).
    pub max_file_tokens: usize,
    /// How long a claim lasts without a heartbeat ([`LEASE_SECS`]; tests shorten it). Long
    /// stages renew it every quarter of it.
    pub lease_secs: i64,
}

#[derive(Clone)]
pub struct Worker {
    st: WorkerDeps,
    id: String,
}

impl Worker {
    pub fn new(st: WorkerDeps, name: &str) -> Self {
        let id = format!(
            "{name}-{}",
            crate::domain::PartId::generate()
                .as_str()
                .trim_start_matches("part_")
        );
        Self { st, id }
    }

    /// Claims and runs one job. `false` when nothing was runnable.
    pub async fn try_run_one(&self) -> Result<bool> {
        self.run_one_until(None).await
    }

    /// Like [`Worker::try_run_one`], but abandons the job (lease held, nothing finished) right
    /// after `stop_after` — what a crash at that point leaves behind.
    pub async fn run_one_until(&self, stop_after: Option<Stage>) -> Result<bool> {
        let now = self.st.clock.now();
        let Some(job) = self
            .st
            .queue
            .claim(&self.id, now, self.st.lease_secs)
            .await?
        else {
            return Ok(false);
        };
        let span = tracing::info_span!("job", id = job.id, kind = job.kind.as_str());
        // Every claim counts, across restarts. A job claimed more often than it may be retried
        // never got to finish (it crashed the process, or hung past its lease each time): it
        // is a poison job, and it ends failed instead of being run again. Purges are exempt:
        // what they remove must not come back.
        let outcome = if job.attempts > MAX_ATTEMPTS && !is_purge(job.kind) {
            tracing::error!(
                job = job.id,
                kind = job.kind.as_str(),
                attempts = job.attempts,
                "job claimed too many times without finishing; giving up on it"
            );
            Err(Failure::Permanent(
                IngestErrorCode::ServerError,
                SERVER_ERROR_MESSAGE.to_owned(),
            ))
        } else {
            async {
                match job.kind {
                    JobKind::Extract => self.run_extract(&job).await.map(|_| 0),
                    JobKind::Ingest => self.run_ingest(&job, stop_after).await,
                    JobKind::PurgeFile => self.run_purge_file(&job).await.map(|_| 0),
                    JobKind::PurgeVsFile => self.run_purge_vs_file(&job).await.map(|_| 0),
                    JobKind::PurgeStore => self.run_purge_store(&job).await.map(|_| 0),
                    JobKind::IndexKeywords => self.run_index_keywords(&job).await.map(|_| 0),
                }
            }
            .instrument(span)
            .await
        };
        // The index makes every write durable before it returns, so what this job wrote
        // survives a crash once the job is marked done.
        let now = self.st.clock.now();
        let end = match outcome {
            Ok(usage) => {
                if !self.finish(&job, &JobEnd::Done, usage, now).await? {
                    self.stop(&job).await?;
                }
                return Ok(true);
            }
            Err(Failure::Stopped) => return Ok(true),
            // Nothing left to do (the file or its store link is gone, or the job was cancelled):
            // close the job if it is still ours, so it is not run again after its lease.
            Err(Failure::Cancelled) => JobEnd::Done,
            // Purges never give up, whatever the error: what they remove must not come back.
            Err(Failure::Permanent(_, message)) if is_purge(job.kind) => {
                let backoff = 2i64.pow(job.attempts.clamp(0, 9) as u32);
                tracing::error!(%message, retry_in_secs = backoff, "purge failed; it will be retried");
                JobEnd::Retry {
                    message,
                    retry_at: now + backoff,
                }
            }
            Err(Failure::Permanent(code, message)) => {
                tracing::info!(code = code.as_str(), %message, "job failed permanently");
                JobEnd::Failed { code, message }
            }
            Err(Failure::Transient(e)) if job.attempts >= MAX_ATTEMPTS && !is_purge(job.kind) => {
                tracing::error!(error = ?e, attempts = job.attempts, "job failed after retries");
                let message = if e.is_out_of_space() {
                    OUT_OF_SPACE_MESSAGE
                } else {
                    SERVER_ERROR_MESSAGE
                };
                JobEnd::Failed {
                    code: IngestErrorCode::ServerError,
                    message: message.to_owned(),
                }
            }
            Err(Failure::Transient(e)) => {
                let backoff = 2i64.pow(job.attempts.clamp(0, 9) as u32);
                tracing::warn!(error = ?e, retry_in_secs = backoff, "job will be retried");
                JobEnd::Retry {
                    message: e.to_string(),
                    retry_at: now + backoff,
                }
            }
        };
        if !self.finish(&job, &end, 0, now).await? {
            self.stop(&job).await?;
        }
        Ok(true)
    }

    /// Ends the job (fenced on our claim) and, for an ingest job, sets its file's outcome.
    async fn finish(&self, job: &Job, end: &JobEnd, usage: i64, now: i64) -> Result<bool> {
        let outcome = ingest_outcome(
            job.kind,
            job.vector_store_id.as_ref(),
            job.file_id.as_ref(),
            end,
            usage,
        );
        self.st.queue.finish(job, end, outcome.as_ref(), now).await
    }

    /// The job is no longer ours (cancelled, or its lease lost): undo what it may have written,
    /// then tell the queue it has stopped, so the purges waiting for it may run. A crash before
    /// the release leaves the job leased until its lease ends, and those purges wait until then:
    /// whatever it wrote, they remove.
    async fn stop(&self, job: &Job) -> Result<()> {
        self.compensate(job).await?;
        self.st.queue.release(job, self.st.clock.now()).await?;
        Ok(())
    }

    /// An ingest job that lost its lease or was cancelled may have written points: remove them
    /// unless the file is (again) in the store, in which case its live job owns those points.
    async fn compensate(&self, job: &Job) -> Result<()> {
        if let (JobKind::Ingest, Some(store), Some(file)) =
            (job.kind, &job.vector_store_id, &job.file_id)
        {
            let live = self.st.meta.get_vs_file(store, file).await?;
            if !matches!(live, Some(f) if f.status != VsFileStatus::Cancelled) {
                self.st.index.delete_file(Some(store), file).await?;
            }
        }
        Ok(())
    }

    async fn still_ours(&self, job: &Job) -> StageResult<()> {
        let until = self.st.clock.now() + self.st.lease_secs;
        if self.st.queue.heartbeat(job, until).await? {
            Ok(())
        } else {
            Err(Failure::Cancelled)
        }
    }

    /// The most text a file may yield. Real text runs 4-6 bytes a token; this allows 64, so
    /// only text of pathological words is refused by this cap rather than by its token count.
    fn max_text_bytes(&self) -> usize {
        self.st.max_file_tokens.saturating_mul(64)
    }

    async fn run_extract(&self, job: &Job) -> StageResult<()> {
        let file_id = job.file_id.as_ref().ok_or_else(|| missing("file_id"))?;
        let file = self.live_file(&job.project_id, file_id).await?;
        if file.purpose == Purpose::FineTune {
            return self.with_lease(job, self.validate_fine_tune(&file)).await;
        }
        // Extracted already (an ingest got there first): nothing to read again.
        match self.st.meta.get_file_text(file_id).await? {
            Some(FileText::Ok { .. }) => Ok(()),
            Some(FileText::Failed { code, message }) => Err(Failure::Permanent(code, message)),
            None => self.with_lease(job, self.extract(&file)).await.map(|_| ()),
        }
    }

    /// Checks a fine-tuning file as OpenAI does after upload: `processed`, or `error` with
    /// the first bad line and why in `status_details`.
    async fn validate_fine_tune(&self, file: &FileRecord) -> StageResult<()> {
        let st = &self.st;
        let blob = st.storage.get(&file.storage_key).await?.ok_or_else(|| {
            Failure::Transient(Error::Internal(anyhow::anyhow!(
                "missing blob {}",
                file.storage_key
            )))
        })?;
        let reader = tokio_util::io::StreamReader::new(blob.stream);
        let verdict = tokio::task::spawn_blocking(move || {
            let sync = tokio_util::io::SyncIoBridge::new(reader);
            crate::service::fine_tune::validate(std::io::BufReader::with_capacity(1 << 20, sync))
        })
        .await
        .map_err(Error::from)?;
        let (status, details) = match verdict {
            Ok((format, examples)) => {
                tracing::info!(file_id = %file.id, ?format, examples, "fine-tuning file is valid");
                (FileStatus::Processed, None)
            }
            Err(why) => (
                FileStatus::Error,
                Some(format!("Invalid file format for fine-tuning: {why}.")),
            ),
        };
        // A file deleted meanwhile has no row to set: nothing is written.
        st.meta
            .set_file_status(&file.id, status, details.as_deref())
            .await?;
        Ok(())
    }

    /// The file's extracted text, extracting it once if needed.
    async fn ensure_text(
        &self,
        project: &ProjectId,
        file_id: &FileId,
    ) -> StageResult<ExtractedText> {
        let st = &self.st;
        if let Some(text) = st.meta.get_file_text(file_id).await? {
            return match text {
                FileText::Ok {
                    storage_key,
                    format,
                    sections,
                } => {
                    let text = read_all(&*st.storage, &storage_key).await?;
                    // Written from a String: valid UTF-8, taken as is (no copy).
                    let text = String::from_utf8(text)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    Ok(ExtractedText {
                        text,
                        markdown: format == "markdown",
                        sections,
                    })
                }
                FileText::Failed { code, message } => Err(Failure::Permanent(code, message)),
            };
        }
        let file = self.live_file(project, file_id).await?;
        self.extract(&file).await
    }

    /// The file's row; a file gone since its job was queued fails the job.
    async fn live_file(&self, project: &ProjectId, file_id: &FileId) -> StageResult<FileRecord> {
        let st = &self.st;
        st.meta
            .get_file(project, file_id, st.clock.now())
            .await?
            .ok_or_else(|| {
                // Expired a moment ago: the reaper's cascade removes it from every store.
                Failure::Permanent(
                    IngestErrorCode::InvalidFile,
                    "The file no longer exists.".to_owned(),
                )
            })
    }

    /// Extracts the file's text and records it (or why it has none) once for every store.
    async fn extract(&self, file: &FileRecord) -> StageResult<ExtractedText> {
        let st = &self.st;
        let started = std::time::Instant::now();
        let file_id = &file.id;
        let max_text = self.max_text_bytes();
        let too_much = || ExtractError::Invalid(too_much_text(max_text, st.max_file_tokens));
        let extracted = if file.bytes as u64 > 2 * max_text as u64
            && ragstore_extract::is_plain_text(
                &read_prefix(&*st.storage, &file.storage_key, SNIFF_BYTES).await?,
                &file.filename,
            ) {
            // Plain text this large has more text than a file may hold: refused without
            // reading it (its text is at least half its size).
            Err(too_much())
        } else {
            let bytes = read_all(&*st.storage, &file.storage_key).await?;
            let filename = file.filename.clone();
            let chunker = st.pipeline.chunker.clone();
            let max_tokens = st.max_file_tokens;
            let too_long = too_much_text(max_text, max_tokens);
            tokio::task::spawn_blocking(move || {
                let e = extract_owned(bytes, &filename)?;
                if e.text.len() > max_text {
                    return Err(ExtractError::Invalid(too_long));
                }
                // Text that cannot fit in a vector store fails here, once for the file and
                // every store, before any of it is chunked or embedded. (Text shorter in bytes
                // than the limit in tokens cannot hold more tokens than that.)
                if e.text.len() > max_tokens {
                    if let Err(n) = chunker.count_up_to(&e.text, max_tokens) {
                        return Err(ExtractError::Invalid(too_many_tokens(n, max_tokens)));
                    }
                }
                Ok(e)
            })
            .instrument(tracing::info_span!("ingest.extract", file_id = %file_id))
            .await
            .map_err(Error::from)?
        };
        let now = st.clock.now();
        crate::metrics::extracted(
            extracted.as_ref().map_or("unknown", |e| e.format),
            extracted.is_ok(),
            started.elapsed(),
        );
        match extracted {
            Ok(e) => {
                let key = format!("texts/{file_id}");
                let format = e.format;
                let markdown = e.is_markdown();
                // The text is written and then chunked from the same buffer, not a copy.
                let shared = bytes::Bytes::from(e.text.into_bytes());
                let mut w = st.staging.writer(false);
                w.write(shared.clone()).await?;
                st.storage.put(&key, w.finish().await?).await?;
                let text = String::from_utf8(Vec::from(shared))
                    .map_err(|err| Error::Internal(anyhow::anyhow!("extracted text: {err}")))?;
                let kept = st
                    .meta
                    .put_file_text(
                        file_id,
                        &FileText::Ok {
                            storage_key: key.clone(),
                            format: format.to_owned(),
                            sections: e.sections.clone(),
                        },
                        now,
                    )
                    .await?;
                if !kept {
                    // Deleted while it was extracted: the purge may have run already, so the
                    // text written above is this job's to remove.
                    st.storage.delete(&key).await?;
                    return Err(Failure::Cancelled);
                }
                st.meta
                    .set_file_status(file_id, FileStatus::Processed, None)
                    .await?;
                Ok(ExtractedText {
                    text,
                    markdown,
                    sections: e.sections,
                })
            }
            Err(err) => {
                let (code, message) = match err {
                    ExtractError::Unsupported(m) => (IngestErrorCode::UnsupportedFile, m),
                    ExtractError::Invalid(m) => (IngestErrorCode::InvalidFile, m),
                };
                let kept = st
                    .meta
                    .put_file_text(
                        file_id,
                        &FileText::Failed {
                            code,
                            message: message.clone(),
                        },
                        now,
                    )
                    .await?;
                if !kept {
                    return Err(Failure::Cancelled);
                }
                st.meta
                    .set_file_status(file_id, FileStatus::Error, Some(&message))
                    .await?;
                Err(Failure::Permanent(code, message))
            }
        }
    }

    /// Extract (if needed) -> chunk -> embed -> index, streamed: chunks are cut a segment at a
    /// time and embedded and indexed in batches as they come, so the first are searchable long
    /// before the last, and progress is written after every batch. Chunks and embeddings are
    /// cached per file (a resumed job or another store with the same chunking reuses them).
    /// Returns the usage bytes of the file in the store.
    async fn run_ingest(&self, job: &Job, stop_after: Option<Stage>) -> StageResult<i64> {
        let st = &self.st;
        let store = job
            .vector_store_id
            .as_ref()
            .ok_or_else(|| missing("vector_store_id"))?;
        let file = job.file_id.as_ref().ok_or_else(|| missing("file_id"))?;
        let Some(vs_file) = st.meta.get_vs_file(store, file).await? else {
            return Err(Failure::Cancelled);
        };
        if vs_file.status != VsFileStatus::InProgress {
            return Err(Failure::Cancelled);
        }
        let chunking = vs_file.chunking;
        let stop = |stage: Stage| -> StageResult<()> {
            if stop_after == Some(stage) {
                Err(Failure::Stopped)
            } else {
                Ok(())
            }
        };

        let mut source = match st.meta.chunked(file, &chunking).await? {
            Some(total) => ChunkSource::Cached { next: 0, total },
            None => {
                let text = self
                    .with_lease(job, self.ensure_text(&job.project_id, file))
                    .await?;
                ChunkSource::fresh(self.start_chunking(text, chunking, file))
            }
        };
        stop(Stage::Extract)?;

        // A re-run starts clean in this store (its points are rewritten as they are indexed).
        self.still_ours(job).await?;
        st.index.delete_file(Some(store), file).await?;
        let model = super::chunk_vectors_id(&*st.pipeline.embedder);
        let (mut indexed, mut usage, mut batches) = (0u32, 0i64, 0u32);
        // Three batches are in flight at once: while batch N is embedded, batch N-1's vectors,
        // points and progress are written and batch N+1 is cut and cached, so the model never
        // waits for the database or the index. The last round only writes.
        let mut next = self
            .with_lease(
                job,
                source.next_batch(st, file, &chunking, &model, FIRST_BATCH_TOKENS),
            )
            .await?;
        if next.is_some() {
            stop(Stage::Chunk)?;
        }
        // Embedded, not yet written: the rows and which of them were embedded just now.
        let mut pending: Option<(Vec<ChunkRow>, Vec<u32>)> = None;
        while next.is_some() || pending.is_some() {
            self.still_ours(job).await?;
            let total = source.total();
            let (wrote, more) = (pending.is_some(), next.is_some());
            let write = async {
                match pending.take() {
                    Some((prev, fresh)) => {
                        self.write_batch(&vs_file, prev, &fresh, &mut indexed, total)
                            .await
                    }
                    None => Ok(()),
                }
            };
            let embed = async {
                match next.as_mut() {
                    Some(rows) => self.embed_missing(file, rows).await,
                    None => Ok(Vec::new()),
                }
            };
            let fetch = async {
                if more {
                    source
                        .next_batch(st, file, &chunking, &model, EMBED_BATCH_TOKENS)
                        .await
                } else {
                    Ok(None)
                }
            };
            let ((), fresh, fetched) = self
                .with_lease(job, async { tokio::try_join!(write, embed, fetch) })
                .await?;
            if !wrote {
                stop(Stage::Embed)?;
            } else {
                batches += 1;
                if batches == 1 {
                    stop(Stage::FirstBatch)?;
                }
            }
            if let Some(rows) = std::mem::replace(&mut next, fetched) {
                usage += rows.iter().map(|r| r.text.len() as i64).sum::<i64>();
                pending = Some((rows, fresh));
            }
        }
        let total = source.finish(st, file, &chunking).await?;
        // An attributes update that landed while this job ran rewrote the points indexed
        // before it, but the later ones carry what the job read at its start: write the
        // current attributes to them all. (An update after this read rewrites every point
        // itself, as this job's writes are done.)
        if let Some(now) = st.meta.get_vs_file(store, file).await? {
            if now.attributes != vs_file.attributes {
                st.index
                    .set_attributes(store, file, &now.attributes)
                    .await?;
            }
        }
        st.meta
            .set_vs_file_progress(store, file, indexed, Some(total))
            .await?;
        if total == 0 {
            return Err(Failure::Permanent(
                IngestErrorCode::InvalidFile,
                "The file contains no text.".to_owned(),
            ));
        }
        tracing::info!(file_id = %file, vector_store_id = %store, chunks = total, "file indexed");
        stop(Stage::Index)?;
        Ok(usage)
    }

    /// Cuts `text` into chunks on a blocking thread, segment by segment, sending each
    /// segment's chunks as soon as they are cut.
    fn start_chunking(
        &self,
        text: ExtractedText,
        chunking: Chunking,
        file: &FileId,
    ) -> mpsc::UnboundedReceiver<Produced> {
        let (tx, rx) = mpsc::unbounded_channel();
        let chunker = self.st.pipeline.chunker.clone();
        let max_tokens = self.st.max_file_tokens;
        let span = tracing::info_span!("ingest.chunk", file_id = %file);
        tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let ExtractedText {
                text,
                markdown,
                sections,
            } = text;
            let mut idx = 0u32;
            let result = chunker.chunk_segments(&text, chunking, markdown, max_tokens, |chunks| {
                let rows = chunks
                    .into_iter()
                    .map(|c| {
                        let row = ChunkRow {
                            idx,
                            extra: location_of(&sections, c.offset, c.offset + c.text.len()),
                            text: c.text,
                            embedding: None,
                        };
                        idx += 1;
                        (row, c.tokens)
                    })
                    .collect();
                // A consumer that went away (the job stopped) stops the chunking too.
                tx.send(Produced::Chunks(rows)).is_ok()
            });
            let _ = tx.send(match result {
                Ok(total) => Produced::Done(total as u32),
                Err(tokens) => Produced::TooLong(tokens),
            });
        });
        rx
    }

    /// Embeds the rows that have no vector from the current model; returns the chunk indexes
    /// of those it embedded (their vectors are cached when the batch is written).
    async fn embed_missing(&self, file: &FileId, rows: &mut [ChunkRow]) -> StageResult<Vec<u32>> {
        let todo: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].embedding.is_none())
            .collect();
        if todo.is_empty() {
            return Ok(Vec::new());
        }
        // Each chunk is read after its section's title; fitting the title counts the chunk's
        // tokens, so it runs off the async threads.
        let (chunker, window) = (
            self.st.pipeline.chunker.clone(),
            self.st.pipeline.embedder.max_input_tokens(),
        );
        let chunks: Vec<(Option<String>, String)> = todo
            .iter()
            .map(|&i| {
                let title = rows[i].extra.get("section").and_then(|v| v.as_str());
                (title.map(str::to_owned), rows[i].text.clone())
            })
            .collect();
        let texts: Vec<String> = tokio::task::spawn_blocking(move || {
            chunks
                .into_iter()
                .map(|(title, text)| {
                    match chunker.embedding_input(title.as_deref(), &text, window) {
                        std::borrow::Cow::Borrowed(_) => text,
                        std::borrow::Cow::Owned(input) => input,
                    }
                })
                .collect()
        })
        .await
        .map_err(Error::from)?;
        let vectors = self
            .st
            .pipeline
            .embedder
            .embed_bulk(texts)
            .instrument(tracing::info_span!("ingest.embed", file_id = %file, chunks = todo.len()))
            .await?;
        let mut fresh = Vec::with_capacity(todo.len());
        for (v, &i) in vectors.into_iter().zip(&todo) {
            rows[i].embedding = Some(v);
            fresh.push(rows[i].idx);
        }
        Ok(fresh)
    }

    /// Writes one embedded batch: caches the vectors embedded just now (`fresh`), indexes its
    /// points and records the progress.
    async fn write_batch(
        &self,
        vs_file: &VsFileRecord,
        rows: Vec<ChunkRow>,
        fresh: &[u32],
        indexed: &mut u32,
        total: Option<u32>,
    ) -> StageResult<()> {
        let (store, file) = (&vs_file.vector_store_id, &vs_file.file_id);
        if !fresh.is_empty() {
            let model = super::chunk_vectors_id(&*self.st.pipeline.embedder);
            let pairs: Vec<(u32, Vec<f32>)> = rows
                .iter()
                .filter(|r| fresh.binary_search(&r.idx).is_ok())
                .filter_map(|r| r.embedding.clone().map(|v| (r.idx, v)))
                .collect();
            self.st
                .meta
                .set_embeddings(file, &vs_file.chunking, &model, &pairs)
                .await?;
        }
        let n = rows.len() as u32;
        self.index_rows(vs_file, rows).await?;
        *indexed += n;
        self.st
            .meta
            .set_vs_file_progress(store, file, *indexed, total)
            .await?;
        tracing::debug!(file_id = %file, indexed = *indexed, total = ?total, "ingest progress");
        Ok(())
    }

    async fn index_rows(&self, vs_file: &VsFileRecord, rows: Vec<ChunkRow>) -> StageResult<()> {
        let mut points = Vec::with_capacity(rows.len());
        for r in rows {
            let vector = r.embedding.ok_or_else(|| {
                Failure::Transient(Error::Internal(anyhow::anyhow!(
                    "chunk {} has no embedding",
                    r.idx
                )))
            })?;
            points.push(Point {
                id: point_id(&vs_file.file_id, &vs_file.vector_store_id, r.idx),
                vector,
                vector_store_id: vs_file.vector_store_id.clone(),
                project_id: vs_file.project_id.clone(),
                file_id: vs_file.file_id.clone(),
                chunk_index: r.idx,
                text: r.text,
                attributes: vs_file.attributes.clone(),
                extra: r.extra,
            });
        }
        self.st
            .index
            .upsert(points)
            .instrument(tracing::info_span!("index.upsert", file_id = %vs_file.file_id))
            .await?;
        Ok(())
    }

    /// Runs `work` to its end while renewing the job's lease every quarter of it; `Cancelled`
    /// if the job stopped being ours meanwhile. The work is never dropped half-way: a write it
    /// has started (an index upsert on a blocking thread, a blob being stored) lands before the
    /// job undoes its writes and releases its claim, never after the purge that waits for it.
    async fn with_lease<T>(
        &self,
        job: &Job,
        work: impl std::future::Future<Output = StageResult<T>>,
    ) -> StageResult<T> {
        tokio::pin!(work);
        let period = Duration::from_millis((self.st.lease_secs.max(1) * 250) as u64);
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    if let Err(stop) = self.still_ours(job).await {
                        // Ours no longer (or unknown): let the work end, then stop.
                        let _ = work.await;
                        return Err(stop);
                    }
                }
            }
        }
    }

    async fn run_purge_file(&self, job: &Job) -> StageResult<()> {
        let st = &self.st;
        let file = job.file_id.as_ref().ok_or_else(|| missing("file_id"))?;
        st.index.delete_file(None, file).await?;
        st.storage.delete(&format!("texts/{file}")).await?;
        st.meta.delete_file_caches(file).await?;
        st.storage
            .delete(&crate::domain::FileRecord::storage_key_for(file))
            .await?;
        st.meta.purge_file_row(file).await?;
        Ok(())
    }

    async fn run_purge_vs_file(&self, job: &Job) -> StageResult<()> {
        let st = &self.st;
        let store = job
            .vector_store_id
            .as_ref()
            .ok_or_else(|| missing("vector_store_id"))?;
        let file = job.file_id.as_ref().ok_or_else(|| missing("file_id"))?;
        // Re-attached since: its own ingest job replaces the points. (A file whose batch was
        // cancelled keeps its row, as `cancelled`, but not its points.)
        let live = st.meta.get_vs_file(store, file).await?;
        if !matches!(live, Some(f) if f.status != VsFileStatus::Cancelled) {
            st.index.delete_file(Some(store), file).await?;
        }
        Ok(())
    }

    /// Rounds of [`VectorIndex::index_keywords`] over the store until it is done, under the
    /// job's lease. A kill between rounds loses nothing: points done have their vector, and the
    /// next run starts over from the first that has none.
    async fn run_index_keywords(&self, job: &Job) -> StageResult<()> {
        let store = job
            .vector_store_id
            .as_ref()
            .ok_or_else(|| missing("vector_store_id"))?;
        let index = &self.st.index;
        self.with_lease(job, async {
            let mut from = None;
            let mut indexed = 0;
            loop {
                let round = index.index_keywords(store, from, KEYWORD_ROUND).await?;
                indexed += round.indexed;
                match round.next {
                    Some(next) => from = Some(next),
                    None => break,
                }
            }
            tracing::info!(store = %store, points = indexed, "keyword vectors written");
            Ok(())
        })
        .await
    }

    async fn run_purge_store(&self, job: &Job) -> StageResult<()> {
        let store = job
            .vector_store_id
            .as_ref()
            .ok_or_else(|| missing("vector_store_id"))?;
        self.st.index.delete_store(store).await?;
        self.st.meta.purge_vector_store_rows(store).await?;
        Ok(())
    }
}

/// A file's text with what chunking needs to know about it.
struct ExtractedText {
    text: String,
    markdown: bool,
    sections: Vec<ragstore_extract::Section>,
}

/// What the chunking thread sends: each segment's chunks (with their token counts), then how
/// many there were.
enum Produced {
    Chunks(Vec<(ChunkRow, usize)>),
    Done(u32),
    /// The text holds this many tokens, more than the most a file may hold.
    TooLong(usize),
}

/// Where an ingest job's chunks come from: cut now, or cached by an earlier run.
enum ChunkSource {
    Fresh {
        rx: mpsc::UnboundedReceiver<Produced>,
        /// Cut, not yet embedded.
        pending: std::collections::VecDeque<(ChunkRow, usize)>,
        total: Option<u32>,
    },
    Cached {
        next: u32,
        total: u32,
    },
}

impl ChunkSource {
    fn fresh(rx: mpsc::UnboundedReceiver<Produced>) -> Self {
        ChunkSource::Fresh {
            rx,
            pending: std::collections::VecDeque::new(),
            total: None,
        }
    }

    /// How many chunks the file has, once known.
    fn total(&self) -> Option<u32> {
        match self {
            ChunkSource::Fresh { total, .. } => *total,
            ChunkSource::Cached { total, .. } => Some(*total),
        }
    }

    /// The next chunks in order, about `tokens` tokens' worth (at least one), with the vectors
    /// the cache already holds from `model`; `None` when all were handed out. Fresh chunks are
    /// written to the cache first.
    async fn next_batch(
        &mut self,
        st: &WorkerDeps,
        file: &FileId,
        chunking: &Chunking,
        model: &str,
        tokens: usize,
    ) -> StageResult<Option<Vec<ChunkRow>>> {
        match self {
            ChunkSource::Cached { next, total } => {
                if *next >= *total {
                    return Ok(None);
                }
                // ~4 bytes a token; the cache does not keep token counts.
                let limit = (tokens / 200).clamp(1, INDEX_BATCH) as u32;
                let rows = st
                    .meta
                    .get_chunks(file, chunking, *next, limit, Some(model))
                    .await?;
                match rows.last() {
                    None => Ok(None),
                    Some(last) => {
                        *next = last.idx + 1;
                        Ok(Some(rows))
                    }
                }
            }
            ChunkSource::Fresh { rx, pending, total } => {
                // Wait for enough chunks, or for the end of the text.
                while total.is_none() && pending.iter().map(|(_, t)| t).sum::<usize>() < tokens {
                    take_produced(rx.recv().await, pending, total, st.max_file_tokens)?;
                }
                // The chunker runs ahead: a file it found too long ends now, not after
                // everything before its verdict was embedded.
                while let Ok(msg) = rx.try_recv() {
                    take_produced(Some(msg), pending, total, st.max_file_tokens)?;
                }
                let mut batch = Vec::new();
                let mut taken = 0;
                while let Some((row, t)) = pending.pop_front() {
                    taken += t;
                    batch.push(row);
                    if taken >= tokens {
                        break;
                    }
                }
                if batch.is_empty() {
                    return Ok(None);
                }
                if !st.meta.put_chunks(file, chunking, &batch).await? {
                    // The file was deleted: its purge removes what is cached; add nothing.
                    return Err(Failure::Cancelled);
                }
                // A resumed job finds the vectors of the chunks it embedded before.
                let first = batch[0].idx;
                let cached = st
                    .meta
                    .get_chunks(file, chunking, first, batch.len() as u32, Some(model))
                    .await?;
                for (row, c) in batch.iter_mut().zip(cached) {
                    if c.idx == row.idx {
                        row.embedding = c.embedding;
                    }
                }
                Ok(Some(batch))
            }
        }
    }

    /// Records a fresh chunking as complete; returns how many chunks the file has.
    async fn finish(
        &mut self,
        st: &WorkerDeps,
        file: &FileId,
        chunking: &Chunking,
    ) -> StageResult<u32> {
        match self {
            ChunkSource::Cached { total, .. } => Ok(*total),
            ChunkSource::Fresh { total, .. } => {
                let total = total.ok_or_else(|| {
                    Failure::Transient(Error::Internal(anyhow::anyhow!("chunking did not finish")))
                })?;
                if !st.meta.finish_chunking(file, chunking, total).await? {
                    return Err(Failure::Cancelled);
                }
                Ok(total)
            }
        }
    }
}

fn is_purge(kind: JobKind) -> bool {
    matches!(
        kind,
        JobKind::PurgeFile | JobKind::PurgeVsFile | JobKind::PurgeStore
    )
}

fn missing(what: &str) -> Failure {
    Failure::Permanent(IngestErrorCode::ServerError, format!("job has no {what}"))
}

/// Takes in one message of the chunking thread.
fn take_produced(
    msg: Option<Produced>,
    pending: &mut std::collections::VecDeque<(ChunkRow, usize)>,
    total: &mut Option<u32>,
    max_tokens: usize,
) -> StageResult<()> {
    match msg {
        Some(Produced::Chunks(rows)) => {
            pending.extend(rows);
            Ok(())
        }
        Some(Produced::Done(n)) => {
            *total = Some(n);
            Ok(())
        }
        Some(Produced::TooLong(n)) => Err(Failure::Permanent(
            IngestErrorCode::InvalidFile,
            too_many_tokens(n, max_tokens),
        )),
        None => Err(Failure::Transient(Error::Internal(anyhow::anyhow!(
            "the chunking thread stopped"
        )))),
    }
}

/// What sniffing a file's format reads of it.
const SNIFF_BYTES: usize = 64 << 10;

/// The first `n` bytes of a blob (fewer if it is shorter).
async fn read_prefix(storage: &dyn FileStorage, key: &str, n: usize) -> Result<Vec<u8>> {
    use futures_util::StreamExt;
    let blob = storage
        .get(key)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("missing blob {key}")))?;
    let mut out = Vec::with_capacity(n.min(blob.len as usize));
    let mut stream = blob.stream;
    while out.len() < n {
        match stream.next().await {
            Some(chunk) => out.extend_from_slice(&chunk?),
            None => break,
        }
    }
    out.truncate(n);
    Ok(out)
}

fn too_much_text(max_text: usize, max_tokens: usize) -> String {
    let size = if max_text >= 1 << 20 {
        format!("{} MiB", max_text >> 20)
    } else {
        format!("{max_text} bytes")
    };
    format!(
        "The file's text is larger than {size}, more than a vector store file may hold (at most {max_tokens} tokens)."
    )
}

/// Why a text over the token limit is refused (at extraction, or by chunking a text extracted
/// before that check).
fn too_many_tokens(n: usize, max_tokens: usize) -> String {
    format!(
        "The file's text is {n} tokens or more; a file may hold at most {max_tokens} tokens for file_search."
    )
}

async fn read_all(storage: &dyn FileStorage, key: &str) -> Result<Vec<u8>> {
    read_prefix(storage, key, usize::MAX).await
}

/// Starts `n` workers that drain the queue, waking on `wakeup` (or every second).
pub fn spawn_workers(
    st: WorkerDeps,
    wakeup: Wakeup,
    n: usize,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    (0..n.max(1))
        .map(|i| {
            // Named after the process too: where replicas share a queue, a job's `locked_by`
            // says which process holds it.
            let worker = Worker::new(st.clone(), &format!("p{}-w{i}", std::process::id()));
            let notify = wakeup.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let notified = notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    loop {
                        // On shutdown a job in flight is abandoned where it stands: its stages
                        // are idempotent and the next start queues it again.
                        let ran = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            ran = worker.try_run_one() => ran,
                        };
                        match ran {
                            Ok(true) => continue,
                            Ok(false) => break,
                            Err(e) => {
                                tracing::error!(error = ?e, "worker could not run a job");
                                break;
                            }
                        }
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            })
        })
        .collect()
}
