//! The promises of the [`Metadata`] and [`JobQueue`] seams, checked against every implementation.
//! Each check is a plain function of a [`Backend`]; `contract_tests!` turns them into one test per
//! check per backend: SQLite, and PostgreSQL (a fresh database per test, see `pg.rs`).
//!
//! What is checked is what the services rely on: visibility and pagination, the cascades applied
//! atomically with deletes, the fenced job queue, and the concurrency promises (two claimers never
//! share a job; a stale claim cannot finish; racing parts never overfill an upload; an attach
//! racing a delete never leaves a link; racing writers never overrun a quota).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures_util::future::join_all;
use ragstore::db::{Attached, ChunkRow, FileListQuery, FileText, JobQueue, ListWindow, Metadata};
use ragstore::domain::cascade::{ingest_outcome, BATCH_CANCEL_KINDS};
use ragstore::domain::{
    Attributes, Cascade, Chunking, FileBatchId, FileBatchRecord, FileId, FileRecord, FileStatus,
    IndexCollection, IngestErrorCode, Job, JobEnd, JobKind, NewJob, Order, PartId, PartRecord,
    ProjectId, Purpose, Quotas, UploadId, UploadRecord, UploadStatus, VectorStoreId,
    VectorStoreRecord, VsFileRecord, VsFileStatus,
};
use tempfile::TempDir;

/// One implementation under test: both seams, usually the same object.
pub struct Backend {
    pub meta: Arc<dyn Metadata>,
    pub queue: Arc<dyn JobQueue>,
    _dir: Option<TempDir>,
}

pub async fn sqlite(_test: &str) -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        ragstore::db::sqlite::SqliteMetadata::open(&dir.path().join("contract.db"))
            .await
            .unwrap(),
    );
    Some(Backend {
        meta: db.clone(),
        queue: db,
        _dir: Some(dir),
    })
}

/// `None` (the test skips, saying why) without a PostgreSQL to test against.
pub async fn postgres(test: &str) -> Option<Backend> {
    let url = crate::pg::fresh_database(test).await?;
    let db = Arc::new(
        ragstore::db::postgres::PgMetadata::connect(&url, Some(ragstore::db::Wakeup::new()))
            .await
            .unwrap(),
    );
    Some(Backend {
        meta: db.clone(),
        queue: db,
        _dir: None,
    })
}

const T0: i64 = 1_700_000_000;
const LEASE: i64 = 120;
/// No quota gets in the way of tests about something else.
const NO_QUOTA: i64 = i64::MAX;

fn project() -> ProjectId {
    ProjectId::default_project()
}

fn file_at(created_at: i64) -> FileRecord {
    let id = FileId::generate();
    FileRecord {
        storage_key: FileRecord::storage_key_for(&id),
        id,
        project_id: project(),
        filename: "a.txt".into(),
        purpose: Purpose::Assistants,
        bytes: 10,
        created_at,
        expires_at: None,
        status: FileStatus::Uploaded,
        status_details: None,
    }
}

fn extract_job(f: &FileRecord) -> NewJob {
    NewJob {
        kind: JobKind::Extract,
        project_id: f.project_id.clone(),
        file_id: Some(f.id.clone()),
        vector_store_id: None,
    }
}

async fn new_file(b: &Backend, created_at: i64) -> FileRecord {
    let f = file_at(created_at);
    b.meta.insert_file(&f, None, NO_QUOTA).await.unwrap();
    f
}

fn store_at(created_at: i64) -> VectorStoreRecord {
    VectorStoreRecord {
        id: VectorStoreId::generate(),
        project_id: project(),
        name: Some("s".into()),
        description: None,
        metadata: Default::default(),
        created_at,
        last_active_at: created_at,
        expires_after_days: None,
    }
}

async fn new_store(b: &Backend, created_at: i64) -> VectorStoreRecord {
    let s = store_at(created_at);
    assert!(b
        .meta
        .create_vector_store(&s, &[], created_at, &Quotas::DEFAULT)
        .await
        .unwrap()
        .is_empty());
    s
}

fn chunking() -> Chunking {
    Chunking {
        max_tokens: 200,
        overlap_tokens: 20,
    }
}

fn link(s: &VectorStoreRecord, f: &FileId, batch: Option<&FileBatchId>) -> (VsFileRecord, NewJob) {
    (
        VsFileRecord {
            vector_store_id: s.id.clone(),
            file_id: f.clone(),
            project_id: s.project_id.clone(),
            batch_id: batch.cloned(),
            created_at: s.created_at,
            status: VsFileStatus::InProgress,
            usage_bytes: 0,
            chunking: chunking(),
            attributes: Attributes::new(),
            last_error: None,
            chunks_indexed: 0,
            chunks_total: None,
        },
        NewJob {
            kind: JobKind::Ingest,
            project_id: s.project_id.clone(),
            file_id: Some(f.clone()),
            vector_store_id: Some(s.id.clone()),
        },
    )
}

async fn attach(b: &Backend, s: &VectorStoreRecord, f: &FileId, now: i64) -> Attached {
    let (row, job) = link(s, f, None);
    b.meta.attach_file(&row, &job, now, NO_QUOTA).await.unwrap()
}

/// Claims every runnable job at `now` (they stay claimed).
async fn claim_all(b: &Backend, now: i64) -> Vec<Job> {
    let mut out = Vec::new();
    while let Some(j) = b.queue.claim("w", now, LEASE).await.unwrap() {
        out.push(j);
    }
    out
}

fn kinds(jobs: &[Job]) -> Vec<(JobKind, Option<String>, Option<String>)> {
    let mut k: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.kind,
                j.file_id.as_ref().map(ToString::to_string),
                j.vector_store_id.as_ref().map(ToString::to_string),
            )
        })
        .collect();
    k.sort_by_key(|(kind, f, s)| (kind.as_str(), f.clone(), s.clone()));
    k
}

// --- files --------------------------------------------------------------------------------------

pub async fn files_are_visible_until_deleted_or_expired(b: Backend) {
    let mut f = file_at(T0);
    f.expires_at = Some(T0 + 100);
    b.meta
        .insert_file(&f, Some(&extract_job(&f)), NO_QUOTA)
        .await
        .unwrap();
    let got = b.meta.get_file(&project(), &f.id, T0).await.unwrap();
    assert_eq!(got.as_ref(), Some(&f));
    // Another project sees nothing, not even the position.
    let other = ProjectId::parse("proj_other").unwrap();
    assert_eq!(b.meta.get_file(&other, &f.id, T0).await.unwrap(), None);
    assert_eq!(b.meta.file_position(&other, &f.id).await.unwrap(), None);
    // Expired: invisible, but still positioned and listed as expired for the reaper.
    assert_eq!(
        b.meta.get_file(&project(), &f.id, T0 + 100).await.unwrap(),
        None
    );
    assert_eq!(
        b.meta.file_position(&project(), &f.id).await.unwrap(),
        Some((T0, f.id.clone()))
    );
    let expired = b.meta.expired_files(T0 + 100, 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|f| &f.id).collect::<Vec<_>>(),
        vec![&f.id]
    );
    assert!(b.meta.expired_files(T0 + 99, 10).await.unwrap().is_empty());
    // The extraction job was written with the row.
    let jobs = claim_all(&b, T0).await;
    assert_eq!(
        kinds(&jobs),
        vec![(JobKind::Extract, Some(f.id.to_string()), None)]
    );

    b.meta
        .set_file_status(&f.id, FileStatus::Error, Some("why"))
        .await
        .unwrap();
    let got = b
        .meta
        .get_file(&project(), &f.id, T0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.status, got.status_details.as_deref()),
        (FileStatus::Error, Some("why"))
    );
    assert_eq!(
        b.meta
            .filenames(&[f.id.clone(), FileId::generate()])
            .await
            .unwrap(),
        vec![(f.id.clone(), "a.txt".to_owned())]
    );
}

pub async fn file_pages_never_skip_or_repeat_under_created_at_ties(b: Backend) {
    // 23 files over three seconds, most sharing one.
    let mut all = Vec::new();
    for i in 0..23 {
        let at = T0 + [0, 1, 1, 1, 2][i % 5];
        all.push(new_file(&b, at).await);
    }
    let mut other = file_at(T0 + 1);
    other.purpose = Purpose::Batch;
    b.meta.insert_file(&other, None, NO_QUOTA).await.unwrap();
    for order in [Order::Asc, Order::Desc] {
        let mut expected: Vec<(i64, FileId)> =
            all.iter().map(|f| (f.created_at, f.id.clone())).collect();
        expected.sort();
        if order == Order::Desc {
            expected.reverse();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let q = FileListQuery {
                purpose: Some(Purpose::Assistants),
                order,
                after: after.clone(),
                limit: 4,
            };
            let page = b.meta.list_files(&project(), &q, T0).await.unwrap();
            assert!(page.len() <= 4);
            if page.is_empty() {
                break;
            }
            let last = page.last().unwrap();
            after = Some((last.created_at, last.id.clone()));
            seen.extend(page.into_iter().map(|f| (f.created_at, f.id)));
        }
        assert_eq!(seen, expected, "{order:?}");
    }
}

