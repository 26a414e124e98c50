//! Blobs in an S3-compatible bucket, on the `object_store` crate: `--storage-url
//! s3://bucket/prefix`, with the endpoint, region and credentials taken from the usual AWS
//! variables (`AWS_ENDPOINT_URL` for MinIO, Ceph, moto and other S3-compatible stores).
//!
//! - **put** streams the staged file in 8 MiB parts through an S3 multipart upload, at most
//!   [`PUT_CONCURRENCY`] parts in flight, so memory stays flat whatever the file's size; a file
//!   smaller than one part is a single `PUT`. An object is visible only once complete (S3's
//!   multipart completion is atomic), and a failed upload is aborted.
//! - **get** streams the object as S3 sends it (no buffering of the whole object).
//! - **delete** is idempotent: a missing key is not an error.
//!
//! The Uploads API's parts are objects too (`parts/<upload>/<part>`); completing an upload reads
//! them back in the client's order and writes the assembled file, as on local disk. S3 could
//! concatenate server-side (UploadPartCopy) but `object_store` does not offer it, and completion
//! checks the assembled bytes anyway (md5, and the JSONL of `purpose=batch` files).

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

use super::{Blob, FileStorage, Listed, StagedFile};
use crate::domain::{Error, Result};

/// Size of each part of a multipart upload (S3 wants at least 5 MiB but the last).
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once: memory in flight per upload is at most this many parts.
const PUT_CONCURRENCY: usize = 4;
/// How much of the staged file one blocking read takes.
const READ_CHUNK: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<dyn ObjectStore>,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
    prefix: String,
    url: String,
}

impl S3Storage {
    /// Connects to `s3://bucket[/prefix]` with the configuration of the `AWS_*` environment
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
    /// `AWS_REGION`, `AWS_ENDPOINT_URL`). Plain `http://` endpoints are allowed (a local MinIO).
    pub fn open(url: &str) -> Result<Self> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            anyhow::anyhow!("storage URL {url}: only s3://bucket/prefix is supported")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Internal(anyhow::anyhow!(
                "storage URL {url} names no bucket"
            )));
        }
        let prefix = prefix.trim_matches('/').to_owned();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        // object_store reads AWS_ENDPOINT; the AWS SDKs' name is AWS_ENDPOINT_URL.
        let endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        if let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) {
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint);
        }
        if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
            builder = builder.with_region("us-east-1");
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring S3 storage {url}"))?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            url: url.to_owned(),
        })
    }

    /// The URL it was opened with, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn path_of(&self, key: &str) -> Result<ObjectPath> {
        // Keys are ours, but an odd one must fail rather than address another object.
        let safe = !key.is_empty()
            && key
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..");
        if !safe {
            return Err(Error::Internal(anyhow::anyhow!(
                "unsafe storage key {key:?}"
            )));
        }
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjectPath::parse(&full).map_err(|e| Error::Internal(anyhow::anyhow!(e)))
    }

    /// The key of an object path, relative to the prefix.
    fn key_of(&self, path: &ObjectPath) -> Option<String> {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            return Some(full.to_owned());
        }
        full.strip_prefix(&self.prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(str::to_owned)
    }

    async fn put_multipart(&self, path: &ObjectPath, staged: StagedFile) -> Result<()> {
        let upload = self.store.put_multipart(path).await.map_err(s3_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        // tokio's file reads run on its blocking pool; the reactor never waits on the disk.
        let mut file = tokio::fs::File::open(staged.path.path()).await?;
        let result: Result<()> = async {
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                // Back-pressure first: never more than PUT_CONCURRENCY parts in flight.
                writer
                    .wait_for_capacity(PUT_CONCURRENCY)
                    .await
                    .map_err(s3_error)?;
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                writer.write(&buf[..n]);
            }
        }
        .await;
        match result {
            Ok(()) => {
                writer.finish().await.map_err(s3_error)?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, "aborting a failed S3 multipart upload");
                }
                Err(e)
            }
        }
    }
}

/// Every object_store failure but a missing object may pass (network, throttling, a 5xx).
fn s3_error(e: object_store::Error) -> Error {
    Error::Unavailable(anyhow::Error::new(e).context("S3 storage"))
}

#[async_trait]
impl FileStorage for S3Storage {
    async fn put(&self, key: &str, staged: StagedFile) -> Result<()> {
        let path = self.path_of(key)?;
        if staged.len as usize <= PART_SIZE {
            let file = staged.path.path().to_path_buf();
            let bytes = tokio::task::spawn_blocking(move || std::fs::read(file)).await??;
            self.store
                .put(&path, PutPayload::from(Bytes::from(bytes)))
                .await
                .map_err(s3_error)?;
        } else {
            self.put_multipart(&path, staged).await?;
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Blob>> {
        let path = self.path_of(key)?;
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(s3_error(e)),
        };
        let len = got.meta.size;
        let stream = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed();
        Ok(Some(Blob { len, stream }))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let path = self.path_of(prefix.trim_end_matches('/'))?;
        let listed = self
            .store
            .list(Some(&path))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(listed);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error(e)),
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let path = self.path_of(prefix.trim_end_matches('/'))?;
        let metas: Vec<_> = self
            .store
            .list(Some(&path))
            .try_collect()
            .await
            .map_err(s3_error)?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                self.key_of(&meta.location).map(|key| Listed {
                    key,
                    modified: meta.last_modified.timestamp(),
                })
            })
            .collect())
    }
}
