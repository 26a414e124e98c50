//! Vector stores end to end: ingestion through the durable queue, search with filters, cascades,
//! batches, expiry, restart-resume, bad input.

use crate::{assert_error, TestApp};
use async_trait::async_trait;
use ragstore::domain::{FileId, VectorStoreId};
use ragstore::index::VectorIndex;
use ragstore::ingest::embed::Embedder;
use ragstore::ingest::worker::{Stage, Worker, WorkerDeps, LEASE_SECS};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub const DOCS: &[(&str, &str)] = &[
    ("photosynthesis.txt", "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide to make glucose and release oxygen. Chlorophyll in the chloroplasts absorbs light energy, which drives the light-dependent reactions and the Calvin cycle."),
    ("tcp.md", "# TCP congestion control\n\nTCP slows its sending rate when the network is congested. Slow start grows the congestion window exponentially, and after packet loss the sender halves the window and grows it additively (AIMD). Retransmission timeouts detect lost segments."),
    ("rome.txt", "The Roman Empire was ruled by emperors after Augustus became the first emperor in 27 BC. The legions expanded its borders across Europe, North Africa and the Middle East, and the western empire fell in 476 AD."),
    ("bread.txt", "To bake sourdough bread, mix flour, water and salt with an active starter, let the dough rise slowly, shape it into a loaf, and bake it in a very hot oven until the crust is dark and crisp."),
    ("volcano.txt", "Volcanoes erupt when magma from the Earth's mantle rises through the crust. Pressure from dissolved gases can cause explosive eruptions that throw ash and lava, as at Mount Vesuvius and Mount St. Helens."),
];

pub const QUESTIONS: &[(&str, &str)] = &[
    (
        "How do plants turn sunlight into food?",
        "photosynthesis.txt",
    ),
    (
        "What happens to the sending rate when packets are lost on a busy network?",
        "tcp.md",
    ),
    (
        "Who was the first emperor and when did the western empire fall?",
        "rome.txt",
    ),
    (
        "How long should dough rise before baking a loaf?",
        "bread.txt",
    ),
    (
        "Why do some mountains explode with ash and lava?",
        "volcano.txt",
    ),
];

async fn upload_docs(app: &TestApp) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, text) in DOCS {
        let f = app
            .upload(name, text.as_bytes().to_vec(), "assistants")
            .await;
        out.push((name.to_string(), f["id"].as_str().unwrap().to_owned()));
    }
    out
}

async fn create_store(app: &TestApp, body: Value) -> Value {
    let (status, vs) = app.post_json("/v1/vector_stores", body).await;
    assert_eq!(status, 200, "{vs}");
    assert_eq!(vs["object"], "vector_store");
    assert!(vs["id"].as_str().unwrap().starts_with("vs_"));
    vs
}

async fn search(app: &TestApp, vs: &str, body: Value) -> Value {
    let (status, res) = app
        .post_json(&format!("/v1/vector_stores/{vs}/search"), body)
        .await;
    assert_eq!(status, 200, "{res}");
    res
}

fn names(res: &Value) -> Vec<String> {
    res["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["filename"].as_str().unwrap().to_owned())
        .collect()
}

async fn points(app: &TestApp, vs: Option<&str>, file: Option<&str>) -> u64 {
    let vs = vs.map(|v| VectorStoreId::parse(v).unwrap());
    let file = file.map(|f| FileId::parse(f).unwrap());
    app.state
        .index
        .count(vs.as_ref(), file.as_ref())
        .await
        .unwrap()
}

#[tokio::test]
async fn ingest_search_and_delete_end_to_end() {
    let app = TestApp::spawn().await;
    let files = upload_docs(&app).await;
    let ids: Vec<&str> = files.iter().map(|(_, id)| id.as_str()).collect();
    let vs = create_store(
        &app,
        json!({"name": "kb", "file_ids": ids, "metadata": {"team": "docs"}}),
    )
    .await;
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    assert_eq!(vs["status"], "in_progress");
    assert_eq!(vs["file_counts"]["in_progress"], 5);
    assert_eq!(vs["metadata"]["team"], "docs");
    let res = app
        .client
        .get(app.url(&format!("/v1/vector_stores/{vs_id}")))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers().contains_key("openai-poll-after-ms"),
        "in-progress objects carry a poll hint"
    );

    assert!(app.drain().await >= 5);
    let (_, vs) = app.get_json(&format!("/v1/vector_stores/{vs_id}")).await;
    assert_eq!(vs["status"], "completed", "{vs}");
    assert_eq!(
        vs["file_counts"],
        json!({"in_progress": 0, "completed": 5, "failed": 0, "cancelled": 0, "total": 5})
    );
    assert!(vs["usage_bytes"].as_i64().unwrap() > 0);

    // Extraction turned the files `processed`.
    let (_, f) = app.get_json(&format!("/v1/files/{}", ids[0])).await;
    assert_eq!(f["status"], "processed");

    // Every question finds the right document first.
    for (q, want) in QUESTIONS {
        let res = search(&app, &vs_id, json!({"query": q, "max_num_results": 5})).await;
        assert_eq!(res["object"], "vector_store.search_results.page");
        assert_eq!(res["search_query"], json!([q]));
        let got = names(&res);
        assert_eq!(got.first().map(String::as_str), Some(*want), "{q}: {got:?}");
        let scores: Vec<f64> = res["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "sorted: {scores:?}"
        );
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
        let hit = &res["data"][0];
        assert_eq!(hit["content"][0]["type"], "text");
        assert!(!hit["content"][0]["text"].as_str().unwrap().is_empty());
        assert!(hit["file_id"].as_str().unwrap().starts_with("file-"));
    }
    // A query list and a threshold. Sub-queries are fused by RRF, which in a store this small
    // (every chunk in every sub-query's list) favours chunks ranked fairly well by both, so
    // each sub-query's best is only sure to be among the results (tests/it/hybrid.rs checks
    // the fused scores).
    let res = search(
        &app,
        &vs_id,
        json!({"query": ["sourdough starter", "magma"], "max_num_results": 5}),
    )
    .await;
    let got = names(&res);
    assert!(
        got.contains(&"bread.txt".to_owned()) && got.contains(&"volcano.txt".to_owned()),
        "{got:?}"
    );
    let res = search(
        &app,
        &vs_id,
        json!({"query": "magma eruptions", "ranking_options": {"score_threshold": 0.99}}),
    )
    .await;
    assert!(
        res["data"].as_array().unwrap().is_empty(),
        "nothing is that similar: {res}"
    );

    // Delete a file: gone from counts, listings, search and the index.
    let rome = &files[2].1;
    let n_before = points(&app, Some(&vs_id), Some(rome)).await;
    assert!(n_before > 0);
    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{rome}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (_, vs) = app.get_json(&format!("/v1/vector_stores/{vs_id}")).await;
    assert_eq!(vs["file_counts"]["total"], 4);
    let res = search(
        &app,
        &vs_id,
        json!({"query": "Roman emperors and legions", "max_num_results": 50}),
    )
    .await;
    assert!(!names(&res).contains(&"rome.txt".to_owned()));
    app.drain().await;
    assert_eq!(
        points(&app, None, Some(rome)).await,
        0,
        "no orphaned points"
    );
    let (status, _) = app
        .get_json(&format!("/v1/vector_stores/{vs_id}/files/{rome}"))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn deleting_a_file_removes_it_from_every_store() {
    let app = TestApp::spawn().await;
    let f = app
        .upload("tcp.md", DOCS[1].1.as_bytes().to_vec(), "user_data")
        .await;
    let fid = f["id"].as_str().unwrap();
    let keep = app
        .upload("bread.txt", DOCS[3].1.as_bytes().to_vec(), "user_data")
        .await;
    let mut stores = Vec::new();
    for i in 0..3 {
        let vs = create_store(
            &app,
            json!({"name": format!("s{i}"), "file_ids": [fid, keep["id"]]}),
        )
        .await;
        stores.push(vs["id"].as_str().unwrap().to_owned());
    }
    app.drain().await;
    for vs in &stores {
        assert!(points(&app, Some(vs), Some(fid)).await > 0);
    }
    let total_before = points(&app, None, None).await;
    let per_file = points(&app, None, Some(fid)).await;
    assert_eq!(per_file % 3, 0);

    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{fid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.drain().await;
    for vs in &stores {
        let (_, v) = app.get_json(&format!("/v1/vector_stores/{vs}")).await;
        assert_eq!(v["file_counts"]["total"], 1, "{v}");
        let (_, list) = app.get_json(&format!("/v1/vector_stores/{vs}/files")).await;
        let listed: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, vec![keep["id"].as_str().unwrap()]);
        let res = search(&app, vs, json!({"query": "congestion window"})).await;
        assert!(res["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["file_id"] != fid));
    }
    assert_eq!(points(&app, None, Some(fid)).await, 0);
    assert_eq!(points(&app, None, None).await, total_before - per_file);
    // Its caches and bytes are gone too.
    let id = FileId::parse(fid).unwrap();
    assert!(app.state.meta.get_file_text(&id).await.unwrap().is_none());
    assert!(!app.blob_exists(&format!("files/{fid}")).await);
    assert!(!app.blob_exists(&format!("texts/{fid}")).await);
}

#[tokio::test]
async fn attribute_filters_run_inside_the_index_and_update_without_reembedding() {
    let counting = Counting::new();
    let app =
        TestApp::spawn_custom(tempfile::tempdir().unwrap(), |_| {}, Some(counting.clone())).await;
    let vs = create_store(&app, json!({"name": "filters"})).await;
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    let attrs = [
        json!({"author": "ann", "year": 2019, "draft": false}),
        json!({"author": "bob", "year": 2021, "draft": true}),
        json!({"author": "cy", "year": 2023, "draft": false}),
        json!({"author": "ann", "year": 2024, "draft": true}),
        json!({"author": "dee", "year": 2020.5, "draft": false}),
    ];
    for ((name, text), a) in DOCS.iter().zip(&attrs) {
        let f = app
            .upload(name, text.as_bytes().to_vec(), "assistants")
            .await;
        let (status, vf) = app
            .post_json(
                &format!("/v1/vector_stores/{vs_id}/files"),
                json!({"file_id": f["id"], "attributes": a}),
            )
            .await;
        assert_eq!(status, 200, "{vf}");
        assert_eq!(vf["object"], "vector_store.file");
        assert_eq!(vf["status"], "in_progress");
        assert_eq!(vf["attributes"], *a);
        assert_eq!(
            vf["chunking_strategy"],
            json!({"type": "static", "static": {"max_chunk_size_tokens": 254, "chunk_overlap_tokens": 64}}),
            "auto fits the model's 256-token window, special tokens included, a quarter overlapping"
        );
    }
    app.drain().await;
    let by = |filters: Value| {
        let app = &app;
        let vs_id = vs_id.clone();
        async move {
            let mut got = names(
                &search(
                    app,
                    &vs_id,
                    json!({"query": "anything at all", "max_num_results": 50, "filters": filters}),
                )
                .await,
            );
            got.sort();
            got.dedup();
            got
        }
    };
    let f = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        by(json!({"type": "eq", "key": "author", "value": "ann"})).await,
        f(&["bread.txt", "photosynthesis.txt"])
    );
    assert_eq!(
        by(json!({"type": "ne", "key": "author", "value": "ann"})).await,
        f(&["rome.txt", "tcp.md", "volcano.txt"])
    );
    assert_eq!(
        by(json!({"type": "gt", "key": "year", "value": 2021})).await,
        f(&["bread.txt", "rome.txt"])
    );
    assert_eq!(
        by(json!({"type": "gte", "key": "year", "value": 2021})).await,
        f(&["bread.txt", "rome.txt", "tcp.md"])
    );
    assert_eq!(
        by(json!({"type": "lt", "key": "year", "value": 2020.5})).await,
        f(&["photosynthesis.txt"])
    );
    assert_eq!(
        by(json!({"type": "lte", "key": "year", "value": 2020.5})).await,
        f(&["photosynthesis.txt", "volcano.txt"])
    );
    assert_eq!(
        by(json!({"type": "eq", "key": "year", "value": 2021})).await,
        f(&["tcp.md"])
    );
    assert_eq!(
        by(json!({"type": "eq", "key": "draft", "value": true})).await,
        f(&["bread.txt", "tcp.md"])
    );
    assert_eq!(
        by(json!({"type": "in", "key": "author", "value": ["bob", "cy"]})).await,
        f(&["rome.txt", "tcp.md"])
    );
    assert_eq!(
        by(json!({"type": "nin", "key": "author", "value": ["ann", "bob", "cy"]})).await,
        f(&["volcano.txt"])
    );
    assert_eq!(
        by(json!({"type": "in", "key": "year", "value": [2019, 2023]})).await,
        f(&["photosynthesis.txt", "rome.txt"])
    );
    assert_eq!(
        by(json!({"type": "and", "filters": [
            {"type": "eq", "key": "draft", "value": false},
            {"type": "or", "filters": [{"type": "eq", "key": "author", "value": "cy"}, {"type": "lt", "key": "year", "value": 2020}]}
        ]})).await,
        f(&["photosynthesis.txt", "rome.txt"])
    );
    assert_eq!(
        by(json!({"type": "eq", "key": "missing", "value": "x"})).await,
        Vec::<String>::new()
    );
    // 5 results asked, fewer match: the filter is applied inside the index, not to a top-k.
    let res = search(&app, &vs_id, json!({"query": "photosynthesis", "max_num_results": 1, "filters": {"type": "eq", "key": "author", "value": "dee"}})).await;
    assert_eq!(names(&res), vec!["volcano.txt".to_owned()]);

    // Updating attributes is searchable at once, with no new embedding pass.
    let calls = counting.texts();
    let (_, list) = app
        .get_json(&format!("/v1/vector_stores/{vs_id}/files?limit=100"))
        .await;
    let rome = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["attributes"]["author"] == "cy")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, vf) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/files/{rome}"),
            json!({"attributes": {"author": "zed"}}),
        )
        .await;
    assert_eq!(status, 200, "{vf}");
    assert_eq!(vf["attributes"], json!({"author": "zed"}));
    assert_eq!(
        by(json!({"type": "eq", "key": "author", "value": "zed"})).await,
        f(&["rome.txt"])
    );
    assert_eq!(
        by(json!({"type": "eq", "key": "author", "value": "cy"})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        by(json!({"type": "gte", "key": "year", "value": 2023})).await,
        f(&["bread.txt"]),
        "old keys are gone"
    );
    let hit = search(
        &app,
        &vs_id,
        json!({"query": "Roman legions", "max_num_results": 1}),
    )
    .await;
    assert_eq!(hit["data"][0]["attributes"], json!({"author": "zed"}));
    assert_eq!(
        counting.texts(),
        calls + 4,
        "only the four search queries were embedded"
    );
    assert_eq!(app.drain().await, 0);
}