pub async fn deleting_a_file_applies_its_cascade_atomically(b: Backend) {
    let f = file_at(T0);
    b.meta
        .insert_file(&f, Some(&extract_job(&f)), NO_QUOTA)
        .await
        .unwrap();
    let (s1, s2) = (new_store(&b, T0).await, new_store(&b, T0).await);
    for s in [&s1, &s2] {
        assert!(matches!(attach(&b, s, &f.id, T0).await, Attached::New(_)));
    }
    let bystander = new_file(&b, T0).await;
    assert!(matches!(
        attach(&b, &s1, &bystander.id, T0).await,
        Attached::New(_)
    ));

    let cascade = Cascade::file_deleted(&f);
    let other = ProjectId::parse("proj_other").unwrap();
    assert_eq!(
        b.meta
            .delete_file(&other, &f.id, &cascade, T0)
            .await
            .unwrap(),
        None
    );
    let deleted = b
        .meta
        .delete_file(&project(), &f.id, &cascade, T0)
        .await
        .unwrap();
    assert_eq!(deleted.map(|d| d.id), Some(f.id.clone()));
    assert_eq!(
        b.meta
            .delete_file(&project(), &f.id, &cascade, T0)
            .await
            .unwrap(),
        None
    );

    assert_eq!(b.meta.get_file(&project(), &f.id, T0).await.unwrap(), None);
    assert!(b.meta.file_row_exists(&f.id).await.unwrap());
    for s in [&s1, &s2] {
        assert_eq!(b.meta.get_vs_file(&s.id, &f.id).await.unwrap(), None);
        assert_eq!(
            b.meta.files_pending_purge(&s.id).await.unwrap(),
            vec![f.id.clone()]
        );
    }
    // Its extraction and ingest jobs are cancelled, the purge is queued, others are untouched.
    let jobs = claim_all(&b, T0).await;
    assert_eq!(
        kinds(&jobs),
        vec![
            (
                JobKind::Ingest,
                Some(bystander.id.to_string()),
                Some(s1.id.to_string())
            ),
            (JobKind::PurgeFile, Some(f.id.to_string()), None),
        ]
    );
    // Once the purge is done the file is no longer pending, and its row can go.
    let purge = jobs.iter().find(|j| j.kind == JobKind::PurgeFile).unwrap();
    assert!(b
        .queue
        .finish(purge, &JobEnd::Done, None, T0)
        .await
        .unwrap());
    assert!(b.meta.files_pending_purge(&s1.id).await.unwrap().is_empty());
    b.meta.purge_file_row(&bystander.id).await.unwrap();
    assert!(
        b.meta.file_row_exists(&bystander.id).await.unwrap(),
        "a live row stays"
    );
    b.meta.purge_file_row(&f.id).await.unwrap();
    assert!(!b.meta.file_row_exists(&f.id).await.unwrap());
}

// --- uploads ------------------------------------------------------------------------------------

fn upload(bytes: i64, expires_at: i64) -> UploadRecord {
    UploadRecord {
        id: UploadId::generate(),
        project_id: project(),
        filename: "big.bin".into(),
        purpose: Purpose::Assistants,
        bytes,
        mime_type: "application/octet-stream".into(),
        created_at: T0,
        expires_at,
        status: UploadStatus::Pending,
        file_id: None,
        file_expires_after: None,
    }
}

fn part(u: &UploadRecord, bytes: i64) -> PartRecord {
    let id = PartId::generate();
    PartRecord {
        storage_key: PartRecord::storage_key_for(&u.id, &id),
        id,
        upload_id: u.id.clone(),
        project_id: u.project_id.clone(),
        created_at: T0,
        bytes,
    }
}

