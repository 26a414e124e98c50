//! Three `ragstore serve` processes sharing one PostgreSQL database, one bucket prefix and one
//! Qdrant collection prefix, each with its own workers: a batch of files uploaded through all
//! three, one replica SIGKILLed while it holds an ingest job. Every file ends `completed` exactly
//! once (the points in Qdrant are exactly the chunks the API reports), the killed replica's job
//! is finished by another once its lease ends, a file uploaded through one replica reads back
//! through another, and a file deleted through one is gone at once from searches on every other.
//! Needs the three engines (`RAGSTORE_TEST_DATABASE_URL`, `RAGSTORE_TEST_S3_URL`,
//! `RAGSTORE_TEST_QDRANT_URL`); skips without them, fails without them under CI.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::StreamExt;
use ragstore::domain::{FileId, VectorStoreId};
use ragstore::index::qdrant::{QdrantIndex, QdrantOptions};
use ragstore::index::VectorIndex;
use serde_json::{json, Value};
use sqlx::Connection;

const FILES: usize = 100;
/// Short, so a killed replica's job is taken over within seconds (the default is minutes).
const LEASE_SECS: u64 = 3;
/// The local model, which names the collection.
const MODEL: &str = "all-MiniLM-L6-v2";
const DIMS: usize = 384;

/// What the replicas share.
struct Shared {
    database_url: String,
    storage_url: String,
    qdrant: QdrantOptions,
}

/// One `ragstore serve` process (killed if the test ends first).
struct Replica {
    child: Child,
    base: String,
    data: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts a replica on `data` (its own: the lock, in-flight uploads); it is ready once
    /// [`Replica::ready`] returns.
    fn start(shared: &Shared, data: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_ragstore"))
            .args(["serve", "--role", "all", "--addr", &addr])
            .arg("--data-dir")
            .arg(data)
            .arg("--models-dir")
            .arg(crate::models_dir())
            .args(["--database-url", &shared.database_url])
            .args(["--storage-url", &shared.storage_url])
            .args(["--qdrant-url", &shared.qdrant.url])
            .args([
                "--qdrant-collection-prefix",
                &shared.qdrant.collection_prefix,
            ])
            .args(["--workers", "2", "--embed-threads", "1"])
            .args(["--job-lease-secs", &LEASE_SECS.to_string()])
            .args(["--reaper-interval-secs", "0.5"])
            // 100 uploads a minute is the default limit; this test is not about it.
            .args(["--rate-uploads", "0", "--rate-deletions", "0"])
            .env("RAGSTORE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Replica {
            child,
            base: format!("http://{addr}"),
            data: data.to_path_buf(),
        }
    }

