//! An [`Embedder`] that calls any OpenAI-compatible `POST {base_url}/embeddings` (OpenAI, vLLM,
//! Ollama, llama.cpp server, TEI, ...). Plain HTTP only: this build of reqwest has no TLS.

use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::chunk::Tokens;
use super::embed::{normalize, Embedder};
use crate::domain::{Error, Result};

/// OpenAI accepts 2048 inputs per request; other servers far fewer, so stay well under.
pub const MAX_BATCH: usize = 96;
/// Requests of one `embed` call in flight at once.
const CONCURRENT_REQUESTS: usize = 4;
/// How much of an error response body goes into the error message.
const BODY_EXCERPT_CHARS: usize = 300;

/// Where and what to call.
#[derive(Clone)]
pub struct RemoteConfig {
    /// Up to and including the API version, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Vector size; `None` asks the endpoint once, at construction.
    pub dims: Option<usize>,
    /// The model's window in tokens (the endpoint cannot be asked).
    pub max_input_tokens: usize,
    /// Inputs per request, at most [`MAX_BATCH`].
    pub batch_size: usize,
    /// Whole-request timeout.
    pub timeout: Duration,
}

impl RemoteConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        RemoteConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            dims: None,
            max_input_tokens: 512,
            batch_size: MAX_BATCH,
            timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("dims", &self.dims)
            .field("max_input_tokens", &self.max_input_tokens)
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct RemoteEmbedder {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    dims: usize,
    max_input_tokens: usize,
    batch_size: usize,
    timeout: Duration,
}

impl std::fmt::Debug for RemoteEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEmbedder")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