pub async fn racing_parts_never_overfill_an_upload(b: Backend) {
    let u = upload(100, T0 + 3600);
    b.meta.insert_upload(&u).await.unwrap();
    assert_eq!(
        b.meta.get_upload(&project(), &u.id).await.unwrap(),
        Some(u.clone())
    );
    let parts: Vec<PartRecord> = (0..24).map(|_| part(&u, 10)).collect();
    let accepted = join_all(parts.iter().map(|p| {
        let meta = b.meta.clone();
        let p = p.clone();
        tokio::spawn(async move { meta.insert_part(&p, T0, 150).await.unwrap() })
    }))
    .await;
    let accepted = accepted
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(accepted, 15, "150 bytes fit, in parts of 10");
    let stored = b.meta.parts_of(&u.id).await.unwrap();
    assert_eq!(stored.len(), 15);
    assert!(b.meta.part_exists(&stored[0].id).await.unwrap());
    assert!(!b
        .meta
        .part_exists(
            &parts
                .iter()
                .find(|p| !stored.iter().any(|s| s.id == p.id))
                .unwrap()
                .id
        )
        .await
        .unwrap());

    // Expired or no longer pending: refused.
    assert!(!b
        .meta
        .insert_part(&part(&u, 1), T0 + 3600, 1000)
        .await
        .unwrap());
    assert!(b
        .meta
        .finish_pending_upload(&u.id, UploadStatus::Cancelled)
        .await
        .unwrap());
    assert!(!b
        .meta
        .finish_pending_upload(&u.id, UploadStatus::Cancelled)
        .await
        .unwrap());
    assert!(!b.meta.insert_part(&part(&u, 1), T0, 1000).await.unwrap());
    assert_eq!(
        b.meta.finished_uploads_with_parts(10).await.unwrap(),
        vec![u.id.clone()]
    );
    b.meta.delete_parts(&u.id).await.unwrap();
    assert!(b
        .meta
        .finished_uploads_with_parts(10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn an_upload_completes_once(b: Backend) {
    let u = upload(10, T0 + 3600);
    b.meta.insert_upload(&u).await.unwrap();
    let files: Vec<FileRecord> = (0..6).map(|_| file_at(T0)).collect();
    let done = join_all(files.iter().map(|f| {
        let meta = b.meta.clone();
        let (f, id) = (f.clone(), u.id.clone());
        tokio::spawn(async move {
            let job = extract_job(&f);
            meta.complete_upload(&id, &f, Some(&job), T0, NO_QUOTA)
                .await
                .unwrap()
        })
    }))
    .await;
    let winners: Vec<&FileRecord> = files
        .iter()
        .zip(&done)
        .filter(|(_, d)| *d.as_ref().unwrap())
        .map(|(f, _)| f)
        .collect();
    assert_eq!(winners.len(), 1);
    for f in &files {
        let row = b.meta.file_row_exists(&f.id).await.unwrap();
        assert_eq!(row, f.id == winners[0].id, "only the winner's row exists");
    }
    let got = b.meta.get_upload(&project(), &u.id).await.unwrap().unwrap();
    assert_eq!(got.status, UploadStatus::Completed);
    assert_eq!(got.file_id.as_ref(), Some(&winners[0].id));
    assert_eq!(claim_all(&b, T0).await.len(), 1, "one extraction job");

    // An expired upload neither completes nor stays pending once the reaper passes.
    let late = upload(10, T0 + 10);
    b.meta.insert_upload(&late).await.unwrap();
    assert!(!b
        .meta
        .complete_upload(&late.id, &file_at(T0), None, T0 + 10, NO_QUOTA)
        .await
        .unwrap());
    assert_eq!(b.meta.expire_uploads(T0 + 10).await.unwrap(), 1);
    let got = b
        .meta
        .get_upload(&project(), &late.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, UploadStatus::Expired);
}

// --- vector stores ------------------------------------------------------------------------------

pub async fn store_pages_never_skip_or_repeat_under_created_at_ties(b: Backend) {
    let mut all = Vec::new();
    for i in 0..17 {
        all.push(new_store(&b, T0 + [0, 1, 1, 2][i % 4]).await);
    }
    let mut expected: Vec<(i64, String)> = all
        .iter()
        .map(|s| (s.created_at, s.id.to_string()))
        .collect();
    expected.sort();
    for order in [Order::Asc, Order::Desc] {
        let mut want = expected.clone();
        if order == Order::Desc {
            want.reverse();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let w = ListWindow {
                order,
                after: after.clone(),
                before: None,
                limit: 3,
            };
            let page = b.meta.list_vector_stores(&project(), &w).await.unwrap();
            if page.is_empty() {
                break;
            }
            let last = page.last().unwrap();
            after = Some((last.created_at, last.id.to_string()));
            seen.extend(page.iter().map(|s| (s.created_at, s.id.to_string())));
        }
        assert_eq!(seen, want, "{order:?}");
        // `before` the 10th, in the same order: the 9 before it.
        let w = ListWindow {
            order,
            after: None,
            before: Some(want[9].clone()),
            limit: 100,
        };
        let page = b.meta.list_vector_stores(&project(), &w).await.unwrap();
        let got: Vec<_> = page
            .iter()
            .map(|s| (s.created_at, s.id.to_string()))
            .collect();
        assert_eq!(got, want[..9].to_vec(), "{order:?} before");
        let pos = b
            .meta
            .vector_store_position(&project(), &all[3].id)
            .await
            .unwrap();
        assert_eq!(pos, Some((all[3].created_at, all[3].id.to_string())));
    }
}

pub async fn touching_a_store_never_undoes_a_modify(b: Backend) {
    let mut s = new_store(&b, T0).await;
    s.name = Some("renamed".into());
    s.last_active_at = T0 + 50;
    b.meta.update_vector_store(&s).await.unwrap();
    // A search that read the store before the rename touches it afterwards.
    b.meta.touch_vector_store(&s.id, T0 + 60).await.unwrap();
    let got = b
        .meta
        .get_vector_store(&project(), &s.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.name.as_deref(), Some("renamed"));
    assert_eq!(got.last_active_at, T0 + 60);
    // Never backwards.
    b.meta.touch_vector_store(&s.id, T0 + 10).await.unwrap();
    let got = b
        .meta
        .get_vector_store(&project(), &s.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.last_active_at, T0 + 60);
}

pub async fn attach_is_checked_and_written_atomically(b: Backend) {
    let s = new_store(&b, T0).await;
    let f = new_file(&b, T0).await;
    let Attached::New(row) = attach(&b, &s, &f.id, T0).await else {
        panic!("not attached")
    };
    assert_eq!(
        b.meta.get_vs_file(&s.id, &f.id).await.unwrap(),
        Some(row.clone())
    );
    assert_eq!(attach(&b, &s, &f.id, T0).await, Attached::Existing(row));
    // A file that is not there, expired, or deleted; a deleted store: nothing is written.
    assert_eq!(
        attach(&b, &s, &FileId::generate(), T0).await,
        Attached::Gone
    );
    let mut expiring = file_at(T0);
    expiring.expires_at = Some(T0 + 5);
    b.meta.insert_file(&expiring, None, NO_QUOTA).await.unwrap();
    assert_eq!(attach(&b, &s, &expiring.id, T0 + 5).await, Attached::Gone);
    let gone = new_file(&b, T0).await;
    b.meta
        .delete_file(&project(), &gone.id, &Cascade::file_deleted(&gone), T0)
        .await
        .unwrap();
    assert_eq!(attach(&b, &s, &gone.id, T0).await, Attached::Gone);
    let dead = new_store(&b, T0).await;
    assert!(b
        .meta
        .delete_vector_store(
            &project(),
            &dead.id,
            &Cascade::store_deleted(&project(), &dead.id),
            T0
        )
        .await
        .unwrap());
    assert_eq!(attach(&b, &dead, &f.id, T0).await, Attached::Gone);
    // Creating a store (or a batch) with a gone file leaves that one out and says so.
    let s2 = store_at(T0);
    let files = [link(&s2, &f.id, None), link(&s2, &gone.id, None)];
    assert_eq!(
        b.meta
            .create_vector_store(&s2, &files, T0, &Quotas::DEFAULT)
            .await
            .unwrap(),
        vec![gone.id.clone()]
    );
    assert!(b
        .meta
        .get_vs_file(&s2.id, &gone.id)
        .await
        .unwrap()
        .is_none());
    // Only the ingest jobs of the links that were written exist.
    let jobs = claim_all(&b, T0).await;
    let ingests: BTreeSet<_> = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Ingest)
        .map(|j| j.vector_store_id.clone().unwrap())
        .collect();
    assert_eq!(ingests, [s.id.clone(), s2.id.clone()].into_iter().collect());
}

pub async fn an_attach_racing_a_delete_leaves_no_link(b: Backend) {
    let s = new_store(&b, T0).await;
    for _ in 0..40 {
        let f = new_file(&b, T0).await;
        let (row, job) = link(&s, &f.id, None);
        let meta = b.meta.clone();
        let attach =
            tokio::spawn(async move { meta.attach_file(&row, &job, T0, NO_QUOTA).await.unwrap() });
        let meta = b.meta.clone();
        let file = f.clone();
        let delete = tokio::spawn(async move {
            meta.delete_file(&project(), &file.id, &Cascade::file_deleted(&file), T0)
                .await
                .unwrap()
        });
        let (attached, deleted) = (attach.await.unwrap(), delete.await.unwrap());
        assert!(deleted.is_some());
        assert!(matches!(attached, Attached::New(_) | Attached::Gone));
        assert_eq!(
            b.meta.get_vs_file(&s.id, &f.id).await.unwrap(),
            None,
            "orphan link"
        );
    }
    // No ingest job survives either: each was cancelled with its link, or never written.
    let jobs = claim_all(&b, T0).await;
    assert!(
        jobs.iter().all(|j| j.kind == JobKind::PurgeFile),
        "{:?}",
        kinds(&jobs)
    );
    let (counts, _) = b.meta.store_stats(&s.id).await.unwrap();
    assert_eq!(counts.total(), 0);
}

pub async fn detaching_and_deleting_a_store_apply_their_cascades(b: Backend) {
    let s = new_store(&b, T0).await;
    let (f1, f2) = (new_file(&b, T0).await, new_file(&b, T0).await);
    attach(&b, &s, &f1.id, T0).await;
    attach(&b, &s, &f2.id, T0).await;
    let cascade = Cascade::file_detached(&project(), &s.id, &f1.id);
    let removed = b
        .meta
        .detach_file(&s.id, &f1.id, &cascade, T0)
        .await
        .unwrap();
    assert_eq!(removed.map(|r| r.file_id), Some(f1.id.clone()));
    assert_eq!(
        b.meta
            .detach_file(&s.id, &f1.id, &cascade, T0)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.meta.files_pending_purge(&s.id).await.unwrap(),
        vec![f1.id.clone()]
    );
    let jobs = claim_all(&b, T0).await;
    assert_eq!(
        kinds(&jobs),
        vec![
            (
                JobKind::Ingest,
                Some(f2.id.to_string()),
                Some(s.id.to_string())
            ),
            (
                JobKind::PurgeVsFile,
                Some(f1.id.to_string()),
                Some(s.id.to_string())
            ),
        ]
    );
    // Deleting the store cancels the (running) ingest of f2 and queues the store's purge.
    let cascade = Cascade::store_deleted(&project(), &s.id);
    assert!(b
        .meta
        .delete_vector_store(&project(), &s.id, &cascade, T0)
        .await
        .unwrap());
    assert!(!b
        .meta
        .delete_vector_store(&project(), &s.id, &cascade, T0)
        .await
        .unwrap());
    assert_eq!(
        b.meta.get_vector_store(&project(), &s.id).await.unwrap(),
        None
    );
    assert_eq!(b.meta.get_vs_file(&s.id, &f2.id).await.unwrap(), None);
    let ingest = jobs.iter().find(|j| j.kind == JobKind::Ingest).unwrap();
    assert!(
        !b.queue.heartbeat(ingest, T0 + LEASE).await.unwrap(),
        "cancelled"
    );
    assert!(!b
        .queue
        .finish(ingest, &JobEnd::Done, None, T0)
        .await
        .unwrap());
    // The purge waits until the stopping ingest is released.
    assert!(claim_all(&b, T0).await.is_empty());
    assert!(b.queue.release(ingest, T0).await.unwrap());
    assert!(!b.queue.release(ingest, T0).await.unwrap());
    let jobs = claim_all(&b, T0).await;
    assert_eq!(
        kinds(&jobs),
        vec![(JobKind::PurgeStore, None, Some(s.id.to_string()))]
    );
    b.meta.purge_vector_store_rows(&s.id).await.unwrap();
    assert_eq!(
        b.meta
            .vector_store_position(&project(), &s.id)
            .await
            .unwrap(),
        None
    );
}

pub async fn cancelling_a_batch_stops_only_its_unfinished_files(b: Backend) {
    let s = new_store(&b, T0).await;
    let files = [
        new_file(&b, T0).await,
        new_file(&b, T0).await,
        new_file(&b, T0).await,
    ];
    let outside = new_file(&b, T0).await;
    attach(&b, &s, &outside.id, T0).await;
    let batch = FileBatchRecord {
        id: FileBatchId::generate(),
        vector_store_id: s.id.clone(),
        project_id: project(),
        created_at: T0,
        cancelled: false,
    };
    let mut rows: Vec<_> = files
        .iter()
        .map(|f| link(&s, &f.id, Some(&batch.id)))
        .collect();
    // A file already in the store keeps its row and joins no batch.
    rows.push(link(&s, &outside.id, Some(&batch.id)));
    assert!(b
        .meta
        .create_batch(&batch, &rows, T0, NO_QUOTA)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        b.meta.get_batch(&s.id, &batch.id).await.unwrap(),
        Some(batch.clone())
    );
    assert_eq!(b.meta.batch_counts(&batch.id).await.unwrap().in_progress, 3);
    // Finish the first file's ingest, leave the others queued or running.
    let jobs = claim_all(&b, T0).await;
    let first = jobs
        .iter()
        .find(|j| j.file_id.as_ref() == Some(&files[0].id))
        .unwrap();
    let outcome = ingest_outcome(
        first.kind,
        first.vector_store_id.as_ref(),
        first.file_id.as_ref(),
        &JobEnd::Done,
        7,
    );
    assert!(b
        .queue
        .finish(first, &JobEnd::Done, outcome.as_ref(), T0)
        .await
        .unwrap());
    b.meta
        .cancel_batch(&batch.id, BATCH_CANCEL_KINDS, T0)
        .await
        .unwrap();
    let got = b.meta.get_batch(&s.id, &batch.id).await.unwrap().unwrap();
    assert!(got.cancelled);
    let counts = b.meta.batch_counts(&batch.id).await.unwrap();
    assert_eq!(
        (counts.completed, counts.cancelled, counts.in_progress),
        (1, 2, 0)
    );
    for j in &jobs {
        let live = b.queue.heartbeat(j, T0 + LEASE).await.unwrap();
        let want = j.file_id.as_ref() == Some(&outside.id);
        assert_eq!(live, want, "{:?}", j.file_id);
    }
    // Each cancelled file gets a purge of what its job indexed, run once that job has stopped.
    assert!(claim_all(&b, T0).await.is_empty());
    for j in &jobs {
        b.queue.release(j, T0).await.unwrap();
    }
    let purges = claim_all(&b, T0).await;
    let mut want: Vec<_> = files[1..]
        .iter()
        .map(|f| {
            (
                JobKind::PurgeVsFile,
                Some(f.id.to_string()),
                Some(s.id.to_string()),
            )
        })
        .collect();
    want.sort_by_key(|(_, f, _)| f.clone());
    assert_eq!(kinds(&purges), want);
    let outside_row = b
        .meta
        .get_vs_file(&s.id, &outside.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (outside_row.status, outside_row.batch_id),
        (VsFileStatus::InProgress, None)
    );
}

/// A purge runs only once the jobs whose writes it removes have stopped: released by their
/// worker, or their lease over (a crash). Other jobs are not held up meanwhile.
pub async fn a_purge_waits_until_the_jobs_it_undoes_have_stopped(b: Backend) {
    let s = new_store(&b, T0).await;
    let (f, g, other) = (
        new_file(&b, T0).await,
        new_file(&b, T0).await,
        new_file(&b, T0).await,
    );
    attach(&b, &s, &f.id, T0).await;
    attach(&b, &s, &g.id, T0).await;
    let running = claim_all(&b, T0).await;
    assert_eq!(running.len(), 2);
    let job_of = |file: &FileId| running.iter().find(|j| j.file_id.as_ref() == Some(file));
    for file in [&f, &g] {
        b.meta
            .delete_file(&project(), &file.id, &Cascade::file_deleted(file), T0)
            .await
            .unwrap()
            .unwrap();
    }
    // Both ingests are stopping: refused, but still holding their purges back.
    let fi = job_of(&f.id).unwrap();
    assert!(!b.queue.heartbeat(fi, T0 + LEASE).await.unwrap());
    assert!(!b.queue.finish(fi, &JobEnd::Done, None, T0).await.unwrap());
    attach(&b, &s, &other.id, T0).await;
    let unrelated = claim_all(&b, T0).await;
    assert_eq!(
        kinds(&unrelated),
        vec![(
            JobKind::Ingest,
            Some(other.id.to_string()),
            Some(s.id.to_string())
        )],
        "the waiting purges hold up no other job"
    );
    // g's worker releases its job: g's purge runs, f's still waits, to the end of f's lease.
    assert!(b.queue.release(job_of(&g.id).unwrap(), T0).await.unwrap());
    let purged = claim_all(&b, T0).await;
    assert_eq!(
        kinds(&purged),
        vec![(JobKind::PurgeFile, Some(g.id.to_string()), None)]
    );
    assert!(claim_all(&b, T0 + LEASE).await.is_empty());
    for j in unrelated.iter().chain(&purged) {
        assert!(b.queue.finish(j, &JobEnd::Done, None, T0).await.unwrap());
    }
    // f's worker died: once its lease is over, the job counts as stopped.
    assert_eq!(b.queue.requeue_expired(T0 + LEASE + 1).await.unwrap(), 0);
    assert!(!b.queue.release(fi, T0 + LEASE + 1).await.unwrap());
    let purged = claim_all(&b, T0 + LEASE + 1).await;
    assert_eq!(
        kinds(&purged),
        vec![(JobKind::PurgeFile, Some(f.id.to_string()), None)]
    );

    // A detached then re-attached file: its new ingest waits for the running purge of the link.
    let h = new_file(&b, T0).await;
    let t = T0 + 1000;
    attach(&b, &s, &h.id, t).await;
    let ingest = b.queue.claim("w", t, LEASE).await.unwrap().unwrap();
    assert!(b
        .queue
        .finish(&ingest, &JobEnd::Done, None, t)
        .await
        .unwrap());
    b.meta
        .detach_file(
            &s.id,
            &h.id,
            &Cascade::file_detached(&project(), &s.id, &h.id),
            t,
        )
        .await
        .unwrap()
        .unwrap();
    let purge = b.queue.claim("w", t, LEASE).await.unwrap().unwrap();
    assert_eq!(purge.kind, JobKind::PurgeVsFile);
    attach(&b, &s, &h.id, t).await;
    assert!(claim_all(&b, t).await.is_empty());
    assert!(b
        .queue
        .finish(&purge, &JobEnd::Done, None, t)
        .await
        .unwrap());
    let again = claim_all(&b, t).await;
    assert_eq!(
        kinds(&again),
        vec![(
            JobKind::Ingest,
            Some(h.id.to_string()),
            Some(s.id.to_string())
        )]
    );
}

pub async fn store_lists_filter_by_batch_and_status(b: Backend) {
    let s = new_store(&b, T0).await;
    let files = [new_file(&b, T0).await, new_file(&b, T0).await];
    for f in &files {
        attach(&b, &s, &f.id, T0 + 1).await;
    }
    let mut attrs = Attributes::new();
    attrs.insert("k".into(), ragstore::domain::AttrValue::Number(3.0));
    assert!(b
        .meta
        .set_vs_file_attributes(&s.id, &files[0].id, &attrs)
        .await
        .unwrap());
    assert!(!b
        .meta
        .set_vs_file_attributes(&s.id, &FileId::generate(), &attrs)
        .await
        .unwrap());
    let w = ListWindow {
        order: Order::Asc,
        after: None,
        before: None,
        limit: 10,
    };
    let all = b.meta.list_vs_files(&s.id, None, None, &w).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all.iter()
            .find(|r| r.file_id == files[0].id)
            .unwrap()
            .attributes,
        attrs
    );
    let done = b
        .meta
        .list_vs_files(&s.id, None, Some(VsFileStatus::Completed), &w)
        .await
        .unwrap();
    assert!(done.is_empty());
    let pos = b.meta.vs_file_position(&s.id, &files[1].id).await.unwrap();
    assert_eq!(
        pos,
        Some((T0, files[1].id.to_string())),
        "positioned at the link's created_at"
    );
}

// --- the job queue ------------------------------------------------------------------------------

pub async fn purges_are_claimed_before_a_backlog(b: Backend) {
    let s = new_store(&b, T0).await;
    let mut files = Vec::new();
    for _ in 0..5 {
        let f = new_file(&b, T0).await;
        attach(&b, &s, &f.id, T0).await;
        files.push(f);
    }
    // A file nothing works on is deleted after the backlog was queued.
    let gone = new_file(&b, T0 + 1).await;
    b.meta
        .delete_file(&project(), &gone.id, &Cascade::file_deleted(&gone), T0 + 1)
        .await
        .unwrap()
        .unwrap();
    let first = b.queue.claim("w", T0 + 2, LEASE).await.unwrap().unwrap();
    assert_eq!(first.kind, JobKind::PurgeFile);
    assert_eq!(first.file_id.as_ref(), Some(&gone.id));
    // Then the backlog, oldest first.
    let rest = claim_all(&b, T0 + 2).await;
    assert_eq!(rest.len(), 5);
    assert!(rest.iter().all(|j| j.kind == JobKind::Ingest));
}

pub async fn two_claimers_never_get_the_same_job(b: Backend) {
    for _ in 0..120 {
        let f = file_at(T0);
        b.meta
            .insert_file(&f, Some(&extract_job(&f)), NO_QUOTA)
            .await
            .unwrap();
    }
    let claimed = join_all((0..6).map(|w| {
        let queue = b.queue.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(j) = queue.claim(&format!("w{w}"), T0, LEASE).await.unwrap() {
                mine.push(j.id);
            }
            mine
        })
    }))
    .await;
    let all: Vec<i64> = claimed.into_iter().flat_map(|c| c.unwrap()).collect();
    let distinct: HashSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 120);
    assert_eq!(distinct.len(), 120);
}