#[tokio::test]
async fn a_processed_file_reuses_text_and_embeddings_in_another_store() {
    let counting = Counting::new();
    let app =
        TestApp::spawn_custom(tempfile::tempdir().unwrap(), |_| {}, Some(counting.clone())).await;
    let long: String = (0..40)
        .map(|i| format!("Paragraph {i}: {}\n\n", DOCS[i % DOCS.len()].1))
        .collect();
    let f = app
        .upload("long.txt", long.into_bytes(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap();
    let a = create_store(&app, json!({"file_ids": [fid]})).await;
    app.drain().await;
    let first_pass = counting.texts();
    let chunks = points(&app, a["id"].as_str(), Some(fid)).await;
    assert!(chunks > 10, "{chunks}");
    assert_eq!(first_pass as u64, chunks, "one embedding per chunk");

    let b = create_store(&app, json!({"file_ids": [fid]})).await;
    app.drain().await;
    assert_eq!(
        counting.texts(),
        first_pass,
        "same chunking: no second embedding pass"
    );
    assert_eq!(points(&app, b["id"].as_str(), Some(fid)).await, chunks);

    // Another chunking re-chunks and embeds, from the stored text.
    let c = create_store(&app, json!({"file_ids": [fid], "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 0}}})).await;
    app.drain().await;
    let n = points(&app, c["id"].as_str(), Some(fid)).await;
    assert!(n > 0 && n < chunks, "{n} vs {chunks}");
    assert_eq!(counting.texts() as u64, first_pass as u64 + n);
    let (_, vf) = app
        .get_json(&format!(
            "/v1/vector_stores/{}/files/{fid}",
            c["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        vf["chunking_strategy"]["static"],
        json!({"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 0})
    );

    // The parsed chunks, paged.
    let path = format!(
        "/v1/vector_stores/{}/files/{fid}/content?limit=4",
        a["id"].as_str().unwrap()
    );
    let (status, page) = app.get_json(&path).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["object"], "vector_store.file_content.page");
    assert_eq!(page["data"].as_array().unwrap().len(), 4);
    assert_eq!(page["has_more"], true);
    let mut all = page["data"].as_array().unwrap().len();
    let mut next = page["next_page"].as_str().map(str::to_owned);
    while let Some(p) = next {
        let (_, page) = app.get_json(&format!("{path}&page={p}")).await;
        all += page["data"].as_array().unwrap().len();
        next = page["next_page"].as_str().map(str::to_owned);
    }
    assert_eq!(all as u64, chunks);
}

#[tokio::test]
async fn batches_attach_and_cancel() {
    let app = TestApp::spawn().await;
    let files = upload_docs(&app).await;
    let vs = create_store(&app, json!({})).await;
    let vs_id = vs["id"].as_str().unwrap();
    let (status, b) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/file_batches"),
            json!({"files": [
                {"file_id": files[0].1, "attributes": {"k": "a"}},
                {"file_id": files[1].1, "attributes": {"k": "b"}, "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50}}}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["object"], "vector_store.files_batch");
    assert!(b["id"].as_str().unwrap().starts_with("vsfb_"));
    assert_eq!(b["status"], "in_progress");
    assert_eq!(b["file_counts"]["in_progress"], 2);
    app.drain().await;
    let (_, b2) = app
        .get_json(&format!(
            "/v1/vector_stores/{vs_id}/file_batches/{}",
            b["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(b2["status"], "completed");
    assert_eq!(b2["file_counts"]["completed"], 2);
    let (_, f1) = app
        .get_json(&format!("/v1/vector_stores/{vs_id}/files/{}", files[1].1))
        .await;
    assert_eq!(f1["attributes"], json!({"k": "b"}));
    assert_eq!(
        f1["chunking_strategy"]["static"]["max_chunk_size_tokens"],
        100
    );

    // A second batch: one job runs, then the batch is cancelled: queued work stops, finished stays.
    let rest: Vec<&str> = files[2..].iter().map(|(_, id)| id.as_str()).collect();
    let (_, b) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/file_batches"),
            json!({"file_ids": rest}),
        )
        .await;
    let bid = b["id"].as_str().unwrap().to_owned();
    let worker = app.state.worker("one");
    // Extraction jobs from the uploads may come first; run until one ingest has completed.
    loop {
        assert!(worker.try_run_one().await.unwrap());
        let (_, b) = app
            .get_json(&format!("/v1/vector_stores/{vs_id}/file_batches/{bid}"))
            .await;
        if b["file_counts"]["completed"] == 1 {
            break;
        }
    }
    let (status, c) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/file_batches/{bid}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(
        c["file_counts"],
        json!({"in_progress": 0, "completed": 1, "failed": 0, "cancelled": 2, "total": 3})
    );
    app.drain().await;
    let (_, list) = app
        .get_json(&format!(
            "/v1/vector_stores/{vs_id}/file_batches/{bid}/files?filter=cancelled"
        ))
        .await;
    let cancelled: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(cancelled.len(), 2);
    for id in cancelled {
        assert_eq!(
            points(&app, Some(vs_id), Some(id)).await,
            0,
            "cancelled files have no points"
        );
    }
    let (_, list) = app
        .get_json(&format!(
            "/v1/vector_stores/{vs_id}/file_batches/{bid}/files?filter=completed"
        ))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn non_text_files_fail_with_unsupported_file() {
    let app = TestApp::spawn().await;
    let png = app
        .upload(
            "img.png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(),
            "assistants",
        )
        .await;
    let vs = create_store(&app, json!({"file_ids": [png["id"]]})).await;
    let vs_id = vs["id"].as_str().unwrap();
    app.drain().await;
    let (_, vf) = app
        .get_json(&format!(
            "/v1/vector_stores/{vs_id}/files/{}",
            png["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(vf["status"], "failed");
    assert_eq!(vf["last_error"]["code"], "unsupported_file");
    let (_, f) = app
        .get_json(&format!("/v1/files/{}", png["id"].as_str().unwrap()))
        .await;
    assert_eq!(f["status"], "error");
    assert!(f["status_details"].as_str().unwrap().contains("PNG"));
    let (_, v) = app.get_json(&format!("/v1/vector_stores/{vs_id}")).await;
    assert_eq!(v["file_counts"]["failed"], 1);
    assert_eq!(v["status"], "completed");
}

#[tokio::test]
async fn stores_expire_after_inactivity() {
    let app = TestApp::spawn().await;
    let vs = create_store(
        &app,
        json!({"expires_after": {"anchor": "last_active_at", "days": 1}}),
    )
    .await;
    let vs_id = vs["id"].as_str().unwrap();
    assert_eq!(
        vs["expires_at"].as_i64(),
        Some(vs["last_active_at"].as_i64().unwrap() + 86_400)
    );
    app.clock.advance(86_399);
    search(&app, vs_id, json!({"query": "still alive"})).await; // activity pushes expiry back
    app.clock.advance(86_399);
    let (_, v) = app.get_json(&format!("/v1/vector_stores/{vs_id}")).await;
    assert_eq!(v["status"], "completed");
    app.clock.advance(2);
    let (_, v) = app.get_json(&format!("/v1/vector_stores/{vs_id}")).await;
    assert_eq!(v["status"], "expired");
    let (status, body) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/search"),
            json!({"query": "x"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(assert_error(&body, "invalid_request_error")["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn stores_list_modify_delete() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            create_store(&app, json!({"name": format!("s{i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let (_, page) = app.get_json("/v1/vector_stores?limit=2&order=asc").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], true);
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/v1/vector_stores?limit=2&order=asc&after={a}"),
            None => "/v1/vector_stores?limit=2&order=asc".to_owned(),
        };
        let (_, page) = app.get_json(&path).await;
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["id"].as_str().unwrap().to_owned()),
        );
        if page["has_more"] != true {
            break;
        }
        after = page["last_id"].as_str().map(str::to_owned);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    assert_eq!(seen_sorted, sorted);
    let (_, before) = app
        .get_json(&format!("/v1/vector_stores?order=asc&before={}", seen[2]))
        .await;
    assert_eq!(before["data"].as_array().unwrap().len(), 2);

    let (status, v) = app
        .post_json(&format!("/v1/vector_stores/{}", ids[0]), json!({"name": "renamed", "metadata": {"a": "b"}, "expires_after": {"anchor": "last_active_at", "days": 7}}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["metadata"], json!({"a": "b"}));
    assert_eq!(
        v["expires_after"],
        json!({"anchor": "last_active_at", "days": 7})
    );
    let res = app
        .client
        .delete(app.url(&format!("/v1/vector_stores/{}", ids[0])))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": ids[0], "object": "vector_store.deleted", "deleted": true})
    );
    let (status, _) = app.get_json(&format!("/v1/vector_stores/{}", ids[0])).await;
    assert_eq!(status, 404);
    app.drain().await;
}

#[tokio::test]
async fn detaching_removes_points_from_that_store_only() {
    let app = TestApp::spawn().await;
    let f = app
        .upload("rome.txt", DOCS[2].1.as_bytes().to_vec(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap();
    let a = create_store(&app, json!({"file_ids": [fid]})).await;
    let b = create_store(&app, json!({"file_ids": [fid]})).await;
    app.drain().await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let res = app
        .client
        .delete(app.url(&format!("/v1/vector_stores/{a}/files/{fid}")))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": fid, "object": "vector_store.file.deleted", "deleted": true})
    );
    app.drain().await;
    assert_eq!(points(&app, Some(a), Some(fid)).await, 0);
    assert!(points(&app, Some(b), Some(fid)).await > 0);
    let (status, _) = app.get_json(&format!("/v1/files/{fid}")).await;
    assert_eq!(status, 200, "detaching keeps the file");
    // Deleting a store removes its points.
    let res = app
        .client
        .delete(app.url(&format!("/v1/vector_stores/{b}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.drain().await;
    assert_eq!(points(&app, Some(b), None).await, 0);
}

/// The crash test: a worker stops between stages (lease held, nothing finished), the app is
/// rebuilt on the same data dir, and the file completes with exactly the right points.
#[tokio::test]
async fn ingestion_resumes_after_a_crash_at_any_stage() {
    for stage in [
        Stage::Extract,
        Stage::Chunk,
        Stage::Embed,
        Stage::FirstBatch,
        Stage::Index,
    ] {
        let app = TestApp::spawn().await;
        let text: String = (0..12)
            .map(|i| format!("Section {i}. {}\n\n", DOCS[i % DOCS.len()].1))
            .collect();
        let f = app.upload("crash.txt", text.into_bytes(), "vision").await;
        let fid = f["id"].as_str().unwrap().to_owned();
        let vs = create_store(&app, json!({"file_ids": [fid]})).await;
        let vs_id = vs["id"].as_str().unwrap().to_owned();
        let worker = app.state.worker("doomed");
        assert!(worker.run_one_until(Some(stage)).await.unwrap());
        // The index allows one open handle per directory: let go of everything that holds it.
        drop(worker);
        let dir = app.stop().await;

        let app = TestApp::spawn_in(dir, |_| {}).await;
        app.leases_of_the_dead_expire().await;
        let (_, vf) = app
            .get_json(&format!("/v1/vector_stores/{vs_id}/files/{fid}"))
            .await;
        assert_eq!(vf["status"], "in_progress", "{stage:?}");
        app.drain().await;
        let (_, vf) = app
            .get_json(&format!("/v1/vector_stores/{vs_id}/files/{fid}"))
            .await;
        assert_eq!(vf["status"], "completed", "{stage:?}: {vf}");
        let id = FileId::parse(&fid).unwrap();
        let chunking = ragstore::domain::Chunking::auto(app.state.pipeline.auto_chunk_tokens());
        let chunks = app
            .state
            .meta
            .chunked(&id, &chunking)
            .await
            .unwrap()
            .unwrap();
        assert!(chunks > 3);
        assert_eq!(
            points(&app, Some(&vs_id), Some(&fid)).await,
            u64::from(chunks),
            "{stage:?}: exact, no duplicates"
        );
        assert_eq!(
            points(&app, None, None).await,
            u64::from(chunks),
            "{stage:?}"
        );
        let res = search(&app, &vs_id, json!({"query": "sourdough loaf"})).await;
        assert_eq!(res["data"][0]["file_id"], fid.as_str());
    }
}

/// A job that never finishes (here: abandoned mid-extraction, as a crash of the process would
/// leave it) is claimed again after every restart, but not forever: past its attempts it ends
/// `failed` with `server_error`, and the store's counts say so.
#[tokio::test]
async fn a_job_that_keeps_crashing_the_server_ends_failed() {
    let app = TestApp::spawn().await;
    let f = app
        .upload("poison.txt", DOCS[0].1.as_bytes().to_vec(), "vision")
        .await;
    let fid = f["id"].as_str().unwrap().to_owned();
    let vs = create_store(&app, json!({"file_ids": [fid]})).await;
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    let mut app = app;
    let max = ragstore::ingest::worker::MAX_ATTEMPTS;
    for crash in 0..max {
        let worker = app.state.worker("doomed");
        assert!(
            worker.run_one_until(Some(Stage::Extract)).await.unwrap(),
            "crash {crash}: the job is claimed again"
        );
        drop(worker);
        let dir = app.stop().await;
        app = TestApp::spawn_in(dir, |_| {}).await;
        app.leases_of_the_dead_expire().await;
        let (_, vf) = app
            .get_json(&format!("/v1/vector_stores/{vs_id}/files/{fid}"))
            .await;
        assert_eq!(vf["status"], "in_progress", "after crash {crash}");
    }
    // The next claim is one more than a job may have: it is not run again.
    app.drain().await;
    let (_, vf) = app
        .get_json(&format!("/v1/vector_stores/{vs_id}/files/{fid}"))
        .await;
    assert_eq!(vf["status"], "failed", "{vf}");
    assert_eq!(vf["last_error"]["code"], "server_error", "{vf}");
    let (_, store) = app.get_json(&format!("/v1/vector_stores/{vs_id}")).await;
    assert_eq!(store["file_counts"]["failed"], 1, "{store}");
    assert_eq!(store["file_counts"]["in_progress"], 0, "{store}");
    assert_eq!(points(&app, Some(&vs_id), None).await, 0);
}

#[tokio::test]
async fn vector_store_bad_inputs() {
    let app = TestApp::spawn().await;
    let f = app
        .upload("a.txt", b"hello world".to_vec(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap();
    let vs = create_store(&app, json!({})).await;
    let vs_id = vs["id"].as_str().unwrap();
    let long_meta: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "/v1/vector_stores",
            json!({"metadata": long_meta}),
            400,
            Some("metadata"),
        ),
        (
            "/v1/vector_stores",
            json!({"metadata": {"k": "v".repeat(513)}}),
            400,
            Some("metadata"),
        ),
        (
            "/v1/vector_stores",
            json!({"file_ids": "file-x"}),
            400,
            Some("file_ids"),
        ),
        (
            "/v1/vector_stores",
            json!({"file_ids": ["file-doesnotexist"]}),
            404,
            None,
        ),
        (
            "/v1/vector_stores",
            json!({"expires_after": {"anchor": "created_at", "days": 1}}),
            400,
            Some("expires_after"),
        ),
        (
            "/v1/vector_stores",
            json!({"expires_after": {"anchor": "last_active_at", "days": 366}}),
            400,
            Some("expires_after"),
        ),
        (
            "/v1/vector_stores",
            json!({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}}}),
            400,
            Some("chunking_strategy"),
        ),
        (
            "/v1/vector_stores",
            json!({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 401}}}),
            400,
            Some("chunking_strategy"),
        ),
        ("/v1/vector_stores", json!({"name": 5}), 400, Some("name")),
    ];
    for (path, body, want, param) in cases {
        let (status, res) = app.post_json(path, body.clone()).await;
        assert_eq!(status, want, "{body}: {res}");
        let e = assert_error(&res, "invalid_request_error");
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{body}");
        }
    }
    let files = format!("/v1/vector_stores/{vs_id}/files");
    let search_path = format!("/v1/vector_stores/{vs_id}/search");
    let many_attrs: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!(1))).collect();
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (&files, json!({}), 400, Some("file_id")),
        (&files, json!({"file_id": "file-nope"}), 404, None),
        (
            &files,
            json!({"file_id": fid, "attributes": many_attrs}),
            400,
            Some("attributes"),
        ),
        (
            &files,
            json!({"file_id": fid, "attributes": {"k": {"nested": 1}}}),
            400,
            Some("attributes"),
        ),
        (
            &files,
            json!({"file_id": fid, "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 5000, "chunk_overlap_tokens": 0}}}),
            400,
            Some("chunking_strategy"),
        ),
        (&search_path, json!({}), 400, Some("query")),
        (&search_path, json!({"query": ""}), 400, Some("query")),
        (
            &search_path,
            json!({"query": "é".repeat(32_769)}),
            400,
            Some("query"),
        ),
        (
            &search_path,
            json!({"query": ["x", "a ".repeat(16_385)]}),
            400,
            Some("query"),
        ),
        (
            &search_path,
            json!({"query": "x", "max_num_results": 0}),
            400,
            Some("max_num_results"),
        ),
        (
            &search_path,
            json!({"query": "x", "max_num_results": 51}),
            400,
            Some("max_num_results"),
        ),
        (
            &search_path,
            json!({"query": "x", "filters": {"type": "like", "key": "a", "value": 1}}),
            400,
            Some("filters"),
        ),
        (
            &search_path,
            json!({"query": "x", "filters": {"type": "gt", "key": "a", "value": "b"}}),
            400,
            Some("filters"),
        ),
        (
            &search_path,
            json!({"query": "x", "ranking_options": {"score_threshold": 2}}),
            400,
            Some("ranking_options"),
        ),
        (
            &search_path,
            json!({"query": "x", "ranking_options": {"ranker": "best"}}),
            400,
            Some("ranking_options"),
        ),
    ];
    for (path, body, want, param) in cases {
        let (status, res) = app.post_json(path, body.clone()).await;
        assert_eq!(status, want, "{path} {body}: {res}");
        let e = assert_error(&res, "invalid_request_error");
        if let Some(p) = param {
            assert_eq!(e["param"], p, "{body}");
        }
    }
    for path in [
        "/v1/vector_stores/vs_nope".to_owned(),
        "/v1/vector_stores/garbage".to_owned(),
        format!("/v1/vector_stores/{vs_id}/files/file-nope"),
        format!("/v1/vector_stores/{vs_id}/file_batches/vsfb_nope"),
    ] {
        let (status, res) = app.get_json(&path).await;
        assert_eq!(status, 404, "{path}");
        assert!(assert_error(&res, "invalid_request_error")["code"]
            .as_str()
            .unwrap()
            .ends_with("_not_found"));
    }
    let (status, res) = app
        .get_json(&format!("/v1/vector_stores/{vs_id}/files?filter=done"))
        .await;
    assert_eq!(
        (status, res["error"]["param"].as_str()),
        (400, Some("filter"))
    );
    let (status, res) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/file_batches"),
            json!({"file_ids": [fid], "files": [{"file_id": fid}]}),
        )
        .await;
    assert_eq!(status, 400, "{res}");
    let (status, _) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/file_batches"),
            json!({"file_ids": []}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn embeddings_endpoint_and_remote_embedder_agree() {
    let a = TestApp::spawn().await;
    let (status, res) = a
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": ["a cat on a mat", "tax law"]}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["object"], "list");
    let v0: Vec<f64> = res["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(v0.len(), 384);
    assert!((v0.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-3);
    assert!(res["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let (_, b64) = a
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": "a cat on a mat", "encoding_format": "base64"}),
        )
        .await;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert!(decoded
        .iter()
        .zip(&v0)
        .all(|(x, y)| (f64::from(*x) - y).abs() < 1e-6));
    let (status, _) = a
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": [1, 2, 3]}),
        )
        .await;
    assert_eq!(status, 400);
    // Oversized inputs are refused before any tokenising: one too long, or too many in all.
    let long = "word ".repeat(6_554);
    let (status, res) = a
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": ["ok", long]}),
        )
        .await;
    assert_eq!(
        (status, res["error"]["param"].as_str()),
        (400, Some("input")),
        "{res}"
    );
    let (status, res) = a
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": vec!["w ".repeat(15_000); 41]}),
        )
        .await;
    assert_eq!(
        (status, res["error"]["param"].as_str()),
        (400, Some("input")),
        "{res}"
    );
    let (status, _) = a
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": "w ".repeat(16_384)}),
        )
        .await;
    assert_eq!(status, 200, "an input at the cap is served");

    // A second ragstore that embeds through the first one's /v1/embeddings.
    let base = format!("{}/v1", a.base);
    let b = TestApp::spawn_with(move |c| c.embedding_url = Some(base)).await;
    let (_, res_b) = b
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": "a cat on a mat"}),
        )
        .await;
    let vb: Vec<f64> = res_b["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let cos: f64 = vb.iter().zip(&v0).map(|(x, y)| x * y).sum();
    assert!(cos > 0.999, "{cos}");
    // And ingests and searches with it.
    let f = b
        .upload("volcano.txt", DOCS[4].1.as_bytes().to_vec(), "assistants")
        .await;
    let vs = create_store(&b, json!({"file_ids": [f["id"]]})).await;
    b.drain().await;
    let res = search(&b, vs["id"].as_str().unwrap(), json!({"query": "magma"})).await;
    assert_eq!(names(&res), vec!["volcano.txt".to_owned()]);
}

/// Wraps the real local model, counts the texts it embeds, and fails when told to.
#[derive(Clone)]
struct Counting {
    inner: Arc<dyn Embedder>,
    texts: Arc<AtomicUsize>,
    /// 0: works; 1: fails as a backend that may come back (`Unavailable`); 2: fails as one
    /// that would fail again (`Internal`).
    fail: Arc<AtomicUsize>,
    /// Each ingestion call takes a permit: a test holds ingestion at a batch of its choosing.
    gate: Arc<tokio::sync::Semaphore>,
}

impl Counting {
    fn new() -> Arc<Self> {
        let inner = ragstore::ingest::local::LocalEmbedder::load(&crate::models_dir(), 1).unwrap();
        Arc::new(Self {
            inner: Arc::new(inner),
            texts: Arc::new(AtomicUsize::new(0)),
            fail: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(tokio::sync::Semaphore::new(
                tokio::sync::Semaphore::MAX_PERMITS,
            )),
        })
    }

    fn texts(&self) -> usize {
        self.texts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Embedder for Counting {
    fn model(&self) -> &str {
        self.inner.model()
    }
    fn dims(&self) -> usize {
        self.inner.dims()
    }
    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }
    fn tokens(&self) -> ragstore::ingest::chunk::Tokens {
        self.inner.tokens()
    }
    async fn embed(&self, texts: Vec<String>) -> ragstore::domain::Result<Vec<Vec<f32>>> {
        use ragstore::domain::Error;
        match self.fail.load(Ordering::SeqCst) {
            1 => return Err(Error::unavailable(anyhow::anyhow!("endpoint restarting"))),
            2 => return Err(Error::Internal(anyhow::anyhow!("model refuses this input"))),
            _ => {}
        }
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        self.inner.embed(texts).await
    }
    async fn embed_bulk(&self, texts: Vec<String>) -> ragstore::domain::Result<Vec<Vec<f32>>> {
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        self.embed(texts).await
    }
}

/// An attributes update that lands while the file is being ingested reaches the chunks
/// indexed after it too, not only those indexed before.
#[tokio::test]
async fn attributes_updated_during_ingestion_reach_every_chunk() {
    let counting = Counting::new();
    // One ingestion batch may run; the next waits until the test lets it.
    counting
        .gate
        .forget_permits(tokio::sync::Semaphore::MAX_PERMITS - 1);
    let app =
        TestApp::spawn_custom(tempfile::tempdir().unwrap(), |_| {}, Some(counting.clone())).await;
    let text: String = (0..300)
        .map(|i| {
            format!(
                "Sentence number {i} talks about topic {} in a long document. ",
                i * 7
            )
        })
        .collect();
    let f = app
        .upload("long.txt", text.into_bytes(), "assistants")
        .await;
    let file_id = f["id"].as_str().unwrap().to_owned();
    let vs = create_store(&app, json!({"name": "attrs"})).await;
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    let (status, vf) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/files"),
            json!({"file_id": file_id, "attributes": {"v": "old"}}),
        )
        .await;
    assert_eq!(status, 200, "{vf}");

    let worker = app.state.worker("held");
    let run = tokio::spawn(async move { while worker.try_run_one().await.unwrap() {} });
    // The first batch is indexed; the second waits at the gate.
    let hits = |value: &'static str| {
        let (app, vs_id) = (&app, vs_id.clone());
        async move {
            search(
                app,
                &vs_id,
                json!({"query": "topic", "max_num_results": 50,
                       "filters": {"type": "eq", "key": "v", "value": value}}),
            )
            .await["data"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    let mut first = 0;
    for _ in 0..200 {
        first = hits("old").await;
        if first > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(first > 0, "the first batch was indexed");
    let (status, vf) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/files/{file_id}"),
            json!({"attributes": {"v": "new"}}),
        )
        .await;
    assert_eq!(status, 200, "{vf}");
    assert_eq!(
        vf["status"], "in_progress",
        "the update landed mid-ingestion"
    );
    counting.gate.add_permits(1000);
    run.await.unwrap();

    let (_, vf) = app
        .get_json(&format!("/v1/vector_stores/{vs_id}/files/{file_id}"))
        .await;
    assert_eq!(vf["status"], "completed", "{vf}");
    let total = points(&app, Some(&vs_id), Some(&file_id)).await as usize;
    assert!(total > first, "more chunks were indexed after the update");
    assert_eq!(hits("old").await, 0, "no chunk keeps the old attributes");
    assert_eq!(hits("new").await, total.min(50));
}

/// A ZIP of the given entries, deflated.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in entries {
        w.start_file(*name, options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A one-page PDF whose content stream is `content`, with Helvetica as /F1.
pub(crate) fn pdf_with(content: &[u8]) -> Vec<u8> {
    use lopdf::{dictionary, Document, Object, Stream};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font = doc.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let contents = doc.add_object(Stream::new(dictionary! {}, content.to_vec()));
    let page = doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => pages_id,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        "Resources" => dictionary! { "Font" => dictionary! { "F1" => font } },
        "Contents" => contents,
    });
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => vec![page.into()], "Count" => 1,
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// Hostile and broken documents fail one by one with a clear OpenAI-shaped error, in bounded
/// time, while a good file in the same batch is indexed and the server goes on serving.
#[tokio::test]
async fn hostile_documents_fail_cleanly_and_the_rest_of_the_batch_completes() {
    let app = TestApp::spawn().await;
    let document_xml = format!(
        "<w:document xmlns:w=\"w\"><w:body><w:p><w:r><w:t>{}</w:t></w:r></w:p></w:body></w:document>",
        " ".repeat(80 << 20)
    );
    let laughs = {
        let mut x = String::from("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY l0 \"ha\">");
        for i in 1..10 {
            let prev = format!("&l{};", i - 1);
            x.push_str(&format!("<!ENTITY l{i} \"{}\">", prev.repeat(10)));
        }
        x.push_str("]><l>&l9;</l>");
        x
    };
    // A page tree whose kid is the tree itself.
    let loop_pdf = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n\
        2 0 obj<</Type/Pages/Kids[2 0 R]/Count 1>>endobj\n\
        trailer<</Root 1 0 R>>\n%%EOF\n"
        .to_vec();
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        (
            "bomb.docx",
            zip_of(&[
                ("[Content_Types].xml", b"<Types/>"),
                ("word/document.xml", document_xml.as_bytes()),
            ]),
            "invalid_file",
            "",
        ),
        (
            "laughs.xml",
            laughs.into_bytes(),
            "invalid_file",
            "DTD entities",
        ),
        ("loop.pdf", loop_pdf, "invalid_file", ""),
        (
            "truncated.pdf",
            b"%PDF-1.7\n1 0 obj<</Type/Cat".to_vec(),
            "invalid_file",
            "",
        ),
        (
            "scan.pdf",
            pdf_with(b"q 100 0 0 100 0 0 cm Q"),
            "unsupported_file",
            "text layer",
        ),
        (
            "program.exe",
            b"MZ\x90\x00\x03\x00\x00\x00\x04\x00".to_vec(),
            "unsupported_file",
            "",
        ),
        (
            "archive.zip",
            zip_of(&[("a.txt", b"hello")]),
            "unsupported_file",
            "ZIP",
        ),
    ];
    let good = app
        .upload(
            "good.pdf",
            pdf_with(b"BT /F1 12 Tf 72 700 Td (Marsh harriers glide low.) Tj ET"),
            "assistants",
        )
        .await;
    let mut files = vec![json!({"file_id": good["id"]})];
    let mut ids = Vec::new();
    for (name, bytes, _, _) in &cases {
        let f = app.upload(name, bytes.clone(), "assistants").await;
        assert!(f["id"].is_string(), "{name}: {f}");
        files.push(json!({"file_id": f["id"]}));
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    let vs = create_store(&app, json!({})).await;
    let vs_id = vs["id"].as_str().unwrap();
    let (status, batch) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/file_batches"),
            json!({ "files": files }),
        )
        .await;
    assert_eq!(status, 200, "{batch}");
    let started = std::time::Instant::now();
    app.drain().await;
    assert!(
        started.elapsed().as_secs() < 60,
        "hostile files took {:?}",
        started.elapsed()
    );

    for ((name, _, code, needle), id) in cases.iter().zip(&ids) {
        let (_, vf) = app
            .get_json(&format!("/v1/vector_stores/{vs_id}/files/{id}"))
            .await;
        assert_eq!(vf["status"], "failed", "{name}: {vf}");
        assert_eq!(vf["last_error"]["code"], *code, "{name}: {vf}");
        let message = vf["last_error"]["message"].as_str().unwrap_or("");
        assert!(!message.is_empty(), "{name}: no message");
        assert!(
            message.contains(needle),
            "{name}: {message:?} lacks {needle:?}"
        );
    }
    let (_, b) = app
        .get_json(&format!(
            "/v1/vector_stores/{vs_id}/file_batches/{}",
            batch["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(b["status"], "completed", "{b}");
    assert_eq!(b["file_counts"]["completed"], 1, "{b}");
    assert_eq!(b["file_counts"]["failed"], cases.len(), "{b}");
    let hits = search(&app, vs_id, json!({"query": "birds gliding over reeds"})).await;
    assert_eq!(hits["data"][0]["filename"], "good.pdf", "{hits}");
    assert_eq!(hits["data"][0]["extra"]["page"], 1, "{hits}");
}

/// An attribute key no index can filter on (it holds `"` or `\`) is refused when it arrives,
/// before anything is written: not accepted and then retried six times by a job that can never
/// index it, and not committed to the row before the index refuses it.
#[tokio::test]
async fn unfilterable_attribute_keys_are_refused_before_anything_is_written() {
    let app = TestApp::spawn().await;
    let f = app
        .upload("rome.txt", DOCS[2].1.as_bytes().to_vec(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap();
    let vs = create_store(&app, json!({})).await;
    let vs_id = vs["id"].as_str().unwrap();
    let files = format!("/v1/vector_stores/{vs_id}/files");
    for key in ["a\"b", "back\\slash"] {
        let (status, body) = app
            .post_json(&files, json!({"file_id": fid, "attributes": {key: 1}}))
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            assert_error(&body, "invalid_request_error")["param"],
            "attributes"
        );
    }
    let (_, list) = app.get_json(&files).await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "nothing attached"
    );

    let (status, _) = app
        .post_json(
            &files,
            json!({"file_id": fid, "attributes": {"era": "ancient"}}),
        )
        .await;
    assert_eq!(status, 200);
    app.drain().await;
    let one = format!("{files}/{fid}");
    let (status, body) = app
        .post_json(&one, json!({"attributes": {"bad\"key": "x"}}))
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("attributes"))
    );
    let (_, row) = app.get_json(&one).await;
    assert_eq!(row["status"], "completed");
    assert_eq!(
        row["attributes"],
        json!({"era": "ancient"}),
        "row unchanged"
    );
    let res = search(
        &app,
        vs_id,
        json!({"query": "emperor", "filters": {"type": "eq", "key": "era", "value": "ancient"}}),
    )
    .await;
    assert_eq!(names(&res), vec!["rome.txt".to_owned()], "index unchanged");
    let (status, body) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/search"),
            json!({"query": "emperor", "filters": {"type": "eq", "key": "x\"y", "value": 1}}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("filters"))
    );
}

/// A failure that may pass is retried with backoff and the file stays in progress; one that
/// would happen again fails the file at once instead of six retries later.
#[tokio::test]
async fn jobs_retry_transient_failures_and_stop_at_permanent_ones() {
    let counting = Counting::new();
    let mode = counting.fail.clone();
    let app = TestApp::spawn_custom(tempfile::tempdir().unwrap(), |_| {}, Some(counting)).await;
    let f = app
        .upload("tcp.md", DOCS[1].1.as_bytes().to_vec(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap();
    mode.store(1, Ordering::SeqCst);
    let vs = create_store(&app, json!({"file_ids": [fid]})).await;
    let one = format!(
        "/v1/vector_stores/{}/files/{fid}",
        vs["id"].as_str().unwrap()
    );
    app.drain().await;
    let (_, row) = app.get_json(&one).await;
    assert_eq!(
        (row["status"].as_str(), &row["last_error"]),
        (Some("in_progress"), &Value::Null)
    );
    // The retry waits for its backoff, then meets a failure that would happen again.
    assert_eq!(app.drain().await, 0, "not before its time");
    mode.store(2, Ordering::SeqCst);
    app.clock.advance(60);
    assert_eq!(app.drain().await, 1);
    let (_, row) = app.get_json(&one).await;
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["last_error"]["code"], "server_error");
    // Nothing is left to run.
    app.clock.advance(3600);
    assert_eq!(app.drain().await, 0);
}

/// A long file is searchable from its first batch on, long before it is done, and its object
/// shows how far ingestion has got; the rest follows, and the counts end equal.
#[tokio::test]
async fn a_long_file_is_searchable_while_it_is_ingested() {
    let app = TestApp::spawn_with(|c| c.reaper_interval_secs = 0.05).await;
    let text: String = (0..160)
        .map(|i| format!("Part {i}. {}\n\n", DOCS[i % DOCS.len()].1))
        .collect();
    let f = app
        .upload("long.txt", text.into_bytes(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap().to_owned();
    app.drain().await; // the extraction job
    let vs = create_store(&app, json!({"file_ids": [fid]})).await;
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    let one = format!("/v1/vector_stores/{vs_id}/files/{fid}");
    let (_, vf) = app.get_json(&one).await;
    assert_eq!(
        vf["progress"],
        json!({"chunks_indexed": 0, "chunks_total": null})
    );

    let worker = app.state.worker("slow");
    assert!(worker.run_one_until(Some(Stage::FirstBatch)).await.unwrap());
    let (_, vf) = app.get_json(&one).await;
    assert_eq!(vf["status"], "in_progress");
    let first = vf["progress"]["chunks_indexed"].as_u64().unwrap();
    assert!(first > 0, "{vf}");
    let res = search(
        &app,
        &vs_id,
        json!({"query": "sourdough loaf in a hot oven"}),
    )
    .await;
    assert_eq!(
        res["data"][0]["file_id"],
        fid.as_str(),
        "searchable already"
    );
    assert_eq!(points(&app, Some(&vs_id), Some(&fid)).await, first);

    // The abandoned job's lease runs out; another worker takes it over from the start.
    app.clock.advance(121);
    let mut ran = 0;
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        ran += app.drain().await;
        if ran > 0 {
            break;
        }
    }
    assert_eq!(ran, 1, "requeued by the reaper once the lease ran out");
    let (_, vf) = app.get_json(&one).await;
    assert_eq!(vf["status"], "completed", "{vf}");
    let total = vf["progress"]["chunks_total"].as_u64().unwrap();
    assert!(total > first, "{vf}");
    assert_eq!(vf["progress"]["chunks_indexed"].as_u64(), Some(total));
    assert_eq!(points(&app, Some(&vs_id), Some(&fid)).await, total);
}

/// A file with more text than a vector store file may hold fails with `invalid_file`, after a
/// bounded amount of work, instead of exhausting memory.
#[tokio::test]
async fn a_file_over_the_token_limit_fails_cleanly() {
    let app = TestApp::spawn_with(|c| c.max_file_tokens = 1_000).await;
    let text: String = (0..100)
        .map(|i| format!("Part {i}. {}\n\n", DOCS[i % DOCS.len()].1))
        .collect();
    let f = app
        .upload("huge.txt", text.into_bytes(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap();
    let vs = create_store(&app, json!({"file_ids": [fid]})).await;
    app.drain().await;
    let (_, vf) = app
        .get_json(&format!(
            "/v1/vector_stores/{}/files/{fid}",
            vs["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(vf["status"], "failed", "{vf}");
    assert_eq!(vf["last_error"]["code"], "invalid_file");
    assert!(
        vf["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1000 tokens"),
        "{vf}"
    );
    assert_eq!(points(&app, None, Some(fid)).await, 0);
}

/// Text far larger than a file may hold fails with `invalid_file` from its size: plain text
/// that large is refused without being read, a document that shrinks (HTML) once its text is
/// known, and markup much larger than its text is read as usual.
#[tokio::test]
async fn a_file_with_too_much_text_fails_from_its_size() {
    // 1,000 tokens: at most 64,000 bytes of text; plain text over 128,000 bytes is not read.
    let app = TestApp::spawn_with(|c| c.max_file_tokens = 1_000).await;
    let plain = "word ".repeat(60_000);
    let html = format!(
        "<html><body><p>{}</p></body></html>",
        "word ".repeat(20_000)
    );
    let markup = format!(
        "<html><body>{}<p>A few words of text.</p></body></html>",
        "<i></i>".repeat(40_000)
    );
    let mut ids = Vec::new();
    for (name, body) in [
        ("plain.txt", plain),
        ("page.html", html),
        ("markup.html", markup),
    ] {
        let f = app.upload(name, body.into_bytes(), "assistants").await;
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    let vs = create_store(&app, json!({"file_ids": ids})).await;
    let vs_id = vs["id"].as_str().unwrap();
    app.drain().await;
    for (fid, want) in ids.iter().zip(["failed", "failed", "completed"]) {
        let (_, vf) = app
            .get_json(&format!("/v1/vector_stores/{vs_id}/files/{fid}"))
            .await;
        assert_eq!(vf["status"], want, "{vf}");
        if want == "failed" {
            assert_eq!(vf["last_error"]["code"], "invalid_file");
            let message = vf["last_error"]["message"].as_str().unwrap();
            assert!(
                message.contains("larger than 64000 bytes") && message.contains("1000 tokens"),
                "{vf}"
            );
            assert_eq!(points(&app, None, Some(fid)).await, 0);
        }
    }
}

/// With the server's own workers, a small file attached after a huge one completes while the
/// huge one is still being ingested: jobs take turns on the model batch by batch.
///
/// The huge file is still being ingested when the test ends, so the app is stopped and the
/// runtime dropped (which waits for blocking work in flight, such as an index write the
/// stopped worker abandoned) before the data dir is removed.
#[test]
fn a_huge_file_does_not_starve_a_small_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = runtime.block_on(huge_and_small());
    drop(runtime);
    drop(dir);
}

async fn huge_and_small() -> tempfile::TempDir {
    let app = TestApp::spawn_with(|c| c.workers_enabled = true).await;
    let huge: String = (0..3000)
        .map(|i| format!("Part {i}. {}\n\n", DOCS[i % DOCS.len()].1))
        .collect();
    let big = app
        .upload("huge.txt", huge.into_bytes(), "assistants")
        .await;
    let small = app
        .upload("bread.txt", DOCS[3].1.as_bytes().to_vec(), "assistants")
        .await;
    let vs = create_store(&app, json!({})).await;
    let vs_id = vs["id"].as_str().unwrap();
    let files = format!("/v1/vector_stores/{vs_id}/files");
    app.post_json(&files, json!({"file_id": big["id"]})).await;
    // Let the huge file's job get going first.
    let big_one = format!("{files}/{}", big["id"].as_str().unwrap());
    for _ in 0..600 {
        let (_, vf) = app.get_json(&big_one).await;
        if vf["progress"]["chunks_indexed"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.post_json(&files, json!({"file_id": small["id"]})).await;
    let small_one = format!("{files}/{}", small["id"].as_str().unwrap());
    let mut small_done = false;
    for _ in 0..1200 {
        let (_, vf) = app.get_json(&small_one).await;
        if vf["status"] == "completed" {
            small_done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(small_done, "the small file completed");
    let (_, vf) = app.get_json(&big_one).await;
    assert_eq!(
        vf["status"], "in_progress",
        "the huge one is not done yet: {vf}"
    );
    app.stop().await
}

/// A file deleted while its text is being extracted: the extraction's writes are refused, and
/// the purge waits until the extraction has stopped, so neither its text blob nor its cache
/// rows outlive the delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_deleted_during_its_extraction_leaves_no_text_behind() {
    let app = TestApp::spawn().await;
    // Big enough that extracting it takes a while in a debug build.
    let text: String = (0..200_000)
        .map(|i| format!("Line {i}: {}\n", DOCS[i % DOCS.len()].1))
        .collect();
    let f = app.upload("big.txt", text.into_bytes(), "assistants").await;
    let fid = f["id"].as_str().unwrap().to_owned();
    let id = FileId::parse(&fid).unwrap();
    let extractor = app.state.worker("extractor");
    let extraction = tokio::spawn(async move { extractor.try_run_one().await.unwrap() });
    // Let the extraction get going, then delete the file.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !extraction.is_finished(),
        "the file is still being extracted"
    );
    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{fid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.drain().await, 0, "the purge waits for the extraction");
    assert!(
        !extraction.is_finished(),
        "the extraction was still running"
    );
    assert!(extraction.await.unwrap());
    assert_eq!(app.drain().await, 1, "the purge ran once it had stopped");
    assert_eq!(app.state.meta.get_file_text(&id).await.unwrap(), None);
    let leftovers: Vec<_> = app
        .blob_keys()
        .await
        .into_iter()
        .filter(|k| k.contains(fid.as_str()))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let (status, _) = app.get_json(&format!("/v1/files/{fid}")).await;
    assert_eq!(status, 404);
}

/// Wraps the real index. Each upsert announces itself on `arrived` and waits for a permit of
/// `gate`: a test acts between a job's last liveness check and its write.
struct GatedIndex {
    inner: Arc<dyn VectorIndex>,
    arrived: Arc<tokio::sync::Semaphore>,
    gate: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl VectorIndex for GatedIndex {
    async fn upsert(&self, points: Vec<ragstore::index::Point>) -> ragstore::domain::Result<()> {
        self.arrived.add_permits(1);
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        self.inner.upsert(points).await
    }
    async fn search(
        &self,
        query: &ragstore::index::SearchQuery,
    ) -> ragstore::domain::Result<Vec<ragstore::index::Hit>> {
        self.inner.search(query).await
    }
    async fn delete_file(
        &self,
        store: Option<&VectorStoreId>,
        file: &FileId,
    ) -> ragstore::domain::Result<()> {
        self.inner.delete_file(store, file).await
    }
    async fn delete_store(&self, store: &VectorStoreId) -> ragstore::domain::Result<()> {
        self.inner.delete_store(store).await
    }
    async fn set_attributes(
        &self,
        store: &VectorStoreId,
        file: &FileId,
        attributes: &ragstore::domain::Attributes,
    ) -> ragstore::domain::Result<()> {
        self.inner.set_attributes(store, file, attributes).await
    }
    async fn adopt_store(
        &self,
        store: &VectorStoreId,
        project: &ragstore::domain::ProjectId,
    ) -> ragstore::domain::Result<u64> {
        self.inner.adopt_store(store, project).await
    }
    async fn count(
        &self,
        store: Option<&VectorStoreId>,
        file: Option<&FileId>,
    ) -> ragstore::domain::Result<u64> {
        self.inner.count(store, file).await
    }
    async fn index_keywords(
        &self,
        store: &VectorStoreId,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> ragstore::domain::Result<ragstore::index::KeywordRound> {
        self.inner.index_keywords(store, from, limit).await
    }
    async fn missing_keywords(&self, store: &VectorStoreId) -> ragstore::domain::Result<u64> {
        self.inner.missing_keywords(store).await
    }
    async fn export_points(
        &self,
        from: Option<uuid::Uuid>,
        limit: usize,
    ) -> ragstore::domain::Result<ragstore::index::ExportPage> {
        self.inner.export_points(from, limit).await
    }
    async fn import_points(
        &self,
        points: Vec<ragstore::index::StoredPoint>,
    ) -> ragstore::domain::Result<()> {
        self.inner.import_points(points).await
    }
    async fn maintain(&self) -> ragstore::domain::Result<()> {
        self.inner.maintain().await
    }
}

/// A file deleted while its ingest job is about to write leaves none of its content, whether
/// that job goes on (it sees the cancellation after its write) or dies right after the write,
/// before it can undo anything (`crash`): the purge waits for the job to stop, or for its lease
/// to end, and runs last.
async fn delete_during_an_index_write(crash: bool) {
    let app = TestApp::spawn().await;
    let text = sentences(300);
    let f = app
        .upload("long.txt", text.into_bytes(), "assistants")
        .await;
    let file_id = f["id"].as_str().unwrap().to_owned();
    let vs = create_store(&app, json!({"file_ids": [file_id]})).await;
    let vs_id = vs["id"].as_str().unwrap().to_owned();

    let gated = Arc::new(GatedIndex {
        inner: app.state.index.clone(),
        arrived: Arc::new(tokio::sync::Semaphore::new(0)),
        gate: Arc::new(tokio::sync::Semaphore::new(0)),
    });
    let s = &app.state;
    let deps = WorkerDeps {
        meta: s.meta.clone(),
        queue: s.queue.clone(),
        storage: s.storage.clone(),
        staging: s.staging.clone(),
        index: gated.clone(),
        pipeline: s.pipeline.clone(),
        clock: s.clock.clone(),
        max_file_tokens: s.max_file_tokens,
        lease_secs: LEASE_SECS,
    };
    let worker = Worker::new(deps, "gated");
    // A crash right after the first batch is written: nothing after it runs.
    let stop = crash.then_some(Stage::FirstBatch);
    let run = tokio::spawn(async move { while worker.run_one_until(stop).await.unwrap() {} });
    gated.arrived.acquire().await.unwrap().forget();

    let res = app
        .client
        .delete(app.url(&format!("/v1/files/{file_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Another worker runs whatever may run now.
    app.drain().await;
    gated.gate.add_permits(1_000);
    run.await.unwrap();
    if crash {
        assert!(
            points(&app, Some(&vs_id), Some(&file_id)).await > 0,
            "the dead job's write landed after the delete"
        );
        // The process that ran it is gone: its lease runs out.
        app.clock.advance(LEASE_SECS + 1);
        s.queue.requeue_expired(s.clock.now()).await.unwrap();
    }
    app.drain().await;

    assert_eq!(
        points(&app, None, Some(&file_id)).await,
        0,
        "points survived"
    );
    assert_eq!(
        app.blob_keys().await,
        Vec::<String>::new(),
        "blobs survived"
    );
    let fid = FileId::parse(&file_id).unwrap();
    assert!(s.meta.get_file_text(&fid).await.unwrap().is_none());
    let res = search(&app, &vs_id, json!({"query": "topic"})).await;
    assert_eq!(res["data"].as_array().unwrap().len(), 0, "{res}");
}

#[tokio::test]
async fn a_file_deleted_during_an_index_write_leaves_no_points() {
    delete_during_an_index_write(false).await;
}

#[tokio::test]
async fn a_job_that_dies_after_writing_a_deleted_files_points_leaves_none() {
    delete_during_an_index_write(true).await;
}

/// A long extraction renews its job's lease: it is not taken for abandoned (and run a second
/// time by another worker) while it is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_extraction_keeps_its_lease() {
    let app = TestApp::spawn().await;
    // HTML is parsed into a tree first: slow enough in a debug build.
    let html: String = (0..200_000)
        .map(|i| format!("<p>Line {i}: <b>{}</b></p>\n", DOCS[i % DOCS.len()].1))
        .collect();
    app.upload("big.html", html.into_bytes(), "assistants")
        .await;
    let s = &app.state;
    let lease = 2;
    let deps = WorkerDeps {
        meta: s.meta.clone(),
        queue: s.queue.clone(),
        storage: s.storage.clone(),
        staging: s.staging.clone(),
        index: s.index.clone(),
        pipeline: s.pipeline.clone(),
        clock: s.clock.clone(),
        max_file_tokens: s.max_file_tokens,
        lease_secs: lease,
    };
    let worker = Worker::new(deps, "extractor");
    let started = std::time::Instant::now();
    let extraction = tokio::spawn(async move { worker.try_run_one().await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Well past the lease as first claimed; the extraction renews it every lease / 4.
    app.clock.advance(3 * lease);
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let running = !extraction.is_finished();
    let requeued = s.queue.requeue_expired(s.clock.now()).await.unwrap();
    assert!(extraction.await.unwrap());
    assert!(
        running,
        "the extraction took only {:?}: too short to test",
        started.elapsed()
    );
    assert_eq!(requeued, 0, "the running extraction's lease ran out");
    assert_eq!(app.drain().await, 0, "the extraction was done once");
}

/// The SDK reads one content page: it holds the whole of an ordinary document, not the first
/// 100 chunks; llama-stack's flags add each chunk's vector and metadata.
#[tokio::test]
async fn one_content_page_holds_a_whole_document_with_its_vectors_and_metadata() {
    let app = TestApp::spawn().await;
    let text = sentences(1200);
    let f = app
        .upload("long.txt", text.into_bytes(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap().to_owned();
    let vs = create_store(&app, json!({})).await;
    let vs_id = vs["id"].as_str().unwrap().to_owned();
    let (status, vf) = app
        .post_json(
            &format!("/v1/vector_stores/{vs_id}/files"),
            json!({"file_id": fid, "attributes": {"team": "docs"},
                   "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}}),
        )
        .await;
    assert_eq!(status, 200, "{vf}");
    app.drain().await;
    let chunks = points(&app, Some(&vs_id), Some(&fid)).await as usize;
    assert!(chunks > 100, "{chunks} chunks");

    let path = format!("/v1/vector_stores/{vs_id}/files/{fid}/content");
    let (status, page) = app.get_json(&path).await;
    assert_eq!(status, 200, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), chunks, "one call returns every chunk");
    assert_eq!(page["has_more"], false);
    assert!(page["next_page"].is_null());
    assert!(data[0].get("embedding").is_none() && data[0].get("metadata").is_none());
    let joined: String = data.iter().map(|d| d["text"].as_str().unwrap()).collect();
    assert!(joined.contains("Sentence number 1199"));

    let (status, page) = app
        .get_json(&format!(
            "{path}?include_embeddings=true&include_metadata=true"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), chunks);
    // The vector is the one the index holds: searching with it finds that very chunk first.
    let v = data[7]["embedding"].as_array().unwrap();
    assert_eq!(v.len(), 384);
    let (_, emb) = app
        .post_json(
            "/v1/embeddings",
            json!({"model": "all-MiniLM-L6-v2", "input": data[7]["text"]}),
        )
        .await;
    let cos: f64 = v
        .iter()
        .zip(emb["data"][0]["embedding"].as_array().unwrap())
        .map(|(a, b)| a.as_f64().unwrap() * b.as_f64().unwrap())
        .sum();
    assert!(cos > 0.99, "{cos}");
    let meta = &data[7]["chunk_metadata"];
    assert_eq!(meta["document_id"], fid.as_str());
    assert_eq!(meta["source"], "long.txt");
    assert_eq!(meta["chunk_embedding_dimension"], 384);
    assert_eq!(data[7]["metadata"]["team"], "docs");
    assert_eq!(data[7]["metadata"]["chunk_index"], 7);

    // A limit still pages, and the pages join up.
    let (_, first) = app.get_json(&format!("{path}?limit=40")).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 40);
    assert_eq!(first["has_more"], true);
    let (_, rest) = app
        .get_json(&format!(
            "{path}?page={}",
            first["next_page"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), chunks - 40);
    assert_eq!(rest["data"][0]["text"], data[40]["text"]);

    let (status, err) = app
        .get_json(&format!("{path}?include_embeddings=maybe"))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "include_embeddings");
}

/// The model list shows the embedding model (what clients discover); an unknown model is a
/// 404 `model_not_found`, on `/models/{id}` and on `/embeddings`.
#[tokio::test]
async fn the_model_list_shows_the_embedding_model_and_unknown_models_are_404() {
    let app = TestApp::spawn().await;
    for prefix in ["/v1", "/v1/openai/v1"] {
        let (status, list) = app.get_json(&format!("{prefix}/models")).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["object"], "list");
        let data = list["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        let m = &data[0];
        assert_eq!(m["id"], "all-MiniLM-L6-v2");
        assert_eq!(m["object"], "model");
        assert!(m["created"].as_i64().is_some());
        assert!(m["owned_by"].is_string());
        assert_eq!(m["model_type"], "embedding");
        assert_eq!(m["metadata"]["embedding_dimension"], 384);
    }
    for id in ["all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"] {
        let (status, m) = app.get_json(&format!("/v1/models/{id}")).await;
        assert_eq!((status, m["id"].as_str()), (200, Some("all-MiniLM-L6-v2")));
        let (status, e) = app
            .post_json("/v1/embeddings", json!({"model": id, "input": "hello"}))
            .await;
        assert_eq!(status, 200, "{id}: {e}");
    }
    // llama-stack's store fields: this server's model, or a refusal (never ignored).
    let (status, vs) = app
        .post_json(
            "/v1/vector_stores",
            json!({"name": "ok", "embedding_model": "sentence-transformers/all-MiniLM-L6-v2", "embedding_dimension": 384}),
        )
        .await;
    assert_eq!(status, 200, "{vs}");
    let (status, err) = app
        .post_json(
            "/v1/vector_stores",
            json!({"name": "no", "embedding_model": "nomic-embed-text-v1.5"}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{err}"
    );
    let (status, err) = app
        .post_json(
            "/v1/vector_stores",
            json!({"name": "no", "embedding_dimension": 768}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["param"].as_str()),
        (400, Some("embedding_dimension")),
        "{err}"
    );
    let (_, list) = app.get_json("/v1/vector_stores").await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "nothing was created when refused"
    );
    for id in ["text-embedding-3-small", "other/all-MiniLM-L6-v2"] {
        let (status, err) = app.get_json(&format!("/v1/models/{id}")).await;
        assert_eq!(status, 404, "{err}");
        assert_eq!(err["error"]["code"], "model_not_found");
        assert_eq!(
            err["error"]["message"],
            format!("The model `{id}` does not exist or you do not have access to it.")
        );
        let (status, err) = app
            .post_json("/v1/embeddings", json!({"model": id, "input": "hello"}))
            .await;
        assert_eq!(status, 404, "{err}");
        assert_eq!(err["error"]["code"], "model_not_found");
    }
}

/// A file whose text is over the token limit ends `error` at its extraction, and a store it is
/// attached to fails it with the same reason, without embedding any of it.
#[tokio::test]
async fn a_file_over_the_token_limit_fails_before_any_embedding() {
    let counting = Counting::new();
    let app = TestApp::spawn_custom(
        tempfile::tempdir().unwrap(),
        |c| c.max_file_tokens = 1_000,
        Some(counting.clone()),
    )
    .await;
    let text: String = (0..400)
        .map(|i| format!("Sentence number {i} talks about topic {}. ", i * 7))
        .collect();
    let f = app
        .upload("long.txt", text.into_bytes(), "assistants")
        .await;
    let fid = f["id"].as_str().unwrap().to_owned();
    app.drain().await;
    let (_, got) = app.get_json(&format!("/v1/files/{fid}")).await;
    assert_eq!(got["status"], "error", "{got}");
    let details = got["status_details"].as_str().unwrap();
    assert!(
        details.contains("tokens") && details.contains("at most 1000"),
        "{details}"
    );
    let vs = create_store(&app, json!({"file_ids": [fid]})).await;
    app.drain().await;
    let (_, vf) = app
        .get_json(&format!(
            "/v1/vector_stores/{}/files/{fid}",
            vs["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(vf["status"], "failed", "{vf}");
    assert_eq!(vf["last_error"]["code"], "invalid_file");
    assert_eq!(vf["last_error"]["message"], details);
    assert_eq!(counting.texts(), 0, "nothing was embedded");
    // A file under the limit is unaffected.
    let small = app
        .upload(
            "small.txt",
            b"A short note about volcanoes.".to_vec(),
            "assistants",
        )
        .await;
    app.drain().await;
    let (_, got) = app
        .get_json(&format!("/v1/files/{}", small["id"].as_str().unwrap()))
        .await;
    assert_eq!(got["status"], "processed", "{got}");
}

/// `/ready` answers 200 only when every backend answers, and names the one that does not.
#[tokio::test]
async fn ready_names_the_backend_that_does_not_answer() {
    let counting = Counting::new();
    let app =
        TestApp::spawn_custom(tempfile::tempdir().unwrap(), |_| {}, Some(counting.clone())).await;
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["database", "storage", "index", "embedder"]);
    assert!(body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["ok"] == true));

    counting.fail.store(1, Ordering::SeqCst);
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["failed"], json!(["embedder"]));
    let (status, _) = app.get_json("/health").await;
    assert_eq!(status, 200, "liveness is not readiness");
    counting.fail.store(0, Ordering::SeqCst);
    let (status, _) = app.get_json("/ready").await;
    assert_eq!(status, 200);
}

/// `n` numbered sentences, each on its own topic: a long plain-text document.
fn sentences(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "Sentence number {i} talks about topic {} at length. ",
                i * 7
            )
        })
        .collect()
}

/// The database records where the model's vectors live (the embedded index, or the collection
/// of a Qdrant server, with its dimensions); a later start that disagrees is refused before it
/// writes anything: another model over the embedded index, or a Qdrant collection prefix that
/// would put the vectors elsewhere.
#[tokio::test]
async fn a_start_that_disagrees_with_the_recorded_collection_is_refused() {
    use ragstore::domain::IndexCollection;
    let app = TestApp::spawn().await;
    let recorded = app.state.meta.index_collections().await.unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let mine = recorded[0].clone();
    assert_eq!((mine.model.as_str(), mine.dims), ("all-MiniLM-L6-v2", 384));
    let remote = crate::remote_backends();
    if remote {
        assert_eq!(mine.engine, "qdrant");
        assert!(
            mine.collection.ends_with("_all-minilm-l6-v2_384"),
            "{}",
            mine.collection
        );
    } else {
        assert_eq!(
            (mine.engine.as_str(), mine.collection.as_str()),
            ("embedded", "index")
        );
    }
    if !remote {
        // Another model's vectors recorded over the embedded index (as a start with it would
        // have, had it come first).
        app.state
            .meta
            .record_collection(&IndexCollection {
                engine: "embedded".into(),
                model: "e5-small-v2".into(),
                collection: "index".into(),
                dims: 384,
                created_at: 1,
            })
            .await
            .unwrap();
    }
    let dir = app.stop().await;

    let refused = |config: ragstore::Config| async move {
        let clock = Arc::new(ragstore::clock::ManualClock::new());
        match ragstore::App::build_custom(config, clock, None).await {
            Ok(_) => panic!("the start was not refused"),
            Err(e) => format!("{e:#}"),
        }
    };
    let mut config = TestApp::config_in(&dir).await;
    if remote {
        config.qdrant.collection_prefix = format!("{}x", config.qdrant.collection_prefix);
        let e = refused(config).await;
        assert!(
            e.contains("records the vectors of model all-MiniLM-L6-v2")
                && e.contains(&mine.collection),
            "{e}"
        );
    } else {
        let e = refused(config).await;
        assert!(
            e.contains("holds the vectors of model e5-small-v2")
                && e.contains("embeds with all-MiniLM-L6-v2"),
            "{e}"
        );
    }
    if remote {
        // As it was, the start goes on.
        let app = TestApp::spawn_in(dir, |_| {}).await;
        assert_eq!(app.state.meta.index_collections().await.unwrap(), [mine]);
        app.stop().await;
    }
}
