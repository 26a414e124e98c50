//! Incoming bytes are written to a temporary file inside the data dir before anything refers to
//! them. A [`StagedWriter`] gathers chunks and hands each megabyte to a blocking task that
//! writes (and hashes) it: the async reactor never touches the disk, and no thread is held
//! while a client is slow or stalled (a thread is busy only while a batch is being written).
//! A [`StagedFile`] is the finished, fsynced result. Both delete their file when dropped unless
//! it was handed on, so a client that disconnects mid-upload leaves nothing behind; a process
//! that dies mid-upload leaves a temp file that [`Staging::clean`] removes at the next start.

use anyhow::Context;
use bytes::Bytes;
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tokio::task::JoinHandle;

use crate::domain::Result;

/// Bytes gathered before a batch goes to disk: bounds memory per upload (two batches, the one
/// being written and the one being gathered).
const WRITE_BATCH: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating staging dir {}", dir.display()))?;
        Ok(Self { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes every staged file. Only safe before the server accepts requests.
    pub fn clean(&self) -> Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Starts a new staged file; `md5` asks the writer to hash the bytes as they pass. The file
    /// is created with the first batch written.
    pub fn writer(&self, md5: bool) -> StagedWriter {
        let path = self.dir.join(format!(
            "{}.partial",
            crate::domain::ids::PartId::generate()
        ));
        StagedWriter {
            state: Some(State::New { path, md5 }),
            pending: None,
            batch: Vec::new(),
            batch_len: 0,
            len: 0,
            in_flight: crate::metrics::InFlight::default(),
        }
    }
}

/// The open file and its running hash. It travels into each blocking write and back, so the
/// file is always owned by exactly one place: if the request is dropped while a write runs,
/// the write's result (this, with its [`TempPath`]) is dropped when it ends, which removes
/// the file.
struct Open {
    path: TempPath,
    out: BufWriter<File>,
    hasher: Option<Md5>,
}

enum State {
    /// Nothing written yet: the file does not exist.
    New {
        path: PathBuf,
        md5: bool,
    },
    Open(Box<Open>),
}

type Written = std::io::Result<Box<Open>>;

/// Opens the file if it is new, then writes (and hashes) `batch`. Runs on a blocking thread.
fn write_batch(state: State, batch: Vec<Bytes>) -> Written {
    let mut open = match state {
        State::Open(open) => open,
        State::New { path, md5 } => {
            let file = File::options().write(true).create_new(true).open(&path)?;
            Box::new(Open {
                path: TempPath(Some(path)),
                out: BufWriter::with_capacity(WRITE_BATCH, file),
                hasher: md5.then(Md5::new),
            })
        }
    };
    for chunk in &batch {
        if let Some(h) = open.hasher.as_mut() {
            h.update(chunk);
        }
        open.out.write_all(chunk)?;
    }
    Ok(open)
}

/// A path that is removed when dropped, unless [`TempPath::keep`] took it.
#[derive(Debug)]
pub struct TempPath(Option<PathBuf>);

impl TempPath {
    pub fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Hands the file on (e.g. after renaming it into place); nothing is removed on drop.
    pub fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "could not remove staged file");
                }
            }
        }
    }
}

pub struct StagedWriter {
    /// `None` while a batch is being written (the state is inside `pending`).
    state: Option<State>,
    pending: Option<JoinHandle<Written>>,
    batch: Vec<Bytes>,
    batch_len: usize,
    len: u64,
    /// Counts this writer's bytes in `ragstore_upload_bytes_in_flight` until it is done.
    in_flight: crate::metrics::InFlight,
}

impl StagedWriter {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.len += chunk.len() as u64;
        self.in_flight.add(chunk.len());
        self.batch_len += chunk.len();
        self.batch.push(chunk);
        if self.batch_len >= WRITE_BATCH {
            self.send_batch().await?;
        }
        Ok(())
    }

    /// Waits for the batch being written, if any, and takes the state back.
    async fn settle(&mut self) -> Result<State> {
        if let Some(task) = self.pending.take() {
            let open = task
                .await?
                .map_err(|e| anyhow::Error::new(e).context("writing staged file"))?;
            return Ok(State::Open(open));
        }
        self.state
            .take()
            .ok_or_else(|| anyhow::anyhow!("staged writer failed earlier").into())
    }

    /// Hands the gathered batch to a blocking task once the previous one is written, so the
    /// next batch is gathered from the network while this one goes to disk.
    async fn send_batch(&mut self) -> Result<()> {
        let state = self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            write_batch(state, batch)
        }));
        Ok(())
    }

    /// Flushes and fsyncs; the bytes are durable on disk when this returns.
    pub async fn finish(mut self) -> Result<StagedFile> {
        let state = self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        let (path, md5) = tokio::task::spawn_blocking(move || {
            let mut open = write_batch(state, batch)?;
            open.out.flush()?;
            open.out.get_ref().sync_all()?;
            let Open { path, hasher, .. } = *open;
            Ok::<_, std::io::Error>((path, hasher.map(|h| h.finalize().into())))
        })
        .await?
        .map_err(|e| anyhow::Error::new(e).context("writing staged file"))?;
        Ok(StagedFile {
            path,
            len: self.len,
            md5,
        })
    }
}

/// Finished staged bytes, not yet referenced by anything.
#[derive(Debug)]
pub struct StagedFile {
    pub path: TempPath,
    pub len: u64,
    pub md5: Option<[u8; 16]>,
}