pub async fn racing_claims_never_run_a_job_beside_one_it_waits_for(b: Backend) {
    // Detached and attached again before its ingest ran: the link's purge and the new ingest
    // are both queued, and the ingest waits for the purge. Two claimers race for them; the
    // second must see the first's purge running, never both at once.
    let s = new_store(&b, T0).await;
    for i in 0..30 {
        let f = new_file(&b, T0).await;
        attach(&b, &s, &f.id, T0).await;
        b.meta
            .detach_file(
                &s.id,
                &f.id,
                &Cascade::file_detached(&project(), &s.id, &f.id),
                T0,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(attach(&b, &s, &f.id, T0).await, Attached::New(_)));
        let claims = join_all((0..2).map(|n| {
            let queue = b.queue.clone();
            tokio::spawn(async move { queue.claim(&format!("w{i}.{n}"), T0, LEASE).await.unwrap() })
        }))
        .await;
        let claimed: Vec<Job> = claims.into_iter().filter_map(|c| c.unwrap()).collect();
        assert_eq!(
            kinds(&claimed),
            vec![(
                JobKind::PurgeVsFile,
                Some(f.id.to_string()),
                Some(s.id.to_string())
            )],
            "round {i}: the purge runs alone"
        );
        // It stays running: its ingest stays held back through the next rounds.
    }
}

