//! Blobs in an S3-compatible bucket, on the `object_store` crate: `--storage-url
//! s3://bucket/prefix`, with the endpoint, region and credentials taken from the usual AWS
//! variables (`AWS_ENDPOINT_URL` for MinIO, Ceph, moto and other S3-compatible stores).
//!
//! - **put** streams the staged file in 8 MiB parts through an S3 multipart upload, at most
//!   [`PUT_CONCURRENCY`] parts in flight, so memory stays flat whatever the file's size; a file
//!   smaller than one part is a single `PUT`. An object is visible only once complete (S3's
//!   multipart completion is atomic), and a failed upload is aborted.
//! - **get** streams the object as S3 sends it (no buffering of the whole object); **get_range**
//!   asks S3 for the bytes of a range only (a `Range` GET) and streams them the same way.
//! - **delete** is idempotent: a missing key is not an error.
//!
//! The Uploads API's parts are objects too (`parts/<upload>/<part>`). Completing an upload
//! assembles them inside S3 ([`FileStorage::compose`]): a multipart upload of the file whose
//! parts are server-side copies of the part objects (`UploadPartCopy`), in the client's order,
//! so no byte passes through ragstore again. S3 wants every part but the last to hold at least
//! 5 MiB; with smaller parts (or an md5 to check, or a `purpose=batch` file whose JSONL is
//! checked) completion reads the parts back and writes the assembled file, as on local disk.
//! `object_store` offers no part copy, so these four requests (create, copy, complete, abort)
//! are signed with its own SigV4 signer and credentials and sent with reqwest.

use anyhow::Context;
use async_trait::async_trait;
use axum::http::{HeaderValue, Method};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
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
/// S3's smallest part of a multipart upload, but for the last one.
const MIN_PART: u64 = 5 << 20;
/// S3's largest part that one `UploadPartCopy` copies whole.
const MAX_COPY_PART: u64 = 5 << 30;
/// S3's most parts in one multipart upload.
const MAX_PARTS: usize = 10_000;
/// What a key's segments keep unescaped in a URL path (object_store's own set).
const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    /// Key prefix inside the bucket (no leading or trailing `/`; may be empty).
    prefix: String,
    url: String,
    bucket: String,
    /// `https://s3.<region>.amazonaws.com/<bucket>` or the endpoint's equivalent, as object_store
    /// addresses the bucket (path style unless virtual-hosted style is configured).
    bucket_endpoint: String,
    region: String,
    http: reqwest::Client,
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
        let config = |key| builder.get_config_value(&key).filter(|v| !v.is_empty());
        let region = config(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted = config(AmazonS3ConfigKey::VirtualHostedStyleRequest)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        // As object_store's builder does: a configured endpoint names the bucket's host when
        // requests are virtual-hosted style, the service's otherwise.
        let bucket_endpoint = match (config(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
            (Some(endpoint), true) => endpoint,
            (Some(endpoint), false) => format!("{}/{bucket}", endpoint.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let store = builder
            .build()
            .with_context(|| format!("configuring S3 storage {url}"))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("building the HTTP client of S3 storage")?;
        Ok(Self {
            store: Arc::new(store),
            prefix,
            url: url.to_owned(),
            bucket: bucket.to_owned(),
            bucket_endpoint,
            region,
            http,
        })
    }

    /// The ETag S3 gives the object under `key` (a multipart object's ends in `-<parts>`), or
    /// `None` if there is none.
    pub async fn etag(&self, key: &str) -> Result<Option<String>> {
        match self.store.head(&self.path_of(key)?).await {
            Ok(meta) => Ok(meta.e_tag),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(e)),
        }
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

/// S3's answer to `CreateMultipartUpload`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateMultipartUploadResult {
    upload_id: String,
}

/// S3's answer to `UploadPartCopy`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CopyPartResult {
    e_tag: String,
}

/// An object path's segments, each percent-encoded, joined by `/`.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| utf8_percent_encode(s, PATH_SAFE).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// The requests object_store does not offer (a multipart upload whose parts are copies), each
/// signed with its own SigV4 signer and the store's credentials.
impl S3Storage {
    /// The URL of an object key (relative to the prefix), with `query` appended as given.
    fn object_url(&self, key: &str, query: &str) -> Result<reqwest::Url> {
        let path = encode_path(self.path_of(key)?.as_ref());
        let url = format!("{}/{path}?{query}", self.bucket_endpoint);
        reqwest::Url::parse(&url).map_err(|e| Error::Internal(anyhow::anyhow!("S3 URL {url}: {e}")))
    }

    /// Sends one request signed with object_store's SigV4 signer and the store's credentials;
    /// the answer's body, or an error naming S3's.
    async fn signed(
        &self,
        method: Method,
        url: reqwest::Url,
        headers: &[(&'static str, String)],
        body: Bytes,
        what: &str,
    ) -> Result<Bytes> {
        let credential = self
            .store
            .credentials()
            .get_credential()
            .await
            .map_err(s3_error)?;
        let mut request: HttpRequest = axum::http::Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .body(HttpRequestBody::from(body.clone()))
            .map_err(|e| Error::Internal(anyhow::anyhow!("S3 request: {e}")))?;
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| Error::Internal(anyhow::anyhow!("S3 header {name}: {e}")))?;
            request.headers_mut().insert(*name, value);
        }
        AwsAuthorizer::new(&credential, "s3", &self.region).authorize(&mut request, None);
        let mut send = self.http.request(method, url).body(body);
        for (name, value) in request.headers() {
            send = send.header(name, value);
        }
        let unavailable =
            |e: String| Error::Unavailable(anyhow::anyhow!("S3 storage: {what}: {e}"));
        let response = send.send().await.map_err(|e| unavailable(e.to_string()))?;
        let status = response.status();
        let text = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        // CompleteMultipartUpload may fail after a 200: the error is then in the body.
        if !status.is_success() || text.windows(7).any(|w| w == b"<Error>") {
            return Err(unavailable(format!(
                "{status}: {}",
                String::from_utf8_lossy(&text[..text.len().min(1_000)])
            )));
        }
        Ok(text)
    }

    /// The multipart upload of `key` whose parts copy `parts`; aborted if any step fails.
    async fn copy_parts(&self, key: &str, parts: &[(String, u64)]) -> Result<()> {
        let created = self
            .signed(
                Method::POST,
                self.object_url(key, "uploads=")?,
                &[],
                Bytes::new(),
                "creating a multipart upload",
            )
            .await?;
        let upload_id = xml::<InitiateMultipartUploadResult>(&created)?.upload_id;
        let upload = format!(
            "uploadId={}",
            utf8_percent_encode(&upload_id, NON_ALPHANUMERIC)
        );
        let copied = async {
            // Copies run side by side (S3 copies each inside the service); the answers come
            // back in part order.
            let copies: Vec<_> = parts
                .iter()
                .enumerate()
                .map(|(i, (part, _))| self.copy_part(key, &upload, i + 1, part))
                .collect();
            let etags: Vec<String> = futures_util::stream::iter(copies)
                .buffered(PUT_CONCURRENCY)
                .try_collect()
                .await?;
            let mut body = String::from("<CompleteMultipartUpload>");
            for (i, etag) in etags.iter().enumerate() {
                body.push_str(&format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
                    i + 1,
                    quick_xml::escape::escape(etag.as_str())
                ));
            }
            body.push_str("</CompleteMultipartUpload>");
            self.signed(
                Method::POST,
                self.object_url(key, &upload)?,
                &[],
                Bytes::from(body),
                "completing a multipart upload",
            )
            .await?;
            Ok(())
        }
        .await;
        if copied.is_err() {
            let aborted = match self.object_url(key, &upload) {
                Ok(url) => self
                    .signed(Method::DELETE, url, &[], Bytes::new(), "aborting")
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = aborted {
                tracing::warn!(key, error = %e, "aborting a failed S3 part copy");
            }
        }
        copied
    }

    /// Copies the object `part` into part `number` of the multipart upload of `key` (`upload`:
    /// its `uploadId=…` query); the part's ETag.
    async fn copy_part(
        &self,
        key: &str,
        upload: &str,
        number: usize,
        part: &str,
    ) -> Result<String> {
        let source = encode_path(&format!("{}/{}", self.bucket, self.path_of(part)?.as_ref()));
        let answer = self
            .signed(
                Method::PUT,
                self.object_url(key, &format!("partNumber={number}&{upload}"))?,
                &[("x-amz-copy-source", source)],
                Bytes::new(),
                "copying a part",
            )
            .await?;
        Ok(xml::<CopyPartResult>(&answer)?.e_tag)
    }

    /// The object under `key`, whole or the bytes `range` (a `Range` GET), streamed as S3 sends
    /// it; `None` if there is none.
    async fn read(&self, key: &str, range: Option<std::ops::Range<u64>>) -> Result<Option<Blob>> {
        let path = self.path_of(key)?;
        let options = object_store::GetOptions {
            range: range.map(object_store::GetRange::Bounded),
            ..object_store::GetOptions::default()
        };
        let got = match self.store.get_opts(&path, options).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(s3_error(e)),
        };
        let len = got.range.end - got.range.start;
        let stream = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed();
        Ok(Some(Blob { len, stream }))
    }
}

