//! `GET /metrics` after known traffic: the counters move by exactly what was done.

use serde_json::json;
use std::collections::HashMap;

use crate::TestApp;

/// `name{labels} value` lines, keyed by `name{labels}` as written.
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = res.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_by_what_was_done() {
    let app = TestApp::spawn().await;
    let before = scrape(&app).await;
    for _ in 0..3 {
        assert_eq!(app.get_json("/v1/files").await.0, 200);
    }
    let text = "Basalt forms when lava cools quickly at the surface. ".repeat(40);
    let f = app
        .upload("rocks.txt", text.clone().into_bytes(), "assistants")
        .await;
    let id = f["id"].as_str().unwrap().to_owned();
    assert_eq!(app.get_json(&format!("/v1/files/{id}")).await.0, 200);
    assert_eq!(
        app.get_json("/v1/files/file-nosuchfile00000000000").await.0,
        404
    );
    let (_, vs) = app
        .post_json(
            "/v1/vector_stores",
            json!({"name": "geo", "file_ids": [id]}),
        )
        .await;
    let vs = vs["id"].as_str().unwrap().to_owned();
    app.drain().await;
    let (status, _) = app
        .post_json(
            &format!("/v1/vector_stores/{vs}/search"),
            json!({"query": "lava"}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, vsf) = app
        .get_json(&format!("/v1/vector_stores/{vs}/files/{id}"))
        .await;
    let chunks = vsf["progress"]["chunks_indexed"].as_f64().unwrap();
    assert!(chunks >= 1.0, "{vsf}");

    let after = scrape(&app).await;
    let delta = |k: &str| get(&after, k) - get(&before, k);
    // Requests by route template and status; ids never appear in a route.
    assert_eq!(
        delta(r#"ragstore_http_requests_total{method="GET",route="/v1/files",status="200"}"#),
        3.0
    );
    assert_eq!(
        delta(r#"ragstore_http_requests_total{method="GET",route="/v1/files/{id}",status="200"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"ragstore_http_requests_total{method="GET",route="/v1/files/{id}",status="404"}"#),
        1.0
    );
    assert_eq!(
        delta(
            r#"ragstore_http_request_duration_seconds_count{method="POST",route="/v1/vector_stores/{vs}/search",status="200"}"#
        ),
        1.0
    );
    for k in after.keys().filter(|k| k.contains("route=")) {
        assert!(
            !k.contains("file-") && !k.contains("vs_"),
            "an id in a route: {k}"
        );
    }
    // Jobs by kind and status, and an empty queue after the drain.
    assert_eq!(
        get(&after, r#"ragstore_jobs{kind="extract",status="done"}"#),
        1.0
    );
    assert_eq!(
        get(&after, r#"ragstore_jobs{kind="ingest",status="done"}"#),
        1.0
    );
    assert_eq!(
        get(&after, r#"ragstore_jobs{kind="ingest",status="queued"}"#),
        0.0
    );
    assert_eq!(get(&after, "ragstore_queue_depth"), 0.0);
    assert_eq!(get(&after, "ragstore_queue_oldest_age_seconds"), 0.0);
    // Extraction by format, embedding work, what is held.
    // The recorder is the process's, shared with the tests running beside this one: the
    // extraction counters moved by this file's one extraction at least.
    let extracted: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("ragstore_extraction_seconds_count{"))
        .map(|(k, v)| v - get(&before, k))
        .sum();
    assert!(extracted >= 1.0, "{after:?}");
    assert!(
        delta(r#"ragstore_extraction_seconds_count{format="text"}"#) >= 1.0,
        "{after:?}"
    );
    assert!(delta("ragstore_embedding_tokens_total") >= chunks * 10.0);
    assert!(delta("ragstore_embedding_texts_total") >= chunks);
    assert!(delta("ragstore_embedding_batch_seconds_count") >= 1.0);
    assert_eq!(get(&after, "ragstore_index_points"), chunks);
    assert_eq!(
        get(
            &after,
            &format!(r#"ragstore_store_indexed_chunks{{vector_store_id="{vs}"}}"#)
        ),
        chunks
    );
    assert_eq!(get(&after, "ragstore_stored_bytes"), text.len() as f64);
    // In flight is the process's gauge, which other tests' uploads move too: it returns to 0.
    let mut settled = get(&after, "ragstore_upload_bytes_in_flight") == 0.0;
    for _ in 0..100 {
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        settled = get(&scrape(&app).await, "ragstore_upload_bytes_in_flight") == 0.0;
    }
    assert!(
        settled,
        "bytes stay counted in flight after every upload ended"
    );
}

#[tokio::test]
async fn odd_methods_and_unknown_paths_do_not_grow_labels() {
    let app = TestApp::spawn().await;
    for i in 0..5 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        app.client
            .request(method, app.url(&format!("/nowhere/{i}")))
            .send()
            .await
            .unwrap();
    }
    let m = scrape(&app).await;
    let odd: Vec<_> = m
        .keys()
        .filter(|k| k.starts_with("ragstore_http_requests_total"))
        .filter(|k| k.contains("BREW") || k.contains("nowhere"))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    assert_eq!(
        get(
            &m,
            r#"ragstore_http_requests_total{method="other",route="unmatched",status="404"}"#
        ),
        5.0
    );
}

#[tokio::test]
async fn the_grafana_dashboard_queries_metrics_the_server_exports() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/ragstore.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let app = TestApp::spawn().await;
    // Traffic that makes every series exist: an upload ingested and searched.
    let f = app
        .upload("a.txt", b"Tides follow the moon.".to_vec(), "assistants")
        .await;
    let (_, vs) = app
        .post_json(
            "/v1/vector_stores",
            json!({"name": "t", "file_ids": [f["id"]]}),
        )
        .await;
    app.drain().await;
    app.post_json(
        &format!("/v1/vector_stores/{}/search", vs["id"].as_str().unwrap()),
        json!({"query": "moon"}),
    )
    .await;
    let exported: std::collections::HashSet<String> = scrape(&app)
        .await
        .keys()
        .map(|k| k.split('{').next().unwrap().to_owned())
        .collect();
    let mut queried = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("ragstore_"))
            {
                queried += 1;
                assert!(
                    exported.contains(name),
                    "{name} (panel {}) is not exported",
                    panel["title"]
                );
            }
        }
    }
    assert!(queried >= 10);
}
