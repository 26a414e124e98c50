//! `--role`: an `api` replica answers clients and runs no job; a `worker` replica runs jobs and
//! serves nothing of the API (only /health, /ready and /metrics).

use ragstore::config::Role;
use serde_json::json;
use std::time::Duration;

use crate::TestApp;

async fn status_of(app: &TestApp, vs: &str, file: &str) -> String {
    let (s, body) = app
        .get_json(&format!("/v1/vector_stores/{vs}/files/{file}"))
        .await;
    assert_eq!(s, 200, "{body}");
    body["status"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_replica_enqueues_and_a_worker_replica_ingests() {
    // An API replica with its workers switched on by configuration: the role keeps them off.
    let api = TestApp::spawn_with(|c| {
        c.role = Role::Api;
        c.workers_enabled = true;
    })
    .await;
    let file = api
        .upload(
            "basalt.txt",
            b"Basalt forms when lava cools.".to_vec(),
            "assistants",
        )
        .await;
    let file = file["id"].as_str().unwrap().to_owned();
    let (s, vs) = api
        .post_json(
            "/v1/vector_stores",
            json!({"name": "rocks", "file_ids": [file]}),
        )
        .await;
    assert_eq!(s, 200, "{vs}");
    let vs = vs["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(status_of(&api, &vs, &file).await, "in_progress");
    let dir = api.stop().await;

    // A worker replica on the same data: it serves no API, and it ingests the file.
    let worker = TestApp::spawn_in(dir, |c| {
        c.role = Role::Worker;
        c.workers_enabled = true;
    })
    .await;
    for path in [
        "/v1/files",
        "/v1/vector_stores",
        "/v1/openai/v1/files",
        "/console",
    ] {
        let res = worker.client.get(worker.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path} on a worker");
    }
    for path in ["/health", "/ready", "/metrics"] {
        let res = worker.client.get(worker.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path} on a worker");
    }
    let store = ragstore::domain::VectorStoreId::parse(&vs).unwrap();
    let fid = ragstore::domain::FileId::parse(&file).unwrap();
    let mut status = None;
    for _ in 0..300 {
        let row = worker.state.meta.get_vs_file(&store, &fid).await.unwrap();
        status = row.map(|r| r.status);
        if status == Some(ragstore::domain::VsFileStatus::Completed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, Some(ragstore::domain::VsFileStatus::Completed));
    let dir = worker.stop().await;

    // Back as `all`, the store answers searches over what the worker indexed.
    let all = TestApp::spawn_in(dir, |_| {}).await;
    assert_eq!(status_of(&all, &vs, &file).await, "completed");
    let (s, hits) = all
        .post_json(
            &format!("/v1/vector_stores/{vs}/search"),
            json!({"query": "lava"}),
        )
        .await;
    assert_eq!(s, 200, "{hits}");
    assert_eq!(hits["data"].as_array().unwrap().len(), 1, "{hits}");
    all.stop().await;
}