pub async fn a_delete_racing_a_finish_leaves_both_answered(b: Backend) {
    // Files are deleted while their ingests finish (each writing its link's outcome): every
    // call answers (none is refused by the database, say as a deadlock), and no link remains.
    let s = new_store(&b, T0).await;
    let mut files = Vec::new();
    for _ in 0..40 {
        let f = new_file(&b, T0).await;
        attach(&b, &s, &f.id, T0).await;
        files.push(f);
    }
    let jobs = claim_all(&b, T0).await;
    assert_eq!(jobs.len(), files.len());
    let finishes = jobs.into_iter().map(|job| {
        let queue = b.queue.clone();
        tokio::spawn(async move {
            let outcome = ingest_outcome(
                job.kind,
                job.vector_store_id.as_ref(),
                job.file_id.as_ref(),
                &JobEnd::Done,
                10,
            );
            queue
                .finish(&job, &JobEnd::Done, outcome.as_ref(), T0)
                .await
                .map(|_| ())
        })
    });
    let deletes = files.iter().map(|f| {
        let meta = b.meta.clone();
        let f = f.clone();
        tokio::spawn(async move {
            meta.delete_file(&project(), &f.id, &Cascade::file_deleted(&f), T0)
                .await
                .map(|deleted| assert!(deleted.is_some()))
        })
    });
    let (finished, deleted) = futures_util::join!(join_all(finishes), join_all(deletes));
    for r in finished.into_iter().chain(deleted) {
        r.unwrap().unwrap_or_else(|e| panic!("{e:?}"));
    }
    let (counts, _) = b.meta.store_stats(&s.id).await.unwrap();
    assert_eq!(counts.total(), 0, "no link remains");
}

pub async fn a_stale_claim_cannot_heartbeat_or_finish(b: Backend) {
    let s = new_store(&b, T0).await;
    let f = new_file(&b, T0).await;
    attach(&b, &s, &f.id, T0).await;
    let first = b.queue.claim("w1", T0, LEASE).await.unwrap().unwrap();
    assert_eq!(first.attempts, 1);
    assert!(b.queue.heartbeat(&first, T0 + LEASE).await.unwrap());
    // Not runnable while claimed.
    assert!(b.queue.claim("w2", T0, LEASE).await.unwrap().is_none());
    // The lease (extended to T0 + LEASE) expires; the job goes back and is claimed again, even by
    // the same worker name: the first claim is void.
    assert_eq!(b.queue.requeue_expired(T0 + LEASE).await.unwrap(), 0);
    assert_eq!(b.queue.requeue_expired(T0 + LEASE + 1).await.unwrap(), 1);
    let second = b
        .queue
        .claim("w1", T0 + LEASE + 1, LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id, second.attempts), (first.id, 2));
    assert!(!b.queue.heartbeat(&first, T0 + 1000).await.unwrap());
    let done = ingest_outcome(
        first.kind,
        first.vector_store_id.as_ref(),
        first.file_id.as_ref(),
        &JobEnd::Done,
        5,
    );
    assert!(!b
        .queue
        .finish(&first, &JobEnd::Done, done.as_ref(), T0)
        .await
        .unwrap());
    // The refused finish wrote nothing: the file is still in progress.
    let row = b.meta.get_vs_file(&s.id, &f.id).await.unwrap().unwrap();
    assert_eq!(row.status, VsFileStatus::InProgress);
    assert!(b
        .queue
        .finish(&second, &JobEnd::Done, done.as_ref(), T0)
        .await
        .unwrap());
    let row = b.meta.get_vs_file(&s.id, &f.id).await.unwrap().unwrap();
    assert_eq!((row.status, row.usage_bytes), (VsFileStatus::Completed, 5));
    assert!(
        !b.queue
            .finish(&second, &JobEnd::Done, None, T0)
            .await
            .unwrap(),
        "finished once"
    );
}

pub async fn only_expired_leases_are_requeued(b: Backend) {
    for _ in 0..2 {
        let f = file_at(T0);
        b.meta
            .insert_file(&f, Some(&extract_job(&f)), NO_QUOTA)
            .await
            .unwrap();
    }
    let short = b.queue.claim("a", T0, 10).await.unwrap().unwrap();
    let long = b.queue.claim("b", T0, 1000).await.unwrap().unwrap();
    assert_eq!(b.queue.requeue_expired(T0 + 11).await.unwrap(), 1);
    assert!(!b.queue.heartbeat(&short, T0 + 100).await.unwrap());
    assert!(
        b.queue.heartbeat(&long, T0 + 1000).await.unwrap(),
        "a live lease is left alone"
    );
    let again = b.queue.claim("c", T0 + 11, 10).await.unwrap().unwrap();
    assert_eq!(again.id, short.id);
}

pub async fn job_ends_set_the_file_outcome_and_retries_wait(b: Backend) {
    let s = new_store(&b, T0).await;
    let (ok, bad, flaky) = (
        new_file(&b, T0).await,
        new_file(&b, T0).await,
        new_file(&b, T0).await,
    );
    for f in [&ok, &bad, &flaky] {
        attach(&b, &s, &f.id, T0).await;
    }
    let jobs = claim_all(&b, T0).await;
    let job_of = |f: &FileRecord| {
        jobs.iter()
            .find(|j| j.file_id.as_ref() == Some(&f.id))
            .unwrap()
            .clone()
    };
    let end_with = |j: &Job, end: &JobEnd, usage| {
        let outcome = ingest_outcome(
            j.kind,
            j.vector_store_id.as_ref(),
            j.file_id.as_ref(),
            end,
            usage,
        );
        let (queue, j, end) = (b.queue.clone(), j.clone(), end.clone());
        async move { queue.finish(&j, &end, outcome.as_ref(), T0).await.unwrap() }
    };
    assert!(end_with(&job_of(&ok), &JobEnd::Done, 123).await);
    let failed = JobEnd::Failed {
        code: IngestErrorCode::UnsupportedFile,
        message: "no text".into(),
    };
    assert!(end_with(&job_of(&bad), &failed, 0).await);
    let retry = JobEnd::Retry {
        message: "busy".into(),
        retry_at: T0 + 30,
    };
    assert!(end_with(&job_of(&flaky), &retry, 0).await);
    let row = |f: &FileRecord| {
        let (meta, sid, fid) = (b.meta.clone(), s.id.clone(), f.id.clone());
        async move { meta.get_vs_file(&sid, &fid).await.unwrap().unwrap() }
    };
    let r = row(&ok).await;
    assert_eq!(
        (r.status, r.usage_bytes, r.last_error),
        (VsFileStatus::Completed, 123, None)
    );
    let r = row(&bad).await;
    assert_eq!(r.status, VsFileStatus::Failed);
    assert_eq!(
        r.last_error,
        Some((IngestErrorCode::UnsupportedFile, "no text".into()))
    );
    assert_eq!(row(&flaky).await.status, VsFileStatus::InProgress);
    let (counts, usage) = b.meta.store_stats(&s.id).await.unwrap();
    assert_eq!(
        (counts.completed, counts.failed, counts.in_progress, usage),
        (1, 1, 1, 123)
    );
    // The retry waits until its time.
    assert!(b.queue.claim("w", T0 + 29, LEASE).await.unwrap().is_none());
    let again = b.queue.claim("w", T0 + 30, LEASE).await.unwrap().unwrap();
    assert_eq!(
        (again.file_id.as_ref(), again.attempts),
        (Some(&flaky.id), 2)
    );
}

// --- caches -------------------------------------------------------------------------------------

/// A job that outlives the delete of its file (it was extracting or chunking when the delete
/// committed) cannot write the file's caches back after the purge: every cache write is refused
/// once the file is deleted, and once its row is gone.
pub async fn cache_writes_for_a_deleted_file_are_refused(b: Backend) {
    let f = new_file(&b, T0).await;
    let c = chunking();
    let text = FileText::Ok {
        storage_key: format!("texts/{}", f.id),
        format: "text".into(),
        sections: Vec::new(),
    };
    let rows = vec![ChunkRow {
        idx: 0,
        text: "zero".into(),
        extra: Default::default(),
        embedding: None,
    }];
    assert!(
        b.meta.put_chunks(&f.id, &c, &rows).await.unwrap(),
        "live: written"
    );
    b.meta
        .delete_file(&project(), &f.id, &Cascade::file_deleted(&f), T0)
        .await
        .unwrap()
        .unwrap();
    b.meta.delete_file_caches(&f.id).await.unwrap(); // the purge
    for gone in [false, true] {
        if gone {
            b.meta.purge_file_row(&f.id).await.unwrap();
        }
        assert!(!b.meta.put_file_text(&f.id, &text, T0).await.unwrap());
        assert!(!b.meta.put_chunks(&f.id, &c, &rows).await.unwrap());
        assert!(!b.meta.finish_chunking(&f.id, &c, 1).await.unwrap());
        assert_no_caches(&b, &f.id, &c).await;
    }
}

