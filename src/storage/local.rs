//! Blobs as files under `<data-dir>/blobs`. Staged files live on the same filesystem, so
//! publishing a blob is an atomic rename followed by an fsync of the directory.

use anyhow::Context;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::io::{Read, Seek};
use std::path::{Component, Path, PathBuf};
use tokio::sync::mpsc;

use super::{Blob, FileStorage, Listed, StagedFile};
use crate::domain::{Error, Result};

const READ_CHUNK: usize = 256 << 10;

#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("creating blob dir {}", root.display()))?;
        Ok(Self { root })
    }

    /// Keys are ours, but a key must never climb out of the root whatever happens upstream.
    fn path_of(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        // Each segment a plain name: nothing absolute, no `..`, and no empty segment that the
        // filesystem would quietly fold into another key.
        let safe = !key.is_empty()
            && key
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            return Err(Error::Internal(anyhow::anyhow!(
                "unsafe storage key {key:?}"
            )));
        }
        Ok(self.root.join(rel))
    }
}

impl LocalStorage {
    /// The blob under `key`, whole or the bytes `range`, streamed by a blocking reader thread a
    /// few chunks ahead of the client.
    async fn read(&self, key: &str, range: Option<std::ops::Range<u64>>) -> Result<Option<Blob>> {
        let path = self.path_of(key)?;
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut file = std::fs::File::open(&path)?;
            let size = file.metadata()?.len();
            let (start, end) = match range {
                Some(r) => (r.start.min(size), r.end.min(size)),
                None => (0, size),
            };
            file.seek(std::io::SeekFrom::Start(start))?;
            Ok((
                file.take(end.saturating_sub(start)),
                end.saturating_sub(start),
            ))
        })
        .await?;
        let (mut file, len) = match opened {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || loop {
            let mut buf = BytesMut::zeroed(READ_CHUNK);
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf.freeze())).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        });
        let stream = tokio_stream_from(rx);
        Ok(Some(Blob { len, stream }))
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl FileStorage for LocalStorage {
    async fn put(&self, key: &str, staged: StagedFile) -> Result<()> {
        let dest = self.path_of(key)?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let parent = dest.parent().unwrap_or(Path::new("/")).to_path_buf();
            std::fs::create_dir_all(&parent)?;
            std::fs::rename(staged.path.path(), &dest)?;
            staged.path.keep();
            fsync_dir(&parent)
        })
        .await?
        .with_context(|| format!("publishing blob {key}"))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Blob>> {
        self.read(key, None).await
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Option<Blob>> {
        self.read(key, Some(range)).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let path = self.path_of(prefix.trim_end_matches('/'))?;
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let root = self.root.clone();
        let start = self.path_of(prefix.trim_end_matches('/'))?;
        let keys = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<Listed>> {
            let mut keys = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let path = entry.path();
                    if entry.file_type()?.is_dir() {
                        stack.push(path);
                    } else if let Ok(rel) = path.strip_prefix(&root) {
                        let modified = entry
                            .metadata()?
                            .modified()?
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs() as i64);
                        keys.push(Listed {
                            key: rel.to_string_lossy().into_owned(),
                            modified,
                        });
                    }
                }
            }
            Ok(keys)
        })
        .await??;
        Ok(keys)
    }
}

fn tokio_stream_from(
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
) -> futures_util::stream::BoxStream<'static, std::io::Result<Bytes>> {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}
