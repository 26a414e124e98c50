//! Housekeeping: the start-up sweep (what a crash left behind) and the periodic reaper
//! (expired files and uploads, purges a crash or an error interrupted).

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::domain::{FileId, PartId, Result};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReapReport {
    pub expired_files: u64,
    pub requeued_jobs: u64,
    pub expired_uploads: u64,
    pub freed_uploads: u64,
}

/// One pass of the reaper, at the clock's current time.
pub async fn reap_once(st: &AppState) -> Result<ReapReport> {
    let now = st.clock.now();
    let mut report = ReapReport {
        expired_uploads: st.meta.expire_uploads(now).await?,
        requeued_jobs: st.meta.requeue_expired(now).await?,
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
                .delete_file(&file.project_id, &file.id, now)
                .await?
                .is_some()
            {
                report.expired_files += 1;
            }
        }
    }
    if report.expired_files > 0 {
        st.jobs_notify.notify_one();
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

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub staged_removed: usize,
    pub orphan_blobs_removed: usize,
}

/// Removes what a killed process left half-done: staged temp files, and blobs published before
/// their row committed. Runs before the server accepts requests (a live upload has exactly that
/// shape for a moment), then one reaper pass finishes interrupted purges.
pub async fn startup_sweep(st: &AppState) -> Result<SweepReport> {
    let mut report = SweepReport {
        staged_removed: st.staging.clean()?,
        ..Default::default()
    };
    for key in st.storage.list("files/").await? {
        let live = match key.strip_prefix("files/").and_then(FileId::parse) {
            Some(id) => st.meta.file_row_exists(&id).await?,
            None => false,
        };
        if !live {
            st.storage.delete(&key).await?;
            report.orphan_blobs_removed += 1;
        }
    }
    for key in st.storage.list("parts/").await? {
        let live = match key.rsplit('/').next().and_then(PartId::parse) {
            Some(id) => st.meta.part_exists(&id).await?,
            None => false,
        };
        if !live {
            st.storage.delete(&key).await?;
            report.orphan_blobs_removed += 1;
        }
    }
    if report != SweepReport::default() {
        tracing::info!(
            ?report,
            "start-up sweep removed leftovers of an earlier run"
        );
    }
    // One server per data dir: whatever was running belonged to a process that is gone.
    let requeued = st.meta.requeue_expired(i64::MAX).await?;
    if requeued > 0 {
        tracing::info!(requeued, "jobs of an earlier run queued again");
    }
    reap_once(st).await?;
    Ok(report)
}

/// Runs [`reap_once`] every `reaper_interval` until `shutdown`.
pub fn spawn_reaper(st: AppState, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(st.config.reaper_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(e) = reap_once(&st).await {
                        tracing::error!(error = ?e, "reaper pass failed");
                    }
                }
            }
        }
    })
}

/// Lets the vector index do its upkeep (building the HNSW graph once enough points changed) in
/// the background, every `interval`, until `shutdown`.
pub fn spawn_index_maintainer(
    st: AppState,
    interval: std::time::Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {
                    if let Err(e) = st.index.maintain().await {
                        tracing::error!(error = ?e, "index maintenance failed");
                    }
                }
            }
        }
    })
}