/// Nothing is cached for `file`: no text, no finished chunking, no chunks.
async fn assert_no_caches(b: &Backend, file: &FileId, c: &Chunking) {
    assert_eq!(b.meta.get_file_text(file).await.unwrap(), None);
    assert_eq!(b.meta.chunked(file, c).await.unwrap(), None);
    assert!(b
        .meta
        .get_chunks(file, c, 0, 10, None)
        .await
        .unwrap()
        .is_empty());
}

pub async fn caches_store_text_chunks_and_embeddings_per_model(b: Backend) {
    let f = new_file(&b, T0).await;
    assert_eq!(b.meta.get_file_text(&f.id).await.unwrap(), None);
    let failed = FileText::Failed {
        code: IngestErrorCode::InvalidFile,
        message: "broken".into(),
    };
    b.meta.put_file_text(&f.id, &failed, T0).await.unwrap();
    assert_eq!(b.meta.get_file_text(&f.id).await.unwrap(), Some(failed));
    let ok = FileText::Ok {
        storage_key: format!("texts/{}", f.id),
        format: "markdown".into(),
        sections: Vec::new(),
    };
    b.meta.put_file_text(&f.id, &ok, T0).await.unwrap();
    assert_eq!(b.meta.get_file_text(&f.id).await.unwrap(), Some(ok));

    let c = chunking();
    assert_eq!(b.meta.chunked(&f.id, &c).await.unwrap(), None);
    let rows = |range: std::ops::Range<u32>, tag: &str| -> Vec<ChunkRow> {
        range
            .map(|i| ChunkRow {
                idx: i,
                text: format!("{tag} {i}"),
                extra: serde_json::from_value(serde_json::json!({"page": i})).unwrap(),
                embedding: None,
            })
            .collect()
    };
    // Chunks arrive in batches; an interrupted run left five.
    b.meta
        .put_chunks(&f.id, &c, &rows(0..5, "old"))
        .await
        .unwrap();
    b.meta
        .set_embeddings(&f.id, &c, "m1", &[(0, vec![1.0, 2.0]), (1, vec![3.0, 4.5])])
        .await
        .unwrap();
    assert_eq!(
        b.meta.chunked(&f.id, &c).await.unwrap(),
        None,
        "not finished"
    );
    // The resumed run writes the same first chunk, a changed second, and finishes at three.
    let mut again = rows(0..3, "new");
    again[0].text = "old 0".into();
    b.meta.put_chunks(&f.id, &c, &again[..2]).await.unwrap();
    b.meta.put_chunks(&f.id, &c, &again[2..]).await.unwrap();
    b.meta.finish_chunking(&f.id, &c, 3).await.unwrap();
    assert_eq!(b.meta.chunked(&f.id, &c).await.unwrap(), Some(3));
    let other = Chunking {
        max_tokens: 300,
        overlap_tokens: 0,
    };
    assert_eq!(b.meta.chunked(&f.id, &other).await.unwrap(), None);
    let got = b
        .meta
        .get_chunks(&f.id, &c, 0, 10, Some("m1"))
        .await
        .unwrap();
    assert_eq!(got.len(), 3, "the stale tail is gone");
    assert_eq!(
        got[0].embedding,
        Some(vec![1.0, 2.0]),
        "same text keeps its vector"
    );
    assert_eq!(got[1].text, "new 1");
    assert_eq!(got[1].embedding, None, "changed text loses it");
    assert_eq!(got[2].extra, rows(2..3, "x")[0].extra);
    // Another model's vectors are not handed out; none are without a model.
    let m2 = b
        .meta
        .get_chunks(&f.id, &c, 0, 10, Some("m2"))
        .await
        .unwrap();
    assert!(m2.iter().all(|r| r.embedding.is_none()));
    let plain = b.meta.get_chunks(&f.id, &c, 1, 1, None).await.unwrap();
    assert_eq!(
        (plain.len(), plain[0].idx, plain[0].embedding.as_ref()),
        (1, 1, None)
    );

    b.meta.delete_file_caches(&f.id).await.unwrap();
    assert_no_caches(&b, &f.id, &c).await;
}

pub async fn progress_is_recorded_while_in_progress(b: Backend) {
    let s = new_store(&b, T0).await;
    let f = new_file(&b, T0).await;
    attach(&b, &s, &f.id, T0).await;
    b.meta
        .set_vs_file_progress(&s.id, &f.id, 4, None)
        .await
        .unwrap();
    let r = b.meta.get_vs_file(&s.id, &f.id).await.unwrap().unwrap();
    assert_eq!((r.chunks_indexed, r.chunks_total), (4, None));
    b.meta
        .set_vs_file_progress(&s.id, &f.id, 9, Some(12))
        .await
        .unwrap();
    b.meta
        .set_vs_file_progress(&s.id, &f.id, 10, None)
        .await
        .unwrap();
    let r = b.meta.get_vs_file(&s.id, &f.id).await.unwrap().unwrap();
    assert_eq!(
        (r.chunks_indexed, r.chunks_total),
        (10, Some(12)),
        "a known total stays"
    );
    // A finished file is left as it ended.
    let job = b.queue.claim("w", T0, LEASE).await.unwrap().unwrap();
    let done = ingest_outcome(
        job.kind,
        job.vector_store_id.as_ref(),
        job.file_id.as_ref(),
        &JobEnd::Done,
        1,
    );
    assert!(b
        .queue
        .finish(&job, &JobEnd::Done, done.as_ref(), T0)
        .await
        .unwrap());
    b.meta
        .set_vs_file_progress(&s.id, &f.id, 1, Some(1))
        .await
        .unwrap();
    let r = b.meta.get_vs_file(&s.id, &f.id).await.unwrap().unwrap();
    assert_eq!((r.status, r.chunks_indexed), (VsFileStatus::Completed, 10));
}

pub async fn keyword_indexing_is_queued_once_per_store(b: Backend) {
    // Replicas starting together each try to queue it: one job.
    let (s, other) = (new_store(&b, T0).await, new_store(&b, T0).await);
    let tries = join_all((0..8).map(|_| {
        let meta = b.meta.clone();
        let id = s.id.clone();
        tokio::spawn(async move {
            meta.enqueue_keyword_index(&id, &project(), T0)
                .await
                .unwrap()
        })
    }))
    .await;
    assert_eq!(
        tries.into_iter().filter(|t| *t.as_ref().unwrap()).count(),
        1
    );
    assert!(b
        .meta
        .enqueue_keyword_index(&other.id, &project(), T0)
        .await
        .unwrap());
    let jobs = claim_all(&b, T0).await;
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.kind == JobKind::IndexKeywords));
    // Not while it runs; again once it is done.
    assert!(!b
        .meta
        .enqueue_keyword_index(&s.id, &project(), T0)
        .await
        .unwrap());
    for j in &jobs {
        assert!(b.queue.finish(j, &JobEnd::Done, None, T0).await.unwrap());
    }
    assert!(b
        .meta
        .enqueue_keyword_index(&s.id, &project(), T0)
        .await
        .unwrap());
}

/// The first record of a model's collection holds, whoever races to write it; other models and
/// engines get records of their own.
pub async fn the_first_record_of_a_collection_holds(b: Backend) {
    let record =
        |engine: &str, model: &str, collection: &str, dims: u32, at: i64| IndexCollection {
            engine: engine.into(),
            model: model.into(),
            collection: collection.into(),
            dims,
            created_at: at,
        };
    assert!(b.meta.index_collections().await.unwrap().is_empty());
    let tries = join_all((0..8u32).map(|i| {
        let meta = b.meta.clone();
        let mine = record("qdrant", "m", &format!("c{i}"), 100 + i, T0 + i64::from(i));
        tokio::spawn(async move { meta.record_collection(&mine).await.unwrap() })
    }))
    .await;
    let held: Vec<IndexCollection> = tries.into_iter().map(|t| t.unwrap()).collect();
    assert!(held.iter().all(|h| *h == held[0]), "{held:?}");
    let first = &held[0];
    assert_eq!(first.collection, format!("c{}", first.dims - 100));
    // Later starts read the record, whatever they bring.
    let later = record("qdrant", "m", "other", 7, T0 + 100);
    assert_eq!(b.meta.record_collection(&later).await.unwrap(), *first);

    let embedded = record("embedded", "m", "index", 384, T0 + 200);
    assert_eq!(b.meta.record_collection(&embedded).await.unwrap(), embedded);
    let other_model = record("qdrant", "n", "q_n_8", 8, T0 + 300);
    assert_eq!(
        b.meta.record_collection(&other_model).await.unwrap(),
        other_model
    );
    assert_eq!(
        b.meta.index_collections().await.unwrap(),
        vec![first.clone(), embedded, other_model]
    );
}

