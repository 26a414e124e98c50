//! `GET /ready`: whether every backend a request needs answers now (the database, the file
//! storage, the vector index, the embedder), each within a short deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::db::Metadata;
use crate::domain::{Result, VectorStoreId};
use crate::index::VectorIndex;
use crate::ingest::embed::Embedder;
use crate::storage::FileStorage;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct ReadinessService {
    meta: Arc<dyn Metadata>,
    storage: Arc<dyn FileStorage>,
    index: Arc<dyn VectorIndex>,
    embedder: Arc<dyn Embedder>,
}

/// One backend's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub latency_ms: f64,
    /// Why it failed (a timeout, or the backend's error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReadinessService {
    pub fn new(
        meta: Arc<dyn Metadata>,
        storage: Arc<dyn FileStorage>,
        index: Arc<dyn VectorIndex>,
        embedder: Arc<dyn Embedder>,
    ) -> Self {
        Self {
            meta,
            storage,
            index,
            embedder,
        }
    }

    /// Every check, run at once.
    pub async fn check(&self) -> Vec<Check> {
        let probe_store = VectorStoreId::parse("vs_readinessprobe");
        let (database, storage, index, embedder) = tokio::join!(
            timed("database", self.meta.ping()),
            timed("storage", async {
                self.storage.get("ready/probe").await.map(|_| ())
            }),
            timed("index", async {
                self.index
                    .count(probe_store.as_ref(), None)
                    .await
                    .map(|_| ())
            }),
            timed("embedder", async {
                self.embedder
                    .embed(vec!["ready".to_owned()])
                    .await
                    .map(|_| ())
            }),
        );
        vec![database, storage, index, embedder]
    }
}

async fn timed(name: &'static str, check: impl std::future::Future<Output = Result<()>>) -> Check {
    let start = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await;
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            tracing::warn!(check = name, error = %e, "readiness check failed");
            Some(e.to_string())
        }
        Err(_) => Some(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    };
    Check {
        name,
        ok: error.is_none(),
        latency_ms,
        error,
    }
}
