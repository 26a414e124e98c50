#![allow(clippy::unwrap_used, clippy::expect_used)]

//! One integration-test binary: each test builds the real `App` on a temp dir and drives it
//! over HTTP, or runs the real binary where a process must die.

mod crash;
mod errors;
mod files;
mod http;
mod hybrid;
mod index_contract;
mod isolation;
mod keys;
mod metadata_contract;
mod metrics;
mod openapi;
mod pg;
mod postgres;
mod qdrant_server;
mod replicas;
mod roles;
mod storage_contract;
mod uploads;
mod vector_stores;

use ragstore::clock::ManualClock;
use ragstore::{App, Backends, Config};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub state: Backends,
    pub dir: TempDir,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::spawn_in(dir, tweak).await
    }

    /// Builds the app on `dir` (which may hold an earlier run's data) and serves it.
    pub async fn spawn_in(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_custom(dir, tweak, None).await
    }

    pub async fn spawn_custom(
        dir: TempDir,
        tweak: impl FnOnce(&mut Config),
        embedder: Option<Arc<dyn ragstore::ingest::embed::Embedder>>,
    ) -> Self {
        let mut config = Self::config_in(&dir).await;
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new());
        let app = App::build_custom(config, clock.clone(), embedder)
            .await
            .unwrap();
        let state = app.backends().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.serve(listener, shutdown.clone()));
        TestApp {
            base,
            client: reqwest::Client::new(),
            clock,
            state,
            dir,
            shutdown,
            server,
        }
    }

    /// The configuration `spawn_in(dir, …)` starts from: the test models, the remote backends
    /// of a remote pass, no ingestion workers.
    pub async fn config_in(dir: &TempDir) -> Config {
        let mut config = Config::for_data_dir(dir.path().join("data"));
        config.models_dir = models_dir();
        if remote_backends() {
            remote::configure(dir.path(), &mut config).await;
        }
        // Tests drive the queue themselves with `drain()`, so every step is deterministic.
        config.workers_enabled = false;
        config
    }

    /// Shuts the server down gracefully and hands back its directory.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
        self.dir
    }

    /// Runs queued jobs until none is runnable; returns how many ran.
    pub async fn drain(&self) -> usize {
        let worker = self.state.worker("test");
        let mut n = 0;
        while worker.try_run_one().await.unwrap() {
            n += 1;
        }
        n
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Every blob the app's storage holds (file bytes, upload parts, extracted text), by key,
    /// whichever storage it runs on.
    pub async fn blob_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for prefix in ["files/", "parts/", "texts/"] {
            keys.extend(
                self.state
                    .storage
                    .list(prefix)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|l| l.key),
            );
        }
        keys.sort();
        keys
    }

    /// After a restart that stands for a crash: on the embedded backends the start-up sweep has
    /// already taken back the dead process's leases (it holds the data-dir lock); on a shared
    /// database they are taken back only once they expire, which this stands in for.
    pub async fn leases_of_the_dead_expire(&self) {
        if remote_backends() {
            self.state.queue.requeue_expired(i64::MAX).await.unwrap();
        }
    }

    pub async fn blob_exists(&self, key: &str) -> bool {
        self.state.storage.get(key).await.unwrap().is_some()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub async fn upload(&self, filename: &str, bytes: Vec<u8>, purpose: &str) -> Value {
        let res = self.upload_raw(filename, bytes, purpose).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn upload_raw(
        &self,
        filename: &str,
        bytes: Vec<u8>,
        purpose: &str,
    ) -> reqwest::Response {
        self.upload_raw_as(&self.client, filename, bytes, purpose)
            .await
    }

    /// `POST /v1/files` with `client` (one carrying an API key, say).
    pub async fn upload_raw_as(
        &self,
        client: &reqwest::Client,
        filename: &str,
        bytes: Vec<u8>,
        purpose: &str,
    ) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .text("purpose", purpose.to_owned())
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()),
            );
        client
            .post(self.url("/v1/files"))
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }
}

impl TestApp {
    /// Keys and quotas, administered on this app's database (as `ragstore keys` does).
    pub fn auth(&self) -> ragstore::service::auth::AuthService {
        ragstore::service::auth::AuthService::new(
            self.state.meta.clone(),
            self.clock.clone(),
            true,
            ragstore::domain::Quotas::DEFAULT,
        )
    }
}