// --- upload sessions, projects and keys, usage ---------------------------------------------------

pub async fn a_session_key_is_held_while_its_session_or_object_lives(b: Backend) {
    let other = ProjectId::parse("proj_other").unwrap();
    let u1 = upload(10, T0 + 100);
    assert!(b.meta.insert_session(&u1, "b", "k", T0).await.unwrap());
    let obj = b
        .meta
        .get_session(&project(), &u1.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            obj.bucket.as_str(),
            obj.key.as_str(),
            &obj.upload_id,
            obj.created_at
        ),
        ("b", "k", &u1.id, T0)
    );
    assert_eq!(b.meta.get_session(&other, &u1.id).await.unwrap(), None);
    assert_eq!(
        b.meta
            .get_upload(&project(), &u1.id)
            .await
            .unwrap()
            .as_ref(),
        Some(&u1)
    );
    // A live session holds the key; the refused one wrote nothing.
    let u2 = upload(10, T0 + 100);
    assert!(!b.meta.insert_session(&u2, "b", "k", T0).await.unwrap());
    assert_eq!(b.meta.get_upload(&project(), &u2.id).await.unwrap(), None);
    // An expired one does not: its name passes to the new session.
    let mut u3 = upload(10, T0 + 1000);
    u3.created_at = T0 + 100;
    assert!(b
        .meta
        .insert_session(&u3, "b", "k", T0 + 100)
        .await
        .unwrap());
    assert_eq!(b.meta.get_session(&project(), &u1.id).await.unwrap(), None);
    // Completed: an object, listed, and it holds the key.
    assert!(b
        .meta
        .list_buckets(&project(), T0 + 100)
        .await
        .unwrap()
        .is_empty());
    let f = file_at(T0 + 100);
    assert!(b
        .meta
        .complete_upload(&u3.id, &f, None, T0 + 100, NO_QUOTA)
        .await
        .unwrap());
    let (obj, file) = b
        .meta
        .get_bucket_object(&project(), "b", "k", T0 + 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (obj.upload_id, obj.created_at, file),
        (u3.id.clone(), T0 + 100, f.clone())
    );
    assert_eq!(
        b.meta
            .get_bucket_object(&other, "b", "k", T0 + 100)
            .await
            .unwrap(),
        None
    );
    assert!(!b
        .meta
        .insert_session(&upload(10, T0 + 1000), "b", "k", T0 + 100)
        .await
        .unwrap());
    for (bucket, key) in [("a", "z"), ("b", "a")] {
        let u = upload(10, T0 + 1000);
        assert!(b.meta.insert_session(&u, bucket, key, T0).await.unwrap());
        assert!(b
            .meta
            .complete_upload(&u.id, &file_at(T0), None, T0, NO_QUOTA)
            .await
            .unwrap());
    }
    assert_eq!(
        b.meta.list_buckets(&project(), T0 + 100).await.unwrap(),
        vec!["a".to_owned(), "b".to_owned()]
    );
    let keys: Vec<String> = b
        .meta
        .list_bucket(&project(), "b", T0 + 100)
        .await
        .unwrap()
        .into_iter()
        .map(|(o, _)| o.key)
        .collect();
    assert_eq!(keys, vec!["a".to_owned(), "k".to_owned()]);
    assert!(b
        .meta
        .list_buckets(&other, T0 + 100)
        .await
        .unwrap()
        .is_empty());
    // Its file deleted: no object, the key is free, and a new session takes it.
    b.meta
        .delete_file(&project(), &f.id, &Cascade::file_deleted(&f), T0 + 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.meta
            .get_bucket_object(&project(), "b", "k", T0 + 100)
            .await
            .unwrap(),
        None
    );
    let u6 = upload(10, T0 + 1000);
    assert!(b
        .meta
        .insert_session(&u6, "b", "k", T0 + 100)
        .await
        .unwrap());
    b.meta.delete_bucket_object(&u6.id).await.unwrap();
    assert_eq!(b.meta.get_session(&project(), &u6.id).await.unwrap(), None);

    // Sessions racing for one new key: one gets it.
    for round in 0..5 {
        let key = format!("race{round}");
        let won = join_all((0..8).map(|_| {
            let meta = b.meta.clone();
            let (u, key) = (upload(10, T0 + 1000), key.clone());
            tokio::spawn(async move { meta.insert_session(&u, "b", &key, T0).await.unwrap() })
        }))
        .await;
        let won = won.into_iter().filter(|w| *w.as_ref().unwrap()).count();
        assert_eq!(won, 1, "{key}");
    }
}

pub async fn projects_and_keys(b: Backend) {
    use ragstore::domain::{KeyId, KeyRecord, QuotaOverrides};
    // Racing creators of one project get the same one.
    let made = join_all((0..6).map(|_| {
        let meta = b.meta.clone();
        tokio::spawn(async move { meta.ensure_project("team", T0).await.unwrap() })
    }))
    .await;
    let team = made[0].as_ref().unwrap().clone();
    assert!(made.iter().all(|p| p.as_ref().unwrap() == &team));
    assert_eq!(team.quotas, QuotaOverrides::default());
    // By id, else by name: a project named like another's id does not shadow it.
    let shadow = b
        .meta
        .ensure_project(team.id.as_str(), T0 + 1)
        .await
        .unwrap();
    assert_ne!(shadow.id, team.id);
    assert_eq!(
        b.meta.find_project(team.id.as_str()).await.unwrap(),
        Some(team.clone())
    );
    assert_eq!(
        b.meta.find_project("team").await.unwrap(),
        Some(team.clone())
    );
    assert_eq!(b.meta.find_project("nobody").await.unwrap(), None);
    let names: Vec<String> = b
        .meta
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        vec!["default".to_owned(), "team".to_owned(), team.id.to_string()]
    );
    let q = QuotaOverrides {
        stored_bytes: Some(5),
        files_per_store: None,
        stores: Some(2),
    };
    assert!(b.meta.set_project_quotas(&team.id, &q).await.unwrap());
    assert_eq!(
        b.meta.find_project("team").await.unwrap().unwrap().quotas,
        q
    );
    let nobody = ProjectId::parse("proj_nobody").unwrap();
    assert!(!b.meta.set_project_quotas(&nobody, &q).await.unwrap());

    assert!(!b.meta.any_live_key().await.unwrap());
    let key = |created_at: i64| KeyRecord {
        id: KeyId::generate(),
        project_id: team.id.clone(),
        name: Some("nb".into()),
        hash: [7; 32],
        hint: "ab12".into(),
        created_at,
        revoked_at: None,
    };
    let (k1, k2) = (key(T0 + 1), key(T0));
    b.meta.insert_key(&k1).await.unwrap();
    b.meta.insert_key(&k2).await.unwrap();
    assert_eq!(b.meta.get_key(&k1.id).await.unwrap(), Some(k1.clone()));
    assert_eq!(
        b.meta.list_keys().await.unwrap(),
        vec![k2.clone(), k1.clone()]
    );
    assert!(b.meta.any_live_key().await.unwrap());
    assert!(b.meta.revoke_key(&k1.id, T0 + 5).await.unwrap());
    assert!(!b.meta.revoke_key(&k1.id, T0 + 6).await.unwrap());
    assert!(!b.meta.revoke_key(&KeyId::generate(), T0).await.unwrap());
    assert_eq!(
        b.meta.get_key(&k1.id).await.unwrap().unwrap().revoked_at,
        Some(T0 + 5)
    );
    assert!(b.meta.any_live_key().await.unwrap());
    assert!(b.meta.revoke_key(&k2.id, T0 + 5).await.unwrap());
    assert!(!b.meta.any_live_key().await.unwrap());
}

pub async fn usage_and_queue_stats_count_what_is_held(b: Backend) {
    let (f, g) = (new_file(&b, T0).await, new_file(&b, T0).await);
    b.meta
        .delete_file(&project(), &g.id, &Cascade::file_deleted(&g), T0)
        .await
        .unwrap()
        .unwrap();
    let (s, t, gone) = (
        new_store(&b, T0).await,
        new_store(&b, T0).await,
        new_store(&b, T0).await,
    );
    for (store, n) in [(&s, 3), (&t, 5), (&gone, 9)] {
        let h = new_file(&b, T0).await;
        attach(&b, store, &h.id, T0).await;
        b.meta
            .set_vs_file_progress(&store.id, &h.id, n, Some(n))
            .await
            .unwrap();
    }
    attach(&b, &s, &f.id, T0).await;
    b.meta
        .set_vs_file_progress(&s.id, &f.id, 1, None)
        .await
        .unwrap();
    b.meta
        .delete_vector_store(
            &project(),
            &gone.id,
            &Cascade::store_deleted(&project(), &gone.id),
            T0,
        )
        .await
        .unwrap();
    let usage = b.meta.usage(5).await.unwrap();
    assert_eq!(usage.stored_bytes, 40, "4 live files of 10 bytes");
    assert_eq!(usage.top_stores, vec![(t.id.clone(), 5), (s.id.clone(), 4)]);
    assert_eq!(
        b.meta.usage(1).await.unwrap().top_stores,
        vec![(t.id.clone(), 5)]
    );
    let (counts, _) = b.meta.store_stats(&s.id).await.unwrap();
    assert_eq!(counts.total(), 2);

    let stats = b.queue.stats(T0 + 30).await.unwrap();
    // Ingests of f and three files (the deleted store's cancelled), purges of g and the store.
    assert_eq!(stats.queued, 5, "{stats:?}");
    assert_eq!(stats.oldest_queued_secs, 30);
    let count = |kind: &str, status: &str| {
        stats
            .by_kind_status
            .iter()
            .find(|(k, s, _)| k == kind && s == status)
            .map_or(0, |(_, _, n)| *n)
    };
    assert_eq!(count("ingest", "queued"), 3);
    assert_eq!(count("ingest", "cancelled"), 1);
    assert_eq!(count("purge_file", "queued"), 1);
    assert_eq!(count("purge_store", "queued"), 1);
    let mut sorted = stats.by_kind_status.clone();
    sorted.sort();
    assert_eq!(sorted, stats.by_kind_status, "ordered by kind, then status");
    claim_all(&b, T0 + 30).await;
    let stats = b.queue.stats(T0 + 30).await.unwrap();
    assert_eq!((stats.queued, stats.oldest_queued_secs), (0, 0));
}

