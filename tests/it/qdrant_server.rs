//! The real app on a Qdrant server (`--qdrant-url`): upload, attach, ingest, search in every
//! mode with filters, delete; answered as the embedded index answers. And `ragstore
//! migrate-index` both ways, interrupted and resumed. Needs a server at
//! `RAGSTORE_TEST_QDRANT_URL` (see `crate::qdrant_url`).

use std::process::Command;

use crate::index_contract::qdrant_options;
use crate::vector_stores::DOCS;
use crate::TestApp;
use ragstore::domain::{FileId, VectorStoreId};
use ragstore::index::edge::{EdgeIndex, EdgeOptions};
use ragstore::index::migrate::copy_points;
use ragstore::index::qdrant::{QdrantIndex, QdrantOptions};
use ragstore::index::{Leg, SearchQuery, VectorIndex};
use serde_json::{json, Value};

/// The local model, which names the collection.
const MODEL: &str = "all-MiniLM-L6-v2";
const DIMS: usize = 384;

async fn qdrant_app(options: &QdrantOptions) -> TestApp {
    let (url, prefix) = (options.url.clone(), options.collection_prefix.clone());
    TestApp::spawn_with(move |c| {
        c.qdrant.url = Some(url);
        c.qdrant.collection_prefix = prefix;
    })
    .await
}

/// The topic documents and one of identifiers, each attached with its `topic` and a `year`;
/// drained. Returns the store and the files by name.
async fn ingest(app: &TestApp) -> (String, Vec<(String, String)>) {
    let mut docs: Vec<(&str, &str)> = DOCS.to_vec();
    docs.push((
        "apt.txt",
        "Run dpkg-reconfigure tzdata to change the time zone; apt-get install \
         --no-install-recommends keeps an install small.",
    ));
    let (status, vs) = app.post_json("/v1/vector_stores", json!({})).await;
    assert_eq!(status, 200, "{vs}");
    let vs = vs["id"].as_str().unwrap().to_owned();
    let mut files = Vec::new();
    for (i, (name, text)) in docs.iter().enumerate() {
        let f = app
            .upload(name, text.as_bytes().to_vec(), "assistants")
            .await;
        let id = f["id"].as_str().unwrap().to_owned();
        let topic = name.split('.').next().unwrap();
        let (status, body) = app
            .post_json(
                &format!("/v1/vector_stores/{vs}/files"),
                json!({"file_id": id, "attributes": {"topic": topic, "year": 2000 + i}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        files.push((name.to_string(), id));
    }
    app.drain().await;
    for (name, id) in &files {
        let (_, f) = app
            .get_json(&format!("/v1/vector_stores/{vs}/files/{id}"))
            .await;
        assert_eq!(f["status"], "completed", "{name}: {f}");
    }
    (vs, files)
}

/// Searches in each mode, with filters, as (file name, score) lists.
async fn searches(app: &TestApp, vs: &str) -> Vec<Vec<(String, f64)>> {
    let bodies = [
        json!({"query": "dpkg-reconfigure", "search_mode": "hybrid",
               "filters": {"type": "eq", "key": "topic", "value": "apt"}}),
        json!({"query": "How do plants turn sunlight into food?", "search_mode": "vector",
               "filters": {"type": "in", "key": "topic", "value": ["photosynthesis", "bread"]}}),
        json!({"query": "eruptions of ash and lava", "search_mode": "keyword",
               "filters": {"type": "ne", "key": "topic", "value": "rome"}}),
        json!({"query": "Who was the first emperor?", "search_mode": "hybrid",
               "filters": {"type": "gte", "key": "year", "value": 2001}}),
        json!({"query": "congestion window after packet loss", "search_mode": "keyword"}),
    ];
    let mut out = Vec::new();
    for body in bodies {
        let (status, res) = app
            .post_json(&format!("/v1/vector_stores/{vs}/search"), body.clone())
            .await;
        assert_eq!(status, 200, "{body}: {res}");
        out.push(
            res["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    (
                        h["filename"].as_str().unwrap().to_owned(),
                        h["score"].as_f64().unwrap(),
                    )
                })
                .collect(),
        );
    }
    out
}

fn names(hits: &[(String, f64)]) -> Vec<&str> {
    hits.iter().map(|(n, _)| n.as_str()).collect()
}

/// The same files with the same scores (but for float noise), so in the same order but among
/// equal scores, which each engine breaks its own way.
fn assert_same(got: &[Vec<(String, f64)>], want: &[Vec<(String, f64)>]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "{g:?} vs {w:?}");
        for ((_, a), (_, b)) in g.iter().zip(w) {
            assert!((a - b).abs() < 1e-3, "{g:?} vs {w:?}");
        }
        for (name, a) in g {
            let b = w.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
            assert!(b.is_some_and(|b| (a - b).abs() < 1e-3), "{g:?} vs {w:?}");
        }
    }
}

