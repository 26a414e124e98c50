//! `GET /metrics`: the recorded counters and histograms, with gauges of what the server holds
//! read from the backends at scrape time.

use std::sync::Arc;

use crate::clock::Clock;
use crate::db::{JobQueue, Metadata};
use crate::domain::{JobKind, Result};
use crate::index::VectorIndex;

/// Stores named in `ragstore_store_indexed_chunks` (the largest), so the label stays bounded.
const TOP_STORES: u32 = 50;

/// Every status a job row takes.
const JOB_STATUSES: [&str; 6] = [
    "queued",
    "running",
    "stopping",
    "done",
    "failed",
    "cancelled",
];

#[derive(Clone)]
pub struct MetricsService {
    meta: Arc<dyn Metadata>,
    queue: Arc<dyn JobQueue>,
    index: Arc<dyn VectorIndex>,
    clock: Arc<dyn Clock>,
}

impl MetricsService {
    pub fn new(
        meta: Arc<dyn Metadata>,
        queue: Arc<dyn JobQueue>,
        index: Arc<dyn VectorIndex>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            meta,
            queue,
            index,
            clock,
        }
    }

    /// The exposition text, or `None` when this process exports no metrics.
    pub async fn render(&self) -> Result<Option<String>> {
        let Some(handle) = crate::metrics::handle() else {
            return Ok(None);
        };
        let stats = self.queue.stats(self.clock.now()).await?;
        for kind in JobKind::ALL {
            for status in JOB_STATUSES {
                let n = stats
                    .by_kind_status
                    .iter()
                    .find(|(k, s, _)| k == kind.as_str() && s == status)
                    .map_or(0, |(_, _, n)| *n);
                metrics::gauge!("ragstore_jobs", "kind" => kind.as_str(), "status" => status)
                    .set(n as f64);
            }
        }
        metrics::gauge!("ragstore_queue_depth").set(stats.queued as f64);
        metrics::gauge!("ragstore_queue_oldest_age_seconds").set(stats.oldest_queued_secs as f64);
        let usage = self.meta.usage(TOP_STORES).await?;
        metrics::gauge!("ragstore_stored_bytes").set(usage.stored_bytes as f64);
        for (store, n) in usage.top_stores {
            metrics::gauge!("ragstore_store_indexed_chunks", "vector_store_id" => store.to_string())
                .set(n as f64);
        }
        let points = self.index.count(None, None).await?;
        metrics::gauge!("ragstore_index_points").set(points as f64);
        handle.run_upkeep();
        Ok(Some(handle.render()))
    }
}