// --- quotas under concurrency ---------------------------------------------------------------------

/// `Some(x)` for a success, `None` for a refusal over `limit`; any other error fails the test.
fn within_quota<T>(r: ragstore::domain::Result<T>, limit: i64) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(ragstore::domain::Error::QuotaExceeded { limit: l, .. }) if l == limit => None,
        Err(e) => panic!("expected success or a quota error: {e:?}"),
    }
}

pub async fn racing_files_never_overrun_the_stored_bytes_quota(b: Backend) {
    // 100 bytes allowed: 16 uploaded files and 8 completed uploads of 10 bytes each race.
    let uploads: Vec<UploadRecord> = (0..8).map(|_| upload(10, T0 + 3600)).collect();
    for u in &uploads {
        b.meta.insert_upload(u).await.unwrap();
    }
    let tasks = (0..24).map(|i| {
        let meta = b.meta.clone();
        let f = file_at(T0);
        let u = uploads.get(i).map(|u| u.id.clone());
        tokio::spawn(async move {
            let job = extract_job(&f);
            let r = match &u {
                Some(u) => meta
                    .complete_upload(u, &f, Some(&job), T0, 100)
                    .await
                    .map(|done| assert!(done, "a pending upload")),
                None => meta.insert_file(&f, Some(&job), 100).await,
            };
            within_quota(r, 100).map(|()| f.id)
        })
    });
    let stored: Vec<FileId> = join_all(tasks)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(stored.len(), 10, "100 bytes fit, in files of 10");
    assert_eq!(b.meta.stored_bytes(&project()).await.unwrap(), 100);
    // Nothing of a refused file remains: its row, its job, its upload's completion.
    let jobs = claim_all(&b, T0).await;
    assert_eq!(jobs.len(), 10, "one extraction job per stored file");
    for j in &jobs {
        assert!(stored.contains(j.file_id.as_ref().unwrap()));
    }
    let mut completed = 0;
    for u in &uploads {
        let got = b.meta.get_upload(&project(), &u.id).await.unwrap().unwrap();
        match got.status {
            UploadStatus::Completed => {
                completed += 1;
                assert!(stored.contains(got.file_id.as_ref().unwrap()));
            }
            status => assert_eq!(status, UploadStatus::Pending, "refused: still pending"),
        }
    }
    assert!(completed <= 8);
}

pub async fn racing_attaches_never_overrun_files_per_store(b: Backend) {
    // 6 places: 16 single attaches and 4 batches of 2 files race for them.
    let s = new_store(&b, T0).await;
    let mut singles = Vec::new();
    for _ in 0..16 {
        singles.push(new_file(&b, T0).await.id);
    }
    let mut batches = Vec::new();
    for _ in 0..4 {
        let batch = FileBatchRecord {
            id: FileBatchId::generate(),
            vector_store_id: s.id.clone(),
            project_id: project(),
            created_at: T0,
            cancelled: false,
        };
        let rows = vec![
            link(&s, &new_file(&b, T0).await.id, Some(&batch.id)),
            link(&s, &new_file(&b, T0).await.id, Some(&batch.id)),
        ];
        batches.push((batch, rows));
    }
    let single_tasks = singles.iter().map(|f| {
        let meta = b.meta.clone();
        let (row, job) = link(&s, f, None);
        tokio::spawn(async move {
            match within_quota(meta.attach_file(&row, &job, T0, 6).await, 6) {
                Some(Attached::New(_)) => 1,
                None => 0,
                Some(other) => panic!("{other:?}"),
            }
        })
    });
    let batch_tasks = batches.iter().map(|(batch, rows)| {
        let meta = b.meta.clone();
        let (batch, rows) = (batch.clone(), rows.clone());
        tokio::spawn(async move {
            match within_quota(meta.create_batch(&batch, &rows, T0, 6).await, 6) {
                Some(gone) => {
                    assert!(gone.is_empty());
                    2
                }
                None => 0,
            }
        })
    });
    let (a, c) = futures_util::join!(join_all(single_tasks), join_all(batch_tasks));
    let attached: usize = a.into_iter().chain(c).map(|r| r.unwrap()).sum();
    // Singles keep attaching until the store is full, so it ends exactly full.
    assert_eq!(attached, 6);
    let w = ListWindow {
        order: Order::Asc,
        after: None,
        before: None,
        limit: 100,
    };
    let listed = b.meta.list_vs_files(&s.id, None, None, &w).await.unwrap();
    assert_eq!(listed.len(), 6);
    assert_eq!(claim_all(&b, T0).await.len(), 6, "one ingest job per file");
    for (batch, _) in &batches {
        let there = b.meta.get_batch(&s.id, &batch.id).await.unwrap().is_some();
        let members = listed
            .iter()
            .filter(|f| f.batch_id.as_ref() == Some(&batch.id))
            .count();
        assert_eq!(
            members,
            if there { 2 } else { 0 },
            "a refused batch left nothing"
        );
    }
}

pub async fn racing_stores_never_overrun_the_store_quota(b: Backend) {
    let quotas = Quotas {
        stores: 3,
        ..Quotas::DEFAULT
    };
    let tasks = (0..12).map(|_| {
        let meta = b.meta.clone();
        let s = store_at(T0);
        tokio::spawn(async move {
            within_quota(meta.create_vector_store(&s, &[], T0, &quotas).await, 3).map(|_| s.id)
        })
    });
    let created: BTreeSet<VectorStoreId> = join_all(tasks)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(created.len(), 3);
    let live: BTreeSet<VectorStoreId> = b
        .meta
        .live_stores()
        .await
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(live, created);
}

/// One `#[tokio::test]` per contract check for a backend opened by `$open`.
macro_rules! contract_tests {
    ($backend:ident, $open:ident, [$($check:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let test = concat!(stringify!($backend), "::", stringify!($check));
                    if let Some(backend) = super::$open(test).await {
                        super::$check(backend).await
                    }
                }
            )*
        }
    };
}

macro_rules! all_contract_tests {
    ($backend:ident, $open:ident) => {
        contract_tests!(
            $backend,
            $open,
            [
                files_are_visible_until_deleted_or_expired,
                file_pages_never_skip_or_repeat_under_created_at_ties,
                deleting_a_file_applies_its_cascade_atomically,
                racing_parts_never_overfill_an_upload,
                an_upload_completes_once,
                store_pages_never_skip_or_repeat_under_created_at_ties,
                touching_a_store_never_undoes_a_modify,
                attach_is_checked_and_written_atomically,
                an_attach_racing_a_delete_leaves_no_link,
                detaching_and_deleting_a_store_apply_their_cascades,
                cancelling_a_batch_stops_only_its_unfinished_files,
                a_purge_waits_until_the_jobs_it_undoes_have_stopped,
                store_lists_filter_by_batch_and_status,
                two_claimers_never_get_the_same_job,
                racing_claims_never_run_a_job_beside_one_it_waits_for,
                a_delete_racing_a_finish_leaves_both_answered,
                purges_are_claimed_before_a_backlog,
                a_stale_claim_cannot_heartbeat_or_finish,
                only_expired_leases_are_requeued,
                job_ends_set_the_file_outcome_and_retries_wait,
                caches_store_text_chunks_and_embeddings_per_model,
                cache_writes_for_a_deleted_file_are_refused,
                progress_is_recorded_while_in_progress,
                keyword_indexing_is_queued_once_per_store,
                the_first_record_of_a_collection_holds,
                a_session_key_is_held_while_its_session_or_object_lives,
                projects_and_keys,
                usage_and_queue_stats_count_what_is_held,
                racing_files_never_overrun_the_stored_bytes_quota,
                racing_attaches_never_overrun_files_per_store,
                racing_stores_never_overrun_the_store_quota,
            ]
        );
    };
}

all_contract_tests!(sqlite_backend, sqlite);
all_contract_tests!(postgres_backend, postgres);
