//! Prometheus metrics (the `metrics` facade with its Prometheus exporter). Counters and
//! histograms are recorded where things happen; gauges of what the server holds (jobs, queue,
//! bytes, index points) are read from the backends when `/metrics` is scraped. Every label has a
//! bounded set of values: routes are templates (`/v1/files/{id}`), never ids; methods outside the
//! standard ones are `other`; only the largest stores are named.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds, from a millisecond to ten minutes.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` if another recorder was installed
/// first (then nothing is exported, and nothing else changes).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| {
                    // A gauge no scrape sets any more (a store that left the top list) goes.
                    b.idle_timeout(
                        metrics_util::MetricKindMask::GAUGE,
                        Some(Duration::from_secs(600)),
                    )
                    .install_recorder()
                });
            match built {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics are not exported");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "ragstore_http_requests_total",
        "HTTP requests by method, route template and status."
    );
    describe_histogram!(
        "ragstore_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method, route template and status."
    );
    describe_gauge!(
        "ragstore_jobs",
        "Jobs in the durable queue by kind and status."
    );
    describe_gauge!(
        "ragstore_queue_depth",
        "Jobs queued (runnable now or after a retry delay)."
    );
    describe_gauge!(
        "ragstore_queue_oldest_age_seconds",
        Unit::Seconds,
        "How long the oldest queued job has waited."
    );
    describe_counter!(
        "ragstore_embedding_tokens_total",
        "Tokens the local embedding model read (special tokens included)."
    );
    describe_counter!(
        "ragstore_embedding_texts_total",
        "Texts (chunks or inputs) embedded."
    );
    describe_histogram!(
        "ragstore_embedding_batch_seconds",
        Unit::Seconds,
        "Time of one batch through the embedding model."
    );
    describe_histogram!(
        "ragstore_extraction_seconds",
        Unit::Seconds,
        "Text extraction time by detected format."
    );
    describe_counter!(
        "ragstore_extractions_total",
        "Extractions by format and outcome."
    );
    describe_gauge!(
        "ragstore_index_points",
        "Points in the vector index (all stores)."
    );
    describe_gauge!(
        "ragstore_store_indexed_chunks",
        "Indexed chunks of the largest vector stores."
    );
    describe_gauge!(
        "ragstore_stored_bytes",
        Unit::Bytes,
        "Bytes of files not deleted."
    );
    describe_gauge!(
        "ragstore_upload_bytes_in_flight",
        Unit::Bytes,
        "Bytes of request bodies and extracted texts being staged to disk."
    );
}

/// `GET`, `POST`, …; anything else (clients may send any token) is `other`.
pub fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub fn http_request(method: &'static str, route: String, status: u16, elapsed: Duration) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("ragstore_http_requests_total", &labels).increment(1);
    metrics::histogram!("ragstore_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
}

/// One batch through the local model: `texts` pieces, `tokens` tokens read.
pub fn embedded(texts: usize, tokens: usize, elapsed: Duration) {
    metrics::counter!("ragstore_embedding_tokens_total").increment(tokens as u64);
    metrics::counter!("ragstore_embedding_texts_total").increment(texts as u64);
    metrics::histogram!("ragstore_embedding_batch_seconds").record(elapsed.as_secs_f64());
}

/// One extraction of a file: its format (`unknown` when it failed before one was known).
pub fn extracted(format: &str, ok: bool, elapsed: Duration) {
    // Formats come from the extractor's own fixed list.
    let format = format.to_owned();
    let outcome = if ok { "ok" } else { "failed" };
    metrics::histogram!("ragstore_extraction_seconds", "format" => format.clone())
        .record(elapsed.as_secs_f64());
    metrics::counter!("ragstore_extractions_total", "format" => format, "outcome" => outcome)
        .increment(1);
}

/// Bytes being staged: counted up as they are written, down when the staging ends (finished,
/// failed or dropped).
#[derive(Debug, Default)]
pub struct InFlight(u64);

impl InFlight {
    pub fn add(&mut self, n: usize) {
        self.0 += n as u64;
        metrics::gauge!("ragstore_upload_bytes_in_flight").increment(n as f64);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0 > 0 {
            metrics::gauge!("ragstore_upload_bytes_in_flight").decrement(self.0 as f64);
        }
    }
}
