//! Commands that talk to a running server over its HTTP API, as any client would.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

pub mod ingest;
pub use ingest::{ingest, IngestArgs};

/// `ragstore search STORE "query" [--filter key=value ...] [-k N]`
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// The vector store: its id (`vs_…`) or its name.
    pub store: String,
    /// What to search for.
    pub query: String,
    /// Only files whose attribute `key` equals `value` (true/false and numbers are typed;
    /// repeat for several, all must hold).
    #[arg(long = "filter", value_name = "KEY=VALUE")]
    pub filters: Vec<String>,
    /// How many hits (1 to 50).
    #[arg(short = 'k', default_value_t = 5)]
    pub k: u32,
    /// The server's address.
    #[arg(long, env = "RAGSTORE_SERVER", default_value = "http://127.0.0.1:8321")]
    pub server: String,
    /// An API key, sent as `Authorization: Bearer`.
    #[arg(long, env = "RAGSTORE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// `key=value` as an attribute filter, the value typed as the attribute would be.
pub fn filter(spec: &str) -> anyhow::Result<Value> {
    let (key, raw) = spec
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .with_context(|| format!("--filter {spec:?}: expected KEY=VALUE"))?;
    Ok(json!({"type": "eq", "key": key, "value": typed_value(raw)}))
}

/// A value from the command line, typed as an attribute would be: `true`/`false` are booleans,
/// numbers are numbers, anything else is a string.
pub fn typed_value(raw: &str) -> Value {
    match raw {
        "true" => json!(true),
        "false" => json!(false),
        _ => raw
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| raw.parse::<f64>().map(Value::from))
            .unwrap_or_else(|_| Value::from(raw)),
    }
}

/// One readable hit: score, file name and where in it, then a snippet.
pub fn format_hit(hit: &Value) -> String {
    let score = hit["score"].as_f64().unwrap_or(0.0);
    let name = hit["filename"].as_str().unwrap_or("?");
    let extra = &hit["extra"];
    let mut place = Vec::new();
    for key in ["page", "slide", "sheet", "chapter", "section"] {
        if let Some(v) = extra.get(key).filter(|v| !v.is_null()) {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            place.push(format!("{key} {v}"));
        }
    }
    let text: String = hit["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut snippet = words.join(" ");
    if let Some((cut, _)) = snippet.char_indices().nth(240) {
        snippet.truncate(cut);
        snippet.push('…');
    }
    let place = if place.is_empty() {
        String::new()
    } else {
        format!("  ({})", place.join(", "))
    };
    format!("{score:.3}  {name}{place}\n       {snippet}")
}

struct Api {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

/// How often a request the server refuses for now (429, 503 with `retry-after`) is sent again.
const MAX_ATTEMPTS: u32 = 30;
/// The longest wait between two attempts, whatever the server asks.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

impl Api {
    fn new(server: &str, key: Option<String>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.trim_end_matches('/').to_owned(),
            key,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let mut next = Some(req);
        self.send_with(|| {
            let req = next
                .take()
                .context("the request cannot be sent again (its body is a stream)")?;
            next = req.try_clone();
            Ok(req)
        })
        .await
    }

    /// Sends the request `make` builds, and builds and sends it again (up to [`MAX_ATTEMPTS`]
    /// times) after the wait the server asks for when it answers 429 or 503 with `retry-after`.
    /// The JSON body of a success; the server's message otherwise.
    async fn send_with(
        &self,
        mut make: impl FnMut() -> anyhow::Result<reqwest::RequestBuilder>,
    ) -> anyhow::Result<Value> {
        let mut attempt = 1;
        loop {
            let req = match &self.key {
                Some(k) => make()?.bearer_auth(k),
                None => make()?,
            };
            let res = req
                .send()
                .await
                .with_context(|| format!("cannot reach the server at {}", self.base))?;
            let status = res.status();
            let busy = matches!(status.as_u16(), 429 | 503) && attempt < MAX_ATTEMPTS;
            if let Some(wait) = retry_after(res.headers()).filter(|_| busy) {
                drop(res);
                tokio::time::sleep(wait.min(MAX_RETRY_WAIT)).await;
                attempt += 1;
                continue;
            }
            let body: Value = res.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                let message = body["error"]["message"].as_str().unwrap_or("no message");
                bail!("the server answered {status}: {message}");
            }
            return Ok(body);
        }
    }

    /// Every item of a cursor-paged listing (`path` below the server, e.g. `/v1/vector_stores`).
    async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{}{path}?limit=100", self.base);
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let mut page = self.send(self.http.get(&url)).await?;
            if let Value::Array(data) = page["data"].take() {
                items.extend(data);
            }
            after = page["last_id"].as_str().map(str::to_owned);
            if page["has_more"] != true || after.is_none() {
                return Ok(items);
            }
        }
    }

    /// The id of the store named or identified by `store`.
    async fn store_id(&self, store: &str) -> anyhow::Result<String> {
        self.find_store(store)
            .await?
            .with_context(|| format!("no vector store is named {store:?}"))
    }

    /// The id of the store named or identified by `store`, `None` if no store has that name.
    async fn find_store(&self, store: &str) -> anyhow::Result<Option<String>> {
        if store.starts_with("vs_") {
            return Ok(Some(store.to_owned()));
        }
        let found: Vec<String> = self
            .list_all("/v1/vector_stores")
            .await?
            .iter()
            .filter(|s| s["name"].as_str() == Some(store))
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        match found.as_slice() {
            [one] => Ok(Some(one.clone())),
            [] => Ok(None),
            many => bail!(
                "{} vector stores are named {store:?}; give one of their ids: {}",
                many.len(),
                many.join(", ")
            ),
        }
    }
}