impl RemoteEmbedder {
    /// Builds the client; without `config.dims`, embeds one probe text to learn the vector size.
    pub async fn new(config: RemoteConfig) -> Result<Self> {
        let base = config.base_url.trim_end_matches('/');
        if base.starts_with("https://") {
            return Err(Error::Internal(anyhow!(
                "embedding endpoint {base}: https is not supported by this build (plain http only)"
            )));
        }
        if !base.starts_with("http://") {
            return Err(Error::Internal(anyhow!(
                "embedding endpoint {base:?} is not an http:// URL"
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::Internal(anyhow!("cannot build the HTTP client: {e}")))?;
        let mut embedder = RemoteEmbedder {
            client,
            url: format!("{base}/embeddings"),
            model: config.model,
            api_key: config.api_key,
            dims: config.dims.unwrap_or(0),
            max_input_tokens: config.max_input_tokens,
            batch_size: config.batch_size.clamp(1, MAX_BATCH),
            timeout: config.timeout,
        };
        if config.dims.is_none() {
            let probe = embedder.request(&["dimension probe".to_owned()]).await?;
            embedder.dims = probe.first().map_or(0, Vec::len);
            if embedder.dims == 0 {
                return Err(Error::Internal(anyhow!(
                    "embedding endpoint {} returned an empty vector for model {}",
                    embedder.url,
                    embedder.model
                )));
            }
            tracing::info!(url = %embedder.url, model = %embedder.model, dims = embedder.dims, "remote embedder probed");
        }
        Ok(embedder)
    }

    /// One request: the vectors of `texts` in order, unnormalised, of any consistent size.
    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let fail =
            |what: String| Error::Internal(anyhow!("embedding endpoint {}: {what}", self.url));
        // The endpoint may come back: a dropped connection, a timeout, an overloaded server.
        let retry =
            |what: String| Error::Unavailable(anyhow!("embedding endpoint {}: {what}", self.url));
        let mut request = self
            .client
            .post(&self.url)
            .json(&serde_json::json!({ "model": self.model, "input": texts }));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let http_error = |stage: &str, e: reqwest::Error| {
            if e.is_timeout() {
                retry(format!("no answer within {:?}", self.timeout))
            } else {
                retry(format!("{stage} failed: {e}"))
            }
        };
        let response = request.send().await.map_err(|e| http_error("request", e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| http_error("reading the response", e))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(retry(format!("HTTP {status}: {}", excerpt(&body))));
        }
        if !status.is_success() {
            return Err(fail(format!("HTTP {status}: {}", excerpt(&body))));
        }
        let parsed: EmbeddingsResponse = serde_json::from_slice(&body)
            .map_err(|e| fail(format!("unexpected response ({e}): {}", excerpt(&body))))?;
        if parsed.data.len() != texts.len() {
            return Err(fail(format!(
                "{} embeddings for {} inputs",
                parsed.data.len(),
                texts.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for item in parsed.data {
            match out.get_mut(item.index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                Some(Some(_)) => return Err(fail(format!("index {} returned twice", item.index))),
                None => return Err(fail(format!("index {} out of range", item.index))),
            }
        }
        // Every slot is filled: as many distinct in-range indices as slots.
        Ok(out.into_iter().flatten().collect())
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[async_trait]
impl Embedder for RemoteEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }

    /// The remote model's tokenizer is not known here: chunks are sized by an estimate.
    fn tokens(&self) -> Tokens {
        Tokens::Estimate
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let batches: Vec<Vec<String>> = texts
            .chunks(self.batch_size)
            .map(<[String]>::to_vec)
            .collect();
        let batches: Vec<Vec<Vec<f32>>> = futures_util::stream::iter(batches)
            .map(|batch| async move { self.request(&batch).await })
            .buffered(CONCURRENT_REQUESTS)
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(texts.len());
        for mut v in batches.into_iter().flatten() {
            if v.len() != self.dims {
                return Err(Error::Internal(anyhow!(
                    "embedding endpoint {}: a {}-dim vector from model {}, expected {}",
                    self.url,
                    v.len(),
                    self.model,
                    self.dims
                )));
            }
            normalize(&mut v);
            out.push(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::{Json, Router};
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Copy)]
    enum Mode {
        /// Vector `[n, 1, 0, 0]` for input `"text n"`, data in reverse order.
        Ok,
        Status(u16),
        MissingOne,
        DuplicateIndex,
        WrongDims,
        Slow,
    }

    /// (Authorization header, JSON body) of each request.
    type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

    #[derive(Clone)]
    struct Fake {
        mode: Mode,
        seen: Seen,
    }

    async fn embeddings(
        State(fake): State<Fake>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> Response {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        fake.seen.lock().unwrap().push((auth, body.clone()));
        let inputs: Vec<String> = body["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let vector = |text: &str| -> Vec<f32> {
            let n: f32 = text.rsplit(' ').next().unwrap().parse().unwrap_or(7.0);
            vec![n, 1.0, 0.0, 0.0]
        };
        let mut data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t)}))
            .rev()
            .collect();
        match fake.mode {
            Mode::Ok => {}
            Mode::Status(code) => {
                let body = format!(
                    "{{\"error\":{{\"message\":\"slow down {}\"}}}}",
                    "x".repeat(1000)
                );
                return (StatusCode::from_u16(code).unwrap(), body).into_response();
            }
            Mode::MissingOne => {
                data.pop();
            }
            Mode::DuplicateIndex => {
                if data.len() > 1 {
                    data[1]["index"] = data[0]["index"].clone();
                }
            }
            Mode::WrongDims => data[0]["embedding"] = json!([1.0, 2.0]),
            Mode::Slow => tokio::time::sleep(Duration::from_secs(5)).await,
        }
        Json(json!({"object": "list", "model": body["model"], "data": data})).into_response()
    }

    /// A fake endpoint on 127.0.0.1:0; returns its base URL and the requests it saw.
    async fn serve(mode: Mode) -> (String, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(Fake {
                mode,
                seen: seen.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1/"), seen)
    }

    fn config(base: &str) -> RemoteConfig {
        RemoteConfig {
            dims: Some(4),
            ..RemoteConfig::new(base, "fake-embed")
        }
    }

    fn texts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("text {i}")).collect()
    }

    #[tokio::test]
    async fn probes_dims_and_sends_the_openai_shape() {
        let (base, seen) = serve(Mode::Ok).await;
        let e = RemoteEmbedder::new(RemoteConfig {
            api_key: Some("sk-test".into()),
            max_input_tokens: 8191,
            ..RemoteConfig::new(&base, "fake-embed")
        })
        .await
        .unwrap();
        assert_eq!(
            (e.model(), e.dims(), e.max_input_tokens()),
            ("fake-embed", 4, 8191)
        );
        let v = e.embed(vec!["text 3".into()]).await.unwrap();
        let want = [3.0 / 10f32.sqrt(), 1.0 / 10f32.sqrt(), 0.0, 0.0];
        assert_eq!(v.len(), 1);
        assert!(
            v[0].iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{v:?}"
        );

        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "one probe, one embed");
        for (auth, body) in seen.iter() {
            assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
            assert_eq!(body["model"], "fake-embed");
            assert!(body["input"].is_array());
        }
        assert_eq!(seen[1].1["input"], json!(["text 3"]));
        assert!(!format!(
            "{:?}",
            RemoteConfig {
                api_key: Some("sk-test".into()),
                ..config(&base)
            }
        )
        .contains("sk-test"));
    }

    #[tokio::test]
    async fn batches_and_orders_by_index() {
        let (base, seen) = serve(Mode::Ok).await;
        let e = RemoteEmbedder::new(config(&base)).await.unwrap();
        let v = e.embed(texts(250)).await.unwrap();
        assert_eq!(v.len(), 250);
        for (i, x) in v.iter().enumerate() {
            let n = i as f32;
            let norm = (n * n + 1.0).sqrt();
            assert!(
                (x[0] - n / norm).abs() < 1e-6 && (x[1] - 1.0 / norm).abs() < 1e-6,
                "{i}: {x:?}"
            );
        }
        assert!(e.embed(Vec::new()).await.unwrap().is_empty());
        let seen = seen.lock().unwrap();
        let mut sizes: Vec<usize> = seen
            .iter()
            .map(|(auth, b)| {
                assert!(auth.is_none());
                b["input"].as_array().unwrap().len()
            })
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![58, 96, 96]);
    }

    #[tokio::test]
    async fn http_errors_name_status_and_body() {
        let (base, _) = serve(Mode::Status(429)).await;
        let err = RemoteEmbedder::new(config(&base))
            .await
            .unwrap()
            .embed(texts(3))
            .await
            .unwrap_err();
        // An overloaded endpoint may recover: the failure is transient.
        assert!(err.is_transient(), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("429 Too Many Requests"), "{msg}");
        assert!(msg.contains("slow down"), "{msg}");
        assert!(msg.contains("/v1/embeddings"), "{msg}");
        assert!(msg.len() < 600, "the body is cut: {}", msg.len());

        // A refused request would be refused again.
        let (base400, _) = serve(Mode::Status(400)).await;
        let err = RemoteEmbedder::new(config(&base400))
            .await
            .unwrap()
            .embed(texts(1))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Internal(_)), "{err:?}");

        // Without dims the probe runs in the constructor and fails there.
        let err = RemoteEmbedder::new(RemoteConfig::new(&base, "m"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("429"), "{err}");
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        for (mode, want) in [
            (Mode::MissingOne, "2 embeddings for 3 inputs"),
            (Mode::DuplicateIndex, "returned twice"),
            (Mode::WrongDims, "a 2-dim vector"),
        ] {
            let (base, _) = serve(mode).await;
            let e = RemoteEmbedder::new(config(&base)).await.unwrap();
            let err = e.embed(texts(3)).await.unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[tokio::test]
    async fn unreachable_slow_and_https_endpoints_are_errors() {
        let (base, _) = serve(Mode::Slow).await;
        let e = RemoteEmbedder::new(RemoteConfig {
            timeout: Duration::from_millis(200),
            ..config(&base)
        })
        .await
        .unwrap();
        let err = e.embed(texts(1)).await.unwrap_err().to_string();
        assert!(err.contains("no answer within 200ms"), "{err}");

        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = RemoteEmbedder::new(config(&format!("http://127.0.0.1:{port}/v1")))
            .await
            .unwrap();
        let err = e.embed(texts(1)).await.unwrap_err().to_string();
        assert!(err.contains("request failed"), "{err}");

        let err = RemoteEmbedder::new(config("https://api.openai.com/v1"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("https is not supported"), "{err}");
    }
}