async fn drop_collection(options: &QdrantOptions) {
    let idx = QdrantIndex::open(options, MODEL, DIMS).await.unwrap();
    idx.drop_collection().await.unwrap();
}

#[tokio::test]
async fn the_app_on_a_qdrant_server_ingests_searches_and_deletes_as_the_embedded_index_does() {
    let name = "the_app_on_a_qdrant_server";
    let Some(url) = crate::qdrant_url(name) else {
        return;
    };
    let options = qdrant_options(&url, "app");
    let app = qdrant_app(&options).await;
    let (vs, files) = ingest(&app).await;
    let store = VectorStoreId::parse(&vs).unwrap();
    assert_eq!(app.state.index.count(Some(&store), None).await.unwrap(), 6);
    // The points are in the server's collection, not in the data dir.
    let server = QdrantIndex::open(&options, MODEL, DIMS).await.unwrap();
    assert_eq!(server.count(Some(&store), None).await.unwrap(), 6);
    assert!(!app.data_dir().join("index").exists());

    let found = searches(&app, &vs).await;
    assert_eq!(names(&found[0])[0], "apt.txt");
    assert_eq!(names(&found[0]).len(), 1, "{:?}", found[0]);
    assert_eq!(names(&found[1]), ["photosynthesis.txt", "bread.txt"]);
    assert_eq!(names(&found[2]), ["volcano.txt"]);
    assert!(!names(&found[3]).contains(&"photosynthesis.txt"));
    assert_eq!(names(&found[4]), ["tcp.md"]);

    // The embedded index answers the same, score for score.
    let edge = TestApp::spawn().await;
    let (edge_vs, _) = ingest(&edge).await;
    assert_same(&found, &searches(&edge, &edge_vs).await);

    // A deleted file is gone from searches at once, and from the server once purged.
    let volcano = files.iter().find(|(n, _)| n == "volcano.txt").unwrap();
    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{}", volcano.1)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let gone = |found: &[Vec<(String, f64)>]| {
        found
            .iter()
            .all(|hits| !names(hits).contains(&"volcano.txt"))
    };
    assert!(gone(&searches(&app, &vs).await));
    app.drain().await;
    let file = FileId::parse(&volcano.1).unwrap();
    assert_eq!(server.count(None, Some(&file)).await.unwrap(), 0);
    assert_eq!(server.count(Some(&store), None).await.unwrap(), 5);
    let after = searches(&app, &vs).await;
    assert!(gone(&after));
    assert!(after[2].is_empty(), "{:?}", after[2]);

    // Attribute updates reach the server's points.
    let apt = files.iter().find(|(n, _)| n == "apt.txt").unwrap();
    let (status, body) = app
        .post_json(
            &format!("/v1/vector_stores/{vs}/files/{}", apt.1),
            json!({"attributes": {"topic": "debian"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(searches(&app, &vs).await[0].is_empty());

    app.stop().await;
    edge.stop().await;
    server.drop_collection().await.unwrap();
}

/// A dense search of `store` for the vector of one of its points: what both sides of a copy
/// must answer alike.
async fn probe(idx: &dyn VectorIndex, store: &VectorStoreId) -> Vec<(uuid::Uuid, f32)> {
    let page = idx.export_points(None, 1).await.unwrap();
    let hits = idx
        .search(&SearchQuery {
            store: store.clone(),
            project: ragstore::domain::ProjectId::default_project(),
            leg: Leg::Dense(page.points[0].vector.clone()),
            filter: None,
            exclude_files: Vec::new(),
            limit: 10,
            score_threshold: None,
        })
        .await
        .unwrap();
    hits.into_iter().map(|h| (h.id, h.score)).collect()
}

fn migrate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ragstore"))
        .arg("migrate-index")
        .args(args)
        .env_remove("RAGSTORE_QDRANT_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn migrate_index_copies_to_qdrant_and_back_and_resumes_where_it_stopped() {
    let Some(url) = crate::qdrant_url("migrate_index") else {
        return;
    };
    let options = qdrant_options(&url, "migrate");
    // An embedded index with real points, its server stopped.
    let app = TestApp::spawn().await;
    let (vs, _) = ingest(&app).await;
    let before = searches(&app, &vs).await;
    let dir = app.stop().await;
    let data = dir.path().join("data");
    let store = VectorStoreId::parse(&vs).unwrap();

    // Interrupted after two pages of two...
    {
        let no_upkeep = EdgeOptions {
            maintain_every: None,
            ..EdgeOptions::default()
        };
        let source = EdgeIndex::open_with(&data.join("index"), DIMS, no_upkeep).unwrap();
        let target = QdrantIndex::open(&options, MODEL, DIMS).await.unwrap();
        let name = ragstore::admin::qdrant_target(&url, target.collection());
        let checkpoint = data.join("index-migration.json");
        let copied = copy_points(&source, &target, &name, &checkpoint, 2, Some(2), |_| {})
            .await
            .unwrap();
        assert_eq!(
            (copied.copied, copied.resumed, copied.done),
            (4, false, false)
        );
        assert!(checkpoint.exists());
        // ... and killed after writing its third page but before recording it.
        let saved: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
        let next = saved["next"].as_str().unwrap().parse().unwrap();
        let page = source.export_points(Some(next), 2).await.unwrap();
        target.import_points(page.points).await.unwrap();
        assert_eq!(target.count(None, None).await.unwrap(), 6);
        // A copy into a non-empty target without its checkpoint is refused.
        let other = data.join("other-checkpoint.json");
        let err = copy_points(&source, &target, &name, &other, 2, None, |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already holds 6 points"), "{err}");
    }
    // The command resumes it: the page is written again, nothing is duplicated.
    let prefix = options.collection_prefix.as_str();
    let data_arg = data.to_str().unwrap();
    let out = migrate(&[
        "--data-dir",
        data_arg,
        "--to-qdrant",
        &url,
        "--qdrant-collection-prefix",
        prefix,
        "--page",
        "2",
    ]);
    assert!(
        out.contains("copied 6 points (resumed); the source holds 6, the target 6"),
        "{out}"
    );
    assert!(!data.join("index-migration.json").exists());

    // The same data dir served from the server answers as before.
    let app = {
        let (url, prefix) = (url.clone(), prefix.to_owned());
        TestApp::spawn_in(dir, move |c| {
            c.qdrant.url = Some(url);
            c.qdrant.collection_prefix = prefix;
        })
        .await
    };
    assert_same(&searches(&app, &vs).await, &before);
    let dir = app.stop().await;

    // And back into a fresh embedded index (a laptop copy), with the command.
    let laptop = tempfile::tempdir().unwrap();
    let out = migrate(&[
        "--to-edge",
        laptop.path().to_str().unwrap(),
        "--qdrant-url",
        &url,
        "--qdrant-collection-prefix",
        prefix,
    ]);
    assert!(
        out.contains("copied 6 points; the source holds 6, the target 6"),
        "{out}"
    );
    let server = QdrantIndex::open(&options, MODEL, DIMS).await.unwrap();
    let copy = EdgeIndex::open(&laptop.path().join("index"), DIMS).unwrap();
    assert_eq!(copy.count(Some(&store), None).await.unwrap(), 6);
    assert_eq!(copy.missing_keywords(&store).await.unwrap(), 0);
    let (a, b) = (probe(&server, &store).await, probe(&copy, &store).await);
    assert_eq!(a.len(), 6);
    assert_eq!(
        a.iter().map(|h| h.0).collect::<Vec<_>>(),
        b.iter().map(|h| h.0).collect::<Vec<_>>()
    );
    // Into a non-empty index it refuses.
    drop(copy);
    let out = Command::new(env!("CARGO_BIN_EXE_ragstore"))
        .args(["migrate-index", "--to-edge"])
        .arg(laptop.path())
        .args(["--qdrant-url", &url, "--qdrant-collection-prefix", prefix])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds 6 points"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(dir);
    drop_collection(&options).await;
}