/// The wait a `retry-after-ms` or `retry-after` (seconds) header asks for.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let wait = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))?;
    Duration::try_from_secs_f64(wait).ok()
}

/// Runs `ragstore search`, writing the hits to `out`.
pub async fn search(args: SearchArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if !(1..=50).contains(&args.k) {
        bail!("-k must be between 1 and 50");
    }
    let filters = args
        .filters
        .iter()
        .map(|f| filter(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let api = Api::new(&args.server, args.api_key);
    let id = api.store_id(&args.store).await?;
    let mut body = json!({"query": args.query, "max_num_results": args.k});
    match filters.len() {
        0 => {}
        1 => body["filters"] = filters[0].clone(),
        _ => body["filters"] = json!({"type": "and", "filters": filters}),
    }
    let url = format!("{}/v1/vector_stores/{id}/search", api.base);
    let res = api.send(api.http.post(&url).json(&body)).await?;
    let hits = res["data"].as_array().cloned().unwrap_or_default();
    if hits.is_empty() {
        writeln!(out, "no hits")?;
    }
    for hit in &hits {
        writeln!(out, "{}", format_hit(hit))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_typed_like_attributes() {
        assert_eq!(filter("team=infra").unwrap()["value"], json!("infra"));
        assert_eq!(filter("year=2024").unwrap()["value"], json!(2024));
        assert_eq!(filter("w=1.5").unwrap()["value"], json!(1.5));
        assert_eq!(filter("ok=true").unwrap()["value"], json!(true));
        assert_eq!(filter("k=a=b").unwrap()["value"], json!("a=b"));
        assert!(filter("novalue").is_err());
        assert!(filter("=x").is_err());
    }

    #[test]
    fn a_hit_reads_as_score_name_place_and_snippet() {
        let hit = json!({"score": 0.8123, "filename": "guide.pdf", "extra": {"page": 3},
                         "content": [{"type": "text", "text": "Rotate   the\ncertificates."}]});
        assert_eq!(
            format_hit(&hit),
            "0.812  guide.pdf  (page 3)\n       Rotate the certificates."
        );
    }
}