/// A client that sends `Authorization: Bearer key` with every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The Qdrant server the tests of the Qdrant backend use (`RAGSTORE_TEST_QDRANT_URL`, its gRPC
/// URL). Without one, `test` is skipped with a line saying why; but when `CI` is set it fails:
/// CI must run them.
pub fn qdrant_url(test: &str) -> Option<String> {
    match std::env::var("RAGSTORE_TEST_QDRANT_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => panic!(
            "{test}: CI is set but RAGSTORE_TEST_QDRANT_URL is not: the Qdrant-server tests \
             must run in CI (scripts/test.sh starts a server with scripts/qdrant-test-server.sh)"
        ),
        _ => {
            eprintln!(
                "SKIPPED {test}: RAGSTORE_TEST_QDRANT_URL is not set, so this test of the \
                 Qdrant-server backend did not run (scripts/qdrant-test-server.sh starts a \
                 server and prints the URL; scripts/test.sh does this itself)"
            );
            None
        }
    }
}

/// `RAGSTORE_TEST_BACKENDS=remote`: every [`TestApp`] runs on the engines a scaled-out
/// deployment uses (PostgreSQL, S3, a Qdrant server) instead of the embedded ones, each app on
/// its own database, bucket prefix and collections. `scripts/test.sh` runs the integration
/// suite once each way.
pub fn remote_backends() -> bool {
    std::env::var("RAGSTORE_TEST_BACKENDS").is_ok_and(|v| v == "remote")
}

mod remote {
    use ragstore::Config;
    use serde_json::{json, Value};
    use std::path::Path;

    fn var(name: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("RAGSTORE_TEST_BACKENDS=remote needs {name} (scripts/test.sh sets it)")
        })
    }

    /// The app's engines, chosen once per test dir (a restart in the same dir finds its data).
    pub async fn configure(dir: &Path, config: &mut Config) {
        let file = dir.join("remote-backends.json");
        let chosen: Value = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(_) => {
                let tag = ragstore::domain::FileId::generate()
                    .as_str()
                    .trim_start_matches("file-")
                    .to_ascii_lowercase();
                let database = crate::pg::fresh_database("remote backends")
                    .await
                    .expect("RAGSTORE_TEST_DATABASE_URL");
                let v = json!({
                    "database_url": database,
                    "storage_url": format!(
                        "{}/t-{tag}",
                        var("RAGSTORE_TEST_S3_URL").trim_end_matches('/')
                    ),
                    "qdrant_url": var("RAGSTORE_TEST_QDRANT_URL"),
                    "collection_prefix": format!("t{tag}"),
                });
                std::fs::write(&file, v.to_string()).unwrap();
                v
            }
        };
        let s = |k: &str| chosen[k].as_str().unwrap().to_owned();
        config.database_url = Some(s("database_url"));
        config.storage_url = Some(s("storage_url"));
        config.qdrant.url = Some(s("qdrant_url"));
        config.qdrant.collection_prefix = s("collection_prefix");
    }
}

pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Asserts the OpenAI error shape and returns `error`.
pub fn assert_error(body: &Value, kind: &str) -> Value {
    let e = body
        .get("error")
        .unwrap_or_else(|| panic!("no error in {body}"));
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(e["type"], kind, "{body}");
    for k in ["param", "code"] {
        assert!(e.get(k).is_some(), "missing {k} in {body}");
    }
    // RFC 7807's fields beside it, as llama-stack's spec describes error bodies.
    assert!(body["status"].as_u64().is_some_and(|s| s >= 400), "{body}");
    assert!(
        body["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(body["detail"], e["message"], "{body}");
    e.clone()
}

/// Files in a directory (recursively), for checking what is on disk.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Polls `cond` every 20 ms for up to `secs`.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// A multipart/form-data body by hand, for raw-socket tests.
pub const BOUNDARY: &str = "ragstoreTestBoundary7MA4YWxk";

pub fn multipart_head(purpose: &str, filename: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes()
}

pub fn multipart_tail() -> Vec<u8> {
    format!("\r\n--{BOUNDARY}--\r\n").into_bytes()
}

/// HTTP/1.1 request head for a multipart POST of `content_length` bytes.
pub fn post_head(path: &str, content_length: usize) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}
