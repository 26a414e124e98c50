//! What PostgreSQL adds beyond the Metadata contract (which `metadata_contract.rs` runs on it):
//! migrations when replicas start together, job notifications across processes, and the server
//! and its admin commands keeping their metadata there. Each test has a fresh database and
//! skips (or fails under CI) without a cluster: see `pg.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use ragstore::db::postgres::PgMetadata;
use ragstore::db::{FileMetadata, Wakeup};
use ragstore::domain::{FileId, FileRecord, FileStatus, JobKind, NewJob, ProjectId, Purpose};
use serde_json::json;
use sqlx::Connection;

use crate::pg::fresh_database;
use crate::{client_with_key, TestApp};

/// How long an idle worker waits for a wake-up before it polls the queue anyway
/// (`ingest::worker::spawn_workers`).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

fn file_with_job() -> (FileRecord, NewJob) {
    let id = FileId::generate();
    let job = NewJob {
        kind: JobKind::Extract,
        project_id: ProjectId::default_project(),
        file_id: Some(id.clone()),
        vector_store_id: None,
    };
    let file = FileRecord {
        storage_key: FileRecord::storage_key_for(&id),
        id,
        project_id: ProjectId::default_project(),
        filename: "a.txt".into(),
        purpose: Purpose::Assistants,
        bytes: 1,
        created_at: 1_700_000_000,
        expires_at: None,
        status: FileStatus::Uploaded,
        status_details: None,
    };
    (file, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let Some(url) = fresh_database("replicas_starting_together_migrate_once").await else {
        return;
    };
    let replicas = join_all((0..6).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { PgMetadata::connect(&url, None).await })
    }))
    .await;
    for r in replicas {
        let db = r.unwrap().unwrap();
        db.ping().await.unwrap();
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(applied.len(), files, "each migration applied once");
    assert!(applied.iter().all(|(_, ok)| *ok), "{applied:?}");
    // The same versions as SQLite's migrations, file for file.
    let sqlite = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    assert_eq!(files, sqlite);
}

/// The pid of the connection listening for jobs in this database (one replica listens).
async fn listener_pid(conn: &mut sqlx::PgConnection) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND query LIKE 'LISTEN \"ragstore_jobs\"%'",
    )
    .fetch_optional(conn)
    .await
    .unwrap()
}