    /// Waits (up to two minutes: each loads the model, on a busy machine) until it answers.
    async fn ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("replica on {} exited at start: {status}", self.base);
            }
            let res = http.get(format!("{}/ready", self.base)).send().await;
            if res.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replica on {} never became ready", self.base);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    }
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let res = http.get(&url).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let res = http.post(&url).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The ids of the files a search through `r` finds for `query` (its default mode).
async fn search(http: &reqwest::Client, r: &Replica, vs: &str, query: &str) -> Vec<String> {
    let (status, hits) = post(
        http,
        r.url(&format!("/v1/vector_stores/{vs}/search")),
        json!({"query": query, "max_num_results": 10}),
    )
    .await;
    assert_eq!(status, 200, "{hits}");
    hits["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["file_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A distinct little note per `i`: its own subject, place and code word.
fn note(i: usize) -> String {
    const ANIMALS: [&str; 10] = [
        "heron", "badger", "otter", "lynx", "kestrel", "marten", "newt", "ibex", "plover", "vole",
    ];
    const PLACES: [&str; 10] = [
        "a salt marsh",
        "an alpine pass",
        "a beech wood",
        "a river delta",
        "a limestone gorge",
        "a peat bog",
        "a shingle beach",
        "a pine forest",
        "a chalk down",
        "a volcanic crater",
    ];
    format!(
        "Field note {i}: a {animal} was seen in {place} {hour} hours after dawn, logged under \
         the code word quorvex{i}. The observer counted {count} tracks near the {place_word}.",
        animal = ANIMALS[i % 10],
        place = PLACES[(i / 10) % 10],
        hour = i % 7 + 1,
        count = 3 * i + 2,
        place_word = PLACES[(i * 3) % 10].rsplit(' ').next().unwrap(),
    )
}

/// Uploads `text` through `r`; the file id.
async fn upload(http: &reqwest::Client, r: &Replica, name: &str, text: &str) -> String {
    let form = reqwest::multipart::Form::new()
        .text("purpose", "assistants")
        .part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name(name.to_owned()),
        );
    let res = http
        .post(r.url("/v1/files"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "upload {name} through {}", r.base);
    let file: Value = res.json().await.unwrap();
    file["id"].as_str().unwrap().to_owned()
}

/// Every file of the store, through `r` (pages of 100).
async fn store_files(http: &reqwest::Client, r: &Replica, vs: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = get(
            http,
            r.url(&format!("/v1/vector_stores/{vs}/files?limit=100{after}")),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        out.extend(data.iter().cloned());
        if page["has_more"] != true {
            return out;
        }
        after = format!("&after={}", data.last().unwrap()["id"].as_str().unwrap());
    }
}

/// The jobs `pid`'s workers hold now, and whether one is an ingest job of the store.
async fn held_by(db: &mut sqlx::PgConnection, vs: &str, pid: u32) -> (Vec<i64>, bool) {
    let held: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT id, kind, vector_store_id FROM jobs WHERE status = 'running' \
         AND locked_by LIKE $1 ORDER BY id",
    )
    .bind(format!("p{pid}-%"))
    .fetch_all(db)
    .await
    .unwrap();
    let ingesting = held
        .iter()
        .any(|(_, kind, store)| kind == "ingest" && store.as_deref() == Some(vs));
    (held.into_iter().map(|(id, _, _)| id).collect(), ingesting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_work_survive_a_kill_and_never_resurrect_a_deleted_file() {
    let name = "replicas_share_the_work_survive_a_kill_and_never_resurrect_a_deleted_file";
    let Some(database_url) = crate::pg::fresh_database(name).await else {
        return;
    };
    let Some(storage_url) = crate::storage_contract::s3_test_url() else {
        return;
    };
    let Some(qdrant_url) = crate::qdrant_url(name) else {
        return;
    };
    let started = Instant::now();
    let shared = Shared {
        database_url: database_url.clone(),
        storage_url,
        qdrant: crate::index_contract::qdrant_options(&qdrant_url, "replicas"),
    };
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    // Three replicas, started together (they migrate the database and create the collection
    // at the same moment).
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::start(&shared, &dir.path().join(format!("r{i}"))))
        .collect();
    for r in &mut replicas {
        r.ready(&http).await;
    }

    // The files, uploaded round-robin, a few at a time.
    let texts: Vec<String> = (0..FILES).map(note).collect();
    let ids: Vec<String> = futures_util::stream::iter(texts.iter().enumerate())
        .map(|(i, text)| {
            let (http, r) = (&http, &replicas[i % 3]);
            async move { upload(http, r, &format!("note-{i:03}.txt"), text).await }
        })
        .buffered(6)
        .collect()
        .await;
    let text_of: HashMap<&str, &str> = ids
        .iter()
        .map(String::as_str)
        .zip(texts.iter().map(String::as_str))
        .collect();

    // One store, and the batch of every file, through the first replica.
    let (status, store) = post(
        &http,
        replicas[0].url("/v1/vector_stores"),
        json!({"name": "notes"}),
    )
    .await;
    assert_eq!(status, 200, "{store}");
    let vs = store["id"].as_str().unwrap().to_owned();
    let (status, batch) = post(
        &http,
        replicas[0].url(&format!("/v1/vector_stores/{vs}/file_batches")),
        json!({"file_ids": ids}),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let batch = batch["id"].as_str().unwrap().to_owned();

    // Meanwhile two more files go in and out while the batch ingests: uploaded through one
    // replica, attached through another, deleted through the third.
    let mut doomed = Vec::new();
    for i in 0..2 {
        let text = format!("Doomed note {i}: the code word is vanishxyz{i}, never to be found.");
        let id = upload(&http, &replicas[i + 1], &format!("doomed-{i}.txt"), &text).await;
        let (status, body) = post(
            &http,
            replicas[(i + 2) % 3].url(&format!("/v1/vector_stores/{vs}/files")),
            json!({"file_id": id}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let res = http
            .delete(replicas[i].url(&format!("/v1/files/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        doomed.push((id, text));
    }

    // The third replica is SIGKILLed while it holds ingest jobs: frozen (SIGSTOP) so what it
    // holds cannot change while we look, then killed if it holds any.
    let mut db = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let victim = 2;
    let pid = replicas[victim].child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let orphaned = loop {
        assert!(
            Instant::now() < deadline,
            "the third replica never held an ingest job"
        );
        if held_by(&mut db, &vs, pid).await.1 {
            replicas[victim].signal("-STOP");
            let (held, ingesting) = held_by(&mut db, &vs, pid).await;
            if ingesting {
                replicas[victim].child.kill().unwrap();
                replicas[victim].child.wait().unwrap();
                break held;
            }
            replicas[victim].signal("-CONT");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let (_, counts) = get(
        &http,
        replicas[0].url(&format!("/v1/vector_stores/{vs}/file_batches/{batch}")),
    )
    .await;
    let at_kill = counts["file_counts"].clone();
    eprintln!(
        "killed replica {victim} holding jobs {orphaned:?}; batch then {at_kill} ({:?} in)",
        started.elapsed()
    );
    assert!(
        at_kill["completed"].as_i64().unwrap() < FILES as i64,
        "killed mid-batch: {at_kill}"
    );
    // It comes back on the same data dir while the others work (its start-up sweep must
    // leave their jobs and blobs alone).
    let data = replicas[victim].data.clone();
    replicas[victim] = Replica::start(&shared, &data);

    // The batch completes: every file, none failed.
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let (status, b) = get(
            &http,
            replicas[0].url(&format!("/v1/vector_stores/{vs}/file_batches/{batch}")),
        )
        .await;
        assert_eq!(status, 200, "{b}");
        if b["status"] != "in_progress" {
            break b;
        }
        assert!(Instant::now() < deadline, "batch never finished: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("batch done in {:?}", started.elapsed());
    assert_eq!(done["status"], "completed", "{done}");
    let all_completed = json!({"in_progress": 0, "completed": FILES, "failed": 0,
                               "cancelled": 0, "total": FILES});
    assert_eq!(done["file_counts"], all_completed, "{done}");
    replicas[victim].ready(&http).await;

    // Every replica sees the same: each file completed, all its chunks indexed.
    let mut chunks: HashMap<String, u64> = HashMap::new();
    for r in &replicas {
        let (status, b) = get(
            &http,
            r.url(&format!("/v1/vector_stores/{vs}/file_batches/{batch}")),
        )
        .await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["file_counts"], all_completed, "through {}", r.base);
        let (_, s) = get(&http, r.url(&format!("/v1/vector_stores/{vs}"))).await;
        assert_eq!(s["file_counts"], all_completed, "through {}: {s}", r.base);
        let files = store_files(&http, r, &vs).await;
        assert_eq!(files.len(), FILES, "through {}", r.base);
        for f in files {
            let id = f["id"].as_str().unwrap().to_owned();
            assert_eq!(f["status"], "completed", "{f}");
            let total = f["progress"]["chunks_total"]
                .as_u64()
                .expect("chunks_total");
            assert!(total >= 1, "{f}");
            assert_eq!(f["progress"]["chunks_indexed"], total, "{f}");
            let seen = chunks.entry(id).or_insert(total);
            assert_eq!(*seen, total, "replicas disagree on {f}");
        }
    }
    assert_eq!(chunks.len(), FILES);

    // Exactly once: the collection holds each file's chunks, no more, no fewer.
    let qdrant = QdrantIndex::open(&shared.qdrant, MODEL, DIMS)
        .await
        .unwrap();
    let store = VectorStoreId::parse(&vs).unwrap();
    for (id, n) in &chunks {
        let file = FileId::parse(id).unwrap();
        let points = qdrant.count(Some(&store), Some(&file)).await.unwrap();
        assert_eq!(points, *n, "points of {id}");
    }
    let total: u64 = chunks.values().sum();
    assert_eq!(qdrant.count(Some(&store), None).await.unwrap(), total);

    // Every job ran exactly once: one extract job (at upload) and one ingest job per file,
    // each done, claimed once; but those the killed replica held, claimed again after their
    // lease ended and finished by another.
    let jobs: Vec<(i64, String, String, String, i64)> = sqlx::query_as(
        "SELECT id, kind, file_id, status, attempts FROM jobs \
         WHERE kind IN ('extract', 'ingest') ORDER BY id",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut per_file: HashMap<(&str, &str), usize> = HashMap::new();
    for (id, kind, file, status, attempts) in &jobs {
        if !chunks.contains_key(file) {
            assert!(
                doomed.iter().any(|(d, _)| d == file),
                "job {id} of an unknown file"
            );
            assert!(
                ["done", "cancelled"].contains(&status.as_str()),
                "{kind} job {id} of a deleted file: {status}"
            );
            continue;
        }
        *per_file.entry((kind, file)).or_default() += 1;
        assert_eq!(status, "done", "{kind} job {id} of {file}");
        if orphaned.contains(id) {
            assert!(
                *attempts >= 2,
                "{kind} job {id} of the killed replica never re-ran"
            );
        } else {
            assert_eq!(*attempts, 1, "{kind} job {id} of {file} ran more than once");
        }
    }
    assert_eq!(per_file.len(), 2 * FILES, "{per_file:?}");
    assert!(per_file.values().all(|&n| n == 1), "{per_file:?}");

    // The files deleted mid-batch are nowhere: not listed, not found, no points left.
    for (id, text) in &doomed {
        for r in &replicas {
            let (status, _) = get(&http, r.url(&format!("/v1/files/{id}"))).await;
            assert_eq!(status, 404, "{id} through {}", r.base);
            assert!(!search(&http, r, &vs, text).await.contains(id));
        }
    }

    // An upload through one replica reads back through another.
    let reads = ids.iter().enumerate().map(|(i, id)| {
        let (http, r, want) = (&http, &replicas[(i + 1) % 3], text_of[id.as_str()]);
        async move {
            let res = http
                .get(r.url(&format!("/v1/files/{id}/content")))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{id} through {}", r.base);
            assert_eq!(res.text().await.unwrap(), want, "{id} through {}", r.base);
        }
    });
    join_all(reads).await;

    // A file deleted through one replica is gone at once from searches through every other.
    let mut deleted_chunks = 0;
    for (k, id) in ids.iter().take(3).enumerate() {
        let text = text_of[id.as_str()];
        for r in &replicas {
            let found = search(&http, r, &vs, text).await;
            assert_eq!(
                found.first(),
                Some(id),
                "before the delete, through {}",
                r.base
            );
        }
        let res = http
            .delete(replicas[k].url(&format!("/v1/files/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        // Right after the delete returns, through every replica at once.
        let searched = join_all(replicas.iter().map(|r| {
            let (http, vs) = (&http, &vs);
            async move { (r.base.clone(), search(http, r, vs, text).await) }
        }))
        .await;
        for (base, found) in searched {
            assert!(
                !found.contains(id),
                "{id} deleted, still found through {base}"
            );
        }
        for r in &replicas {
            let (status, _) = get(&http, r.url(&format!("/v1/files/{id}"))).await;
            assert_eq!(status, 404, "{id} through {}", r.base);
        }
        deleted_chunks += chunks[id.as_str()];
    }
    // And its points are purged (by whichever replica's worker), the others' kept.
    let deadline = Instant::now() + Duration::from_secs(30);
    let left = total - deleted_chunks;
    while qdrant.count(Some(&store), None).await.unwrap() != left {
        assert!(
            Instant::now() < deadline,
            "deleted files' points never purged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (id, _) in &doomed {
        let file = FileId::parse(id).unwrap();
        assert_eq!(qdrant.count(None, Some(&file)).await.unwrap(), 0, "{id}");
    }
    let (_, s) = get(&http, replicas[1].url(&format!("/v1/vector_stores/{vs}"))).await;
    assert_eq!(s["file_counts"]["completed"], FILES - 3, "{s}");

    for r in &replicas {
        r.signal("-TERM");
    }
    for mut r in replicas {
        assert!(r.child.wait().unwrap().success(), "graceful shutdown");
    }
    qdrant.drop_collection().await.unwrap();
    eprintln!("replicas test took {:?}", started.elapsed());
}