fn xml<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let text = std::str::from_utf8(body)
        .map_err(|e| Error::Unavailable(anyhow::anyhow!("S3 storage: an answer not UTF-8: {e}")))?;
    quick_xml::de::from_str(text).map_err(|e| {
        Error::Unavailable(anyhow::anyhow!(
            "S3 storage: an answer not understood ({e}): {}",
            &text[..text.len().min(500)]
        ))
    })
}

/// Whether S3 can join these parts (keys and sizes) by copies: every part but the last at
/// least 5 MiB, none over 5 GiB, at most 10,000.
fn copyable(parts: &[(String, u64)]) -> bool {
    let Some(((_, last), rest)) = parts.split_last() else {
        return false;
    };
    parts.len() <= MAX_PARTS
        && *last <= MAX_COPY_PART
        && rest
            .iter()
            .all(|(_, len)| (MIN_PART..=MAX_COPY_PART).contains(len))
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
        self.read(key, None).await
    }

    async fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Option<Blob>> {
        if range.is_empty() {
            // S3 has no empty range: whether the object is there is all there is to say.
            return match self.store.head(&self.path_of(key)?).await {
                Ok(_) => Ok(Some(Blob {
                    len: 0,
                    stream: futures_util::stream::empty().boxed(),
                })),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(s3_error(e)),
            };
        }
        self.read(key, Some(range)).await
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

    async fn compose(&self, key: &str, parts: &[(String, u64)]) -> Result<bool> {
        if !copyable(parts) {
            return Ok(false);
        }
        self.copy_parts(key, parts).await?;
        Ok(true)
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
