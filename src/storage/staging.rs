//! Incoming bytes are written to a temporary file inside the data dir before anything refers to
//! them. A [`StagedWriter`] streams chunks to a blocking thread (the async reactor never touches
//! the disk); a [`StagedFile`] is the finished, fsynced result. Both delete their file when
//! dropped unless it was handed on, so a client that disconnects mid-upload leaves nothing
//! behind; a process that dies mid-upload leaves a temp file that [`Staging::clean`] removes at
//! the next start.

use anyhow::Context;
use bytes::Bytes;
use md5::{Digest, Md5};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::domain::{Error, Result};

const WRITE_BUFFER: usize = 1 << 20;
/// Chunks in flight between the request and the writer thread: bounds memory per upload.
const CHANNEL_DEPTH: usize = 16;

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

    /// Starts a new staged file; `md5` asks the writer to hash the bytes as they pass.
    pub fn writer(&self, md5: bool) -> StagedWriter {
        let path = TempPath(Some(self.dir.join(format!(
            "{}.partial",
            crate::domain::ids::PartId::generate()
        ))));
        let (tx, rx) = mpsc::channel::<Msg>(CHANNEL_DEPTH);
        let file_path = path.path().to_path_buf();
        let task = tokio::task::spawn_blocking(move || write_loop(&file_path, rx, md5));
        StagedWriter {
            tx: Some(tx),
            task: Some(task),
            path,
            len: 0,
        }
    }
}

enum Msg {
    Data(Bytes),
    Finish,
}

/// What the writer thread returns when told to finish: the md5 if it was asked for.
type Finished = Option<[u8; 16]>;

fn write_loop(path: &Path, mut rx: mpsc::Receiver<Msg>, md5: bool) -> std::io::Result<Finished> {
    let file = File::options().write(true).create_new(true).open(path)?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = md5.then(Md5::new);
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Data(chunk) => {
                if let Some(h) = hasher.as_mut() {
                    h.update(&chunk);
                }
                out.write_all(&chunk)?;
            }
            Msg::Finish => {
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                return Ok(hasher.map(|h| h.finalize().into()));
            }
        }
    }
    // The sender went away without Finish: the upload was abandoned. The writer's TempPath may
    // have been dropped before this thread created the file, so remove it here too.
    drop(out);
    let _ = std::fs::remove_file(path);
    Err(std::io::Error::new(
        std::io::ErrorKind::Interrupted,
        "staged write abandoned",
    ))
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
    tx: Option<mpsc::Sender<Msg>>,
    task: Option<JoinHandle<std::io::Result<Finished>>>,
    path: TempPath,
    len: u64,
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
        let n = chunk.len() as u64;
        let sent = match &self.tx {
            Some(tx) => tx.send(Msg::Data(chunk)).await.is_ok(),
            None => false,
        };
        if !sent {
            // The writer thread stopped: its result says why.
            return Err(self.join_error().await);
        }
        self.len += n;
        Ok(())
    }

    async fn join_error(&mut self) -> Error {
        self.tx = None;
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Err(e)) => Error::Internal(anyhow::Error::new(e).context("writing staged file")),
                Ok(Ok(_)) => Error::Internal(anyhow::anyhow!("staged writer finished early")),
                Err(e) => e.into(),
            },
            None => Error::Internal(anyhow::anyhow!("staged writer already finished")),
        }
    }

    /// Flushes and fsyncs; the bytes are durable on disk when this returns.
    pub async fn finish(mut self) -> Result<StagedFile> {
        if let Some(tx) = self.tx.take() {
            // A send error means the thread already stopped; the join below reports why.
            let _ = tx.send(Msg::Finish).await;
        }
        let task = self
            .task
            .take()
            .ok_or_else(|| anyhow::anyhow!("staged writer already finished"))?;
        let md5 = task
            .await?
            .map_err(|e| anyhow::Error::new(e).context("writing staged file"))?;
        let path = std::mem::replace(&mut self.path, TempPath(None));
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
