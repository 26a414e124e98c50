//! Housekeeping: the start-up sweep (what a crash left behind) and the periodic reaper
//! (expired files and uploads, purges a crash or an error interrupted).

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::db::{JobQueue, Metadata, Wakeup};
use crate::domain::{Cascade, FileId, PartId, Result};
use crate::storage::{FileStorage, Staging};

#[derive(Clone)]
pub struct Housekeeper {
    meta: Arc<dyn Metadata>,
    queue: Arc<dyn JobQueue>,
    storage: Arc<dyn FileStorage>,
    staging: Staging,
    clock: Arc<dyn Clock>,
    wakeup: Wakeup,
    /// No other process can use these backends (local ones, under the data-dir lock).
    exclusive: bool,
    interval: Duration,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    pub expired_files: u64,
    pub requeued_jobs: u64,
    pub expired_uploads: u64,
    pub freed_uploads: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub staged_removed: usize,
    pub orphan_blobs_removed: usize,
}

/// How old a blob without a row must be before another process's sweep may remove it. A blob is
/// published (renamed into place) a moment before its row commits, so a younger one may be an
/// upload that is just finishing in another replica.
pub const ORPHAN_GRACE_SECS: i64 = 15 * 60;

/// Shared backends also get an orphan sweep this often (the start-up sweep of one replica
/// cannot see what another leaves behind).
const ORPHAN_SWEEP_SECS: i64 = 3600;

impl Housekeeper {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        meta: Arc<dyn Metadata>,
        queue: Arc<dyn JobQueue>,
        storage: Arc<dyn FileStorage>,
        staging: Staging,
        clock: Arc<dyn Clock>,
        wakeup: Wakeup,
        exclusive: bool,
        interval: Duration,
    ) -> Self {
        Self {
            meta,
            queue,
            storage,
            staging,
            clock,
            wakeup,
            exclusive,
            interval,
        }
    }

    /// One pass of the reaper, at the clock's current time.
    pub async fn reap_once(&self) -> Result<ReapReport> {
        let st = self;
        let now = st.clock.now();
        let mut report = ReapReport {
            expired_uploads: st.meta.expire_uploads(now).await?,
            requeued_jobs: st.queue.requeue_expired(now).await?,
            ..Default::default()
        };
        // Expired files are deleted like any other: hidden at once, purged by a job.
        loop {
            let batch = st.meta.expired_files(now, 256).await?;
            if batch.is_empty() {
                break;
            }
            for file in &batch {
                if st
                    .meta
                    .delete_file(
                        &file.project_id,
                        &file.id,
                        &Cascade::file_deleted(file),
                        now,
                    )
                    .await?
                    .is_some()
                {
                    report.expired_files += 1;
                }
            }
        }
        if report.expired_files > 0 {
            st.wakeup.wake();
        }
        loop {
            let uploads = st.meta.finished_uploads_with_parts(256).await?;
            if uploads.is_empty() {
                break;
            }
            for upload in &uploads {
                st.storage
                    .delete_prefix(&crate::domain::PartRecord::storage_prefix(upload))
                    .await?;
                st.meta.delete_parts(upload).await?;
                report.freed_uploads += 1;
            }
        }
        if report != ReapReport::default() {
            tracing::info!(?report, "reaper pass");
        }
        Ok(report)
    }

    /// Removes file and part blobs that no row refers to and that were written before `cutoff`
    /// (`None`: whatever their age, when no other process can be writing).
    pub async fn sweep_orphans(&self, cutoff: Option<i64>) -> Result<usize> {
        let st = self;
        let mut removed = 0;
        let old_enough = |modified: i64| cutoff.is_none_or(|c| modified < c);
        for blob in st.storage.list("files/").await? {
            if !old_enough(blob.modified) {
                continue;
            }
            let live = match blob.key.strip_prefix("files/").and_then(FileId::parse) {
                Some(id) => st.meta.file_row_exists(&id).await?,
                None => false,
            };
            if !live {
                st.storage.delete(&blob.key).await?;
                removed += 1;
            }
        }
        for blob in st.storage.list("parts/").await? {
            if !old_enough(blob.modified) {
                continue;
            }
            let live = match blob.key.rsplit('/').next().and_then(PartId::parse) {
                Some(id) => st.meta.part_exists(&id).await?,
                None => false,
            };
            if !live {
                st.storage.delete(&blob.key).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes what a killed process left half-done before the server accepts requests: staged
    /// temp files, blobs published before their row committed, and leases of jobs it was running.
    /// With `exclusive` (the local backends, under the data-dir lock) no other process can be live,
    /// so every orphan and every running job is its own; otherwise only orphans older than
    /// [`ORPHAN_GRACE_SECS`] and jobs whose lease expired are touched. Then one reaper pass finishes
    /// interrupted purges.
    pub async fn startup_sweep(&self) -> Result<SweepReport> {
        let (st, exclusive) = (self, self.exclusive);
        let now = st.clock.now();
        let report = SweepReport {
            staged_removed: st.staging.clean()?,
            orphan_blobs_removed: st
                .sweep_orphans((!exclusive).then(|| now - ORPHAN_GRACE_SECS))
                .await?,
        };
        if report != SweepReport::default() {
            tracing::info!(
                ?report,
                "start-up sweep removed leftovers of an earlier run"
            );
        }
        let requeued = st
            .queue
            .requeue_expired(if exclusive { i64::MAX } else { now })
            .await?;
        if requeued > 0 {
            tracing::info!(requeued, "jobs of an earlier run queued again");
        }
        st.reap_once().await?;
        Ok(report)
    }

    /// Runs [`Housekeeper::reap_once`] every interval until `shutdown`.
    pub fn spawn_reaper(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let st = self;
            let mut tick = tokio::time::interval(st.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_orphan_sweep = st.clock.now();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = st.reap_once().await {
                            tracing::error!(error = ?e, "reaper pass failed");
                        }
                        let now = st.clock.now();
                        if !st.exclusive && now - last_orphan_sweep >= ORPHAN_SWEEP_SECS {
                            last_orphan_sweep = now;
                            match st.sweep_orphans(Some(now - ORPHAN_GRACE_SECS)).await {
                                Ok(0) => {}
                                Ok(n) => tracing::info!(removed = n, "orphan blobs removed"),
                                Err(e) => tracing::error!(error = ?e, "orphan sweep failed"),
                            }
                        }
                    }
                }
            }
        })
    }
}