/// Waits for a wake-up of `wakeup` for up to `within`; the time it took.
async fn woken(wakeup: &Wakeup, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    tokio::time::timeout(within, wakeup.notified())
        .await
        .ok()
        .map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_written_by_one_replica_wakes_the_workers_of_another() {
    let Some(url) =
        fresh_database("a_job_written_by_one_replica_wakes_the_workers_of_another").await
    else {
        return;
    };
    // Two replicas: `api` only writes, `worker` listens.
    let api = PgMetadata::connect(&url, None).await.unwrap();
    let wakeup = Wakeup::new();
    let _worker = PgMetadata::connect(&url, Some(wakeup.clone()))
        .await
        .unwrap();
    assert_eq!(
        woken(&wakeup, Duration::from_millis(200)).await,
        None,
        "nothing woke it yet"
    );

    // Written by the other replica: the wake-up comes on commit, well before a poll would.
    let waiting = wakeup.notified();
    tokio::pin!(waiting);
    waiting.as_mut().enable();
    let (file, job) = file_with_job();
    let written = Instant::now();
    api.insert_file(&file, Some(&job), i64::MAX).await.unwrap();
    tokio::time::timeout(POLL_INTERVAL, waiting)
        .await
        .expect("woken before the workers' poll interval");
    let latency = written.elapsed();
    assert!(latency < POLL_INTERVAL, "{latency:?}");

    // A file without a job wakes nobody.
    let (quiet, _) = file_with_job();
    api.insert_file(&quiet, None, i64::MAX).await.unwrap();
    assert_eq!(woken(&wakeup, Duration::from_millis(300)).await, None);

    // The listening connection dies: the replica listens again on a new one, and wakes its
    // workers meanwhile (what was notified in between is lost with the connection).
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let pid = listener_pid(&mut admin)
        .await
        .expect("a listening connection");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);
    assert!(
        woken(&wakeup, Duration::from_secs(10)).await.is_some(),
        "a lost connection wakes the workers"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match listener_pid(&mut admin).await {
            Some(new) if new != pid => break,
            _ if Instant::now() > deadline => panic!("never listened again"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let (file, job) = file_with_job();
    api.insert_file(&file, Some(&job), i64::MAX).await.unwrap();
    let latency = woken(&wakeup, POLL_INTERVAL)
        .await
        .expect("woken through the new connection");
    assert!(latency < POLL_INTERVAL, "{latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_work_on_postgres() {
    let Some(url) = fresh_database("the_admin_commands_work_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("unused");
    let db = [
        "--database-url",
        url.as_str(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let args: Vec<String> = db.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::keys::the_admin_commands_work_on(&args);
    })
    .await
    .unwrap();
    assert!(!data.exists(), "nothing written in --data-dir");
    // What they wrote is in PostgreSQL.
    let meta = PgMetadata::connect(&url, None).await.unwrap();
    use ragstore::db::AuthMetadata;
    let keys = meta.list_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].revoked_at.is_some());
    let research = meta.find_project("research").await.unwrap().unwrap();
    assert_eq!(research.quotas.stores, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_keeps_its_metadata_in_postgres() {
    let Some(url) = fresh_database("the_server_keeps_its_metadata_in_postgres").await else {
        return;
    };
    // An operator creates a key with the admin command, then starts the server on the same
    // database: the server knows the key.
    let (ok, key, said) = crate::keys::admin(
        &["--database-url", &url],
        &["keys", "create", "--project", "team"],
    );
    assert!(ok, "{said}");
    let key = key.trim().to_owned();
    let app = TestApp::spawn_with(|c| c.database_url = Some(url.clone())).await;
    let (status, _) = app.get_json("/v1/files").await;
    assert_eq!(status, 401, "keys exist: no key, no entry");
    let client = client_with_key(&key);

    // Upload, attach, ingest (the worker claims from PostgreSQL), search, delete.
    let form = reqwest::multipart::Form::new()
        .text("purpose", "assistants")
        .part(
            "file",
            reqwest::multipart::Part::bytes(
                b"Basalt forms when lava cools quickly at the surface.".to_vec(),
            )
            .file_name("basalt.txt"),
        );
    let res = client
        .post(app.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let file: serde_json::Value = res.json().await.unwrap();
    let file_id = file["id"].as_str().unwrap().to_owned();
    let res = client
        .post(app.url("/v1/vector_stores"))
        .json(&json!({"name": "rocks", "file_ids": [file_id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let store: serde_json::Value = res.json().await.unwrap();
    let vs = store["id"].as_str().unwrap().to_owned();
    assert!(app.drain().await >= 1);
    let res = client
        .get(app.url(&format!("/v1/vector_stores/{vs}/files/{file_id}")))
        .send()
        .await
        .unwrap();
    let vs_file: serde_json::Value = res.json().await.unwrap();
    assert_eq!(vs_file["status"], "completed", "{vs_file}");
    let search = || async {
        let res = client
            .post(app.url(&format!("/v1/vector_stores/{vs}/search")))
            .json(&json!({"query": "how does basalt form?"}))
            .send()
            .await
            .unwrap();
        res.json::<serde_json::Value>().await.unwrap()
    };
    let hits = search().await;
    assert_eq!(hits["data"][0]["file_id"], file_id.as_str(), "{hits}");
    let res = client
        .delete(app.url(&format!("/v1/files/{file_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(search().await["data"], json!([]), "deleted: gone at once");

    // The rows are in PostgreSQL, and no SQLite database was made in the data dir.
    assert!(!app.data_dir().join("ragstore.db").exists());
    let meta: Arc<PgMetadata> = Arc::new(PgMetadata::connect(&url, None).await.unwrap());
    use ragstore::db::StoreMetadata;
    let stores = meta.live_stores().await.unwrap();
    assert_eq!(stores.len(), 1);
    assert_eq!(stores[0].0.as_str(), vs);
    app.stop().await;
}
