//! The durable job queue's contract: claim under a lease, heartbeat, fenced finish, and requeue
//! once a lease expires. Jobs are enqueued and cancelled inside the [`super::Metadata`]
//! transactions that cause them (an attach writes its row and its job together).

use async_trait::async_trait;

use crate::domain::{Job, JobEnd, Result, VsFileOutcome};

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Claims the oldest runnable purge, or else the oldest runnable job (queued,
    /// `run_after <= now`), for `worker` until `now + lease_secs`. Two claimers never get the same job. A job that
    /// [`crate::domain::JobKind::waits_for`] a leased job (running, or cancelled and not yet
    /// stopped) is not runnable until that job has stopped or its lease has ended: a purge
    /// never runs while a job that writes what it removes may still write.
    async fn claim(&self, worker: &str, now: i64, lease_secs: i64) -> Result<Option<Job>>;

    /// Extends the lease to `until`; `false` if the job is no longer this claim's (cancelled,
    /// finished, or requeued and claimed again).
    async fn heartbeat(&self, job: &Job, until: i64) -> Result<bool>;

    /// Ends the job as `end`, fenced on the claim: `false` (nothing written) if the job is no
    /// longer this claim's. In the same transaction, `outcome` (if any) is applied to its
    /// vector-store file if that file is still in progress.
    async fn finish(
        &self,
        job: &Job,
        end: &JobEnd,
        outcome: Option<&VsFileOutcome>,
        now: i64,
    ) -> Result<bool>;

    /// Acknowledges that a cancelled job has stopped (its claim's last act, after any
    /// compensation): the purges that waited for it may run. `false` if the job is not this
    /// claim's or was not cancelled.
    async fn release(&self, job: &Job, now: i64) -> Result<bool>;

    /// Puts running jobs whose lease ended before `before` back in the queue; returns how many.
    /// The claim of a requeued job is void: its heartbeat and finish are refused. Cancelled
    /// jobs whose lease ended are taken as stopped.
    async fn requeue_expired(&self, before: i64) -> Result<u64>;

    /// What the queue holds, for metrics.
    async fn stats(&self, now: i64) -> Result<QueueStats>;
}

/// The lease holder of one claim: the worker, and this claim. A claim that was requeued and
/// claimed again (even by the same worker) can no longer heartbeat or finish.
pub(crate) fn lease_holder(worker: &str) -> String {
    format!(
        "{worker}/{}",
        crate::domain::PartId::generate()
            .as_str()
            .trim_start_matches("part_")
    )
}

/// Jobs by kind and status, and how long the oldest queued one has waited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    /// `(kind, status, count)`.
    pub by_kind_status: Vec<(String, String, i64)>,
    /// Jobs queued (runnable now or later).
    pub queued: i64,
    /// Seconds since the oldest queued job was written; 0 when none is queued.
    pub oldest_queued_secs: i64,
}

/// Wakes idle workers when a job is written. The services that write jobs wake their own
/// process's; on PostgreSQL every process also listens for jobs written by any other
/// (`LISTEN ragstore_jobs`, `db::postgres`) and wakes its workers for each.
#[derive(Debug, Clone, Default)]
pub struct Wakeup(std::sync::Arc<tokio::sync::Notify>);

impl Wakeup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes one idle worker (or the next to wait).
    pub fn wake(&self) {
        self.0.notify_one();
    }

    /// Resolves at the next [`Wakeup::wake`].
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.notified()
    }
}
