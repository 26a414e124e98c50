//! Search modes (vector, keyword, hybrid), rankers (RRF, weighted), list queries, rewritten
//! queries, and the upgrade of an index written before keyword vectors.

use crate::vector_stores::DOCS;
use crate::{assert_error, TestApp};
use ragstore::domain::VectorStoreId;
use ragstore::index::edge::EdgeIndex;
use serde_json::{json, Value};

/// A store holding the five topic documents plus one full of identifiers, each file tagged with
/// its `topic`; drained.
async fn store_with_docs(app: &TestApp) -> String {
    let mut ids = Vec::new();
    let mut docs: Vec<(&str, &str)> = DOCS.to_vec();
    docs.push((
        "apt.txt",
        "Run dpkg-reconfigure tzdata to change the time zone; apt-get install --no-install-recommends keeps an install small.",
    ));
    for (name, text) in &docs {
        let f = app
            .upload(name, text.as_bytes().to_vec(), "assistants")
            .await;
        ids.push(f["id"].as_str().unwrap().to_owned());
    }
    let (status, vs) = app.post_json("/v1/vector_stores", json!({})).await;
    assert_eq!(status, 200, "{vs}");
    let vs = vs["id"].as_str().unwrap().to_owned();
    for (id, (name, _)) in ids.iter().zip(&docs) {
        let topic = name.split('.').next().unwrap();
        let (status, body) = app
            .post_json(
                &format!("/v1/vector_stores/{vs}/files"),
                json!({"file_id": id, "attributes": {"topic": topic}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    app.drain().await;
    vs
}

async fn search(app: &TestApp, vs: &str, body: Value) -> Value {
    let (status, res) = app
        .post_json(&format!("/v1/vector_stores/{vs}/search"), body)
        .await;
    assert_eq!(status, 200, "{res}");
    let scores: Vec<f64> = res["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
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

fn scores(res: &Value) -> Vec<f64> {
    res["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn each_mode_finds_what_it_is_good_at_and_hybrid_finds_both() {
    let app = TestApp::spawn().await;
    let vs = store_with_docs(&app).await;
    let mode = |m: &str, q: &str| json!({"query": q, "search_mode": m});

    // An identifier: the keyword leg finds only the file that names it.
    let kw = search(&app, &vs, mode("keyword", "dpkg-reconfigure")).await;
    assert_eq!(names(&kw), vec!["apt.txt"]);
    // A paraphrase with no word in common: the keyword leg finds nothing, the vector leg does.
    let q = "How does foliage convert daylight into nourishment?";
    assert!(!names(&search(&app, &vs, mode("keyword", q)).await)
        .contains(&"photosynthesis.txt".to_owned()));
    assert_eq!(
        names(&search(&app, &vs, mode("vector", q)).await)[0],
        "photosynthesis.txt"
    );
    // Hybrid (the default) gets both right.
    for q in [
        "dpkg-reconfigure",
        "How does foliage convert daylight into nourishment?",
    ] {
        let want = if q.starts_with("dpkg") {
            "apt.txt"
        } else {
            "photosynthesis.txt"
        };
        assert_eq!(
            names(&search(&app, &vs, json!({"query": q})).await)[0],
            want,
            "{q}"
        );
        assert_eq!(
            names(&search(&app, &vs, mode("hybrid", q)).await)[0],
            want,
            "{q}"
        );
    }
    // RRF: a chunk first in both legs scores 1.
    let both = search(
        &app,
        &vs,
        json!({"query": "Mount Vesuvius eruptions of ash and lava",
        "search_mode": "hybrid", "ranking_options": {"ranker": "rrf"}}),
    )
    .await;
    assert_eq!(names(&both)[0], "volcano.txt");
    assert!((scores(&both)[0] - 1.0).abs() < 1e-6, "{both}");
}

#[tokio::test]
async fn rankers_thresholds_filters_and_lists() {
    let app = TestApp::spawn().await;
    let vs = store_with_docs(&app).await;
    let q = "sourdough bread dough";

    // Weighted with alpha 1 is the vector leg, with alpha 0 the keyword leg, scores included.
    let vector = search(&app, &vs, json!({"query": q, "search_mode": "vector"})).await;
    let keyword = search(&app, &vs, json!({"query": q, "search_mode": "keyword"})).await;
    for (alpha, leg) in [(1.0, &vector), (0.0, &keyword)] {
        for ranking_options in [
            json!({"ranker": "weighted", "alpha": alpha}),
            json!({"ranker": {"type": "weighted", "alpha": alpha}}),
        ] {
            let w = search(
                &app,
                &vs,
                json!({"query": q, "search_mode": "hybrid", "ranking_options": ranking_options}),
            )
            .await;
            assert_eq!(names(&w)[0], names(leg)[0]);
            assert!((scores(&w)[0] - scores(leg)[0]).abs() < 1e-6, "{w} {leg}");
        }
    }
    // RRF's impact factor: with a small one, rank 2 of one leg scores far below rank 1 of both.
    let rrf = search(
        &app,
        &vs,
        json!({"query": q, "search_mode": "hybrid",
        "ranking_options": {"ranker": "rrf", "impact_factor": 1}}),
    )
    .await;
    assert_eq!(names(&rrf)[0], "bread.txt");
    assert!((scores(&rrf)[0] - 1.0).abs() < 1e-6);
    assert!(scores(&rrf)[1] < 0.6, "{rrf}");

    // The threshold compares with the answered score, in every mode.
    for m in ["vector", "keyword", "hybrid"] {
        let all = search(&app, &vs, json!({"query": q, "search_mode": m})).await;
        let cut = scores(&all)[0] - 1e-4;
        let some = search(
            &app,
            &vs,
            json!({"query": q, "search_mode": m,
            "ranking_options": {"score_threshold": cut}}),
        )
        .await;
        assert!(
            !scores(&some).is_empty() && scores(&some).iter().all(|s| *s >= cut),
            "{m}"
        );
        if m != "keyword" {
            // The keyword leg finds only the one file that names these words.
            assert!(scores(&some).len() < scores(&all).len(), "{m}");
        }
    }
    // BM25 on 0..1 never reaches 1.
    let none = search(
        &app,
        &vs,
        json!({"query": q, "search_mode": "keyword",
        "ranking_options": {"score_threshold": 1.0}}),
    )
    .await;
    assert!(names(&none).is_empty());

    // Filters apply to both legs.
    let not_apt = json!({"type": "ne", "key": "topic", "value": "apt"});
    for m in ["keyword", "hybrid"] {
        let res = search(
            &app,
            &vs,
            json!({"query": "dpkg-reconfigure", "search_mode": m, "filters": not_apt}),
        )
        .await;
        assert!(!names(&res).contains(&"apt.txt".to_owned()), "{m}: {res}");
    }

    // A list query is fused across its sub-queries: each sub-query's best comes first, alike.
    let list = search(
        &app,
        &vs,
        json!({"query": ["Vesuvius", "sourdough"], "search_mode": "keyword"}),
    )
    .await;
    let mut top: Vec<String> = names(&list)[..2].to_vec();
    top.sort();
    assert_eq!(top, vec!["bread.txt", "volcano.txt"]);
    assert!((scores(&list)[0] - scores(&list)[1]).abs() < 1e-6, "{list}");
    assert!(
        (scores(&list)[0] - 0.5).abs() < 1e-6,
        "first in one of two lists: {list}"
    );
    assert_eq!(list["search_query"], json!(["Vesuvius", "sourdough"]));
}

#[tokio::test]
async fn rewritten_queries_and_bad_options() {
    let app = TestApp::spawn().await;
    let vs = store_with_docs(&app).await;
    let res = search(
        &app,
        &vs,
        json!({"query": "How do I use dpkg-reconfigure to change the time zone?", "rewrite_query": true, "search_mode": "keyword"}),
    )
    .await;
    // What the keyword leg searched is answered, as OpenAI answers its rewritten query.
    assert_eq!(
        res["search_query"],
        json!(["dpkg-reconfigure change time zone"])
    );
    assert_eq!(names(&res)[0], "apt.txt");

    let bad = [
        (json!({"query": "x", "search_mode": "fuzzy"}), "search_mode"),
        (
            json!({"query": "x", "ranking_options": {"ranker": "bm42"}}),
            "ranking_options",
        ),
        (
            json!({"query": "x", "ranking_options": {"ranker": "weighted", "alpha": 1.5}}),
            "ranking_options",
        ),
        (
            json!({"query": "x", "ranking_options": {"ranker": "rrf", "impact_factor": 0}}),
            "ranking_options",
        ),
        (
            json!({"query": "x", "ranking_options": {"ranker": 7}}),
            "ranking_options",
        ),
    ];
    for (body, param) in bad {
        let (status, err) = app
            .post_json(&format!("/v1/vector_stores/{vs}/search"), body.clone())
            .await;
        assert_eq!(status, 400, "{body}");
        let e = assert_error(&err, "invalid_request_error");
        assert_eq!(e["param"], param, "{body}");
    }
    // Reranking needs a model the operator brings.
    let (status, err) = app
        .post_json(
            &format!("/v1/vector_stores/{vs}/search"),
            json!({"query": "x", "ranking_options": {"ranker": "rerank"}}),
        )
        .await;
    assert_eq!(status, 400);
    let e = assert_error(&err, "invalid_request_error");
    assert!(
        e["message"].as_str().unwrap().contains("--reranker-model"),
        "{e}"
    );
}

/// An index written before keyword vectors: the start queues a durable job per store, searches
/// work throughout (the keyword leg finds nothing until the job ran), and afterwards every
/// point is found by keyword once.
#[tokio::test]
async fn an_older_index_gets_keyword_vectors_by_a_job() {
    if crate::remote_backends() {
        // The upgrade is of the embedded index's files; the Qdrant server's collection is
        // created with both vectors (see qdrant_server.rs).
        eprintln!("not on remote backends: this test rewrites the embedded index's files");
        return;
    }
    let app = TestApp::spawn().await;
    let vs = store_with_docs(&app).await;
    let dir = app.stop().await;
    EdgeIndex::forget_keyword_vectors(&dir.path().join("data").join("index")).unwrap();

    let app = TestApp::spawn_in(dir, |_| {}).await;
    let store = VectorStoreId::parse(&vs).unwrap();
    let points = app.state.index.count(Some(&store), None).await.unwrap();
    assert_eq!(
        app.state.index.missing_keywords(&store).await.unwrap(),
        points
    );
    let kw = json!({"query": "dpkg-reconfigure", "search_mode": "keyword"});
    assert!(names(&search(&app, &vs, kw.clone()).await).is_empty());
    assert_eq!(
        names(&search(&app, &vs, json!({"query": "dpkg-reconfigure"})).await)[0],
        "apt.txt",
        "hybrid still answers from its vector leg"
    );
    assert_eq!(app.drain().await, 1, "one keyword job for the one store");
    assert_eq!(app.state.index.missing_keywords(&store).await.unwrap(), 0);
    assert_eq!(
        app.state.index.count(Some(&store), None).await.unwrap(),
        points
    );
    assert_eq!(names(&search(&app, &vs, kw).await), vec!["apt.txt"]);

    // A second start finds nothing to do.
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, |_| {}).await;
    assert_eq!(app.drain().await, 0);
}

/// A cross-encoder built by `scripts/make-test-reranker.py` whose judgement is known: each
/// `oven` in a chunk adds 5 to its logit, every other token 0.
fn test_reranker(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("reranker");
    let python = std::env::var("RAGSTORE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let made = std::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/make-test-reranker.py"
        ))
        .arg(&out)
        .args([
            "--models",
            concat!(env!("CARGO_MANIFEST_DIR"), "/models/all-MiniLM-L6-v2"),
        ])
        .args(["--boost", "oven=5"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        made.status.success(),
        "scripts/make-test-reranker.py failed (it needs `pip install -r tests/python/requirements.txt`): {}",
        String::from_utf8_lossy(&made.stderr)
    );
    out
}

/// `ranker: "rerank"` with `--reranker-model`: the fused candidates are re-scored by the
/// cross-encoder (the logistic of its logit), which here overturns the legs' order; thresholds
/// apply to the new scores; a list query takes each chunk's best score over its queries.
#[tokio::test]
async fn a_cross_encoder_reranks_the_candidates() {
    let models = tempfile::tempdir().unwrap();
    let dir = test_reranker(models.path());
    let app = TestApp::spawn_with(|c| c.reranker_model = Some(dir.clone())).await;
    let vs = store_with_docs(&app).await;
    let query = "Why do volcanoes erupt lava and ash?";
    let fused = search(&app, &vs, json!({"query": query})).await;
    assert_eq!(names(&fused)[0], "volcano.txt");

    let reranked = search(
        &app,
        &vs,
        json!({"query": query, "ranking_options": {"ranker": "rerank"}}),
    )
    .await;
    let (n, s) = (names(&reranked), scores(&reranked));
    assert_eq!(n[0], "bread.txt", "{reranked}");
    // One `oven`: logistic(5); no `oven`: logistic(0).
    assert!((s[0] - 0.99331).abs() < 1e-3, "{s:?}");
    assert!(s[1..].iter().all(|x| (x - 0.5).abs() < 1e-3), "{s:?}");
    assert_eq!(n.len(), names(&fused).len().min(10));

    let strict = search(
        &app,
        &vs,
        json!({"query": query, "ranking_options": {"ranker": "rerank", "score_threshold": 0.9}}),
    )
    .await;
    assert_eq!(names(&strict), ["bread.txt"]);

    // Filters still narrow the candidates before the model sees them.
    let filtered = search(
        &app,
        &vs,
        json!({"query": query, "ranking_options": {"ranker": "rerank"},
               "filters": {"type": "ne", "key": "topic", "value": "bread"}}),
    )
    .await;
    assert!(
        !names(&filtered).contains(&"bread.txt".to_owned()),
        "{filtered}"
    );
    assert!(scores(&filtered).iter().all(|x| (x - 0.5).abs() < 1e-3));

    // A list query, in keyword mode: candidates from both queries, each scored by the model.
    let listed = search(
        &app,
        &vs,
        json!({"query": ["magma eruption", "flour and water"], "search_mode": "keyword",
               "ranking_options": {"ranker": "rerank"}, "max_num_results": 3}),
    )
    .await;
    let n = names(&listed);
    assert_eq!(n[0], "bread.txt", "{listed}");
    assert!(n.contains(&"volcano.txt".to_owned()), "{listed}");
    app.stop().await;
}

/// A directory that is not a cross-encoder stops the start with a message naming what is
/// missing.
#[tokio::test]
async fn a_reranker_directory_without_a_model_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ragstore::Config::for_data_dir(dir.path().join("data"));
    config.models_dir = crate::models_dir();
    config.reranker_model = Some(dir.path().join("nothing-here"));
    let err = ragstore::App::build(config)
        .await
        .err()
        .expect("the start fails");
    assert!(format!("{err:#}").contains("model.onnx"), "{err:#}");
}

/// A point whose file has no row (written by a job that outlived its file's purge, e.g. a worker
/// cut off past its lease) is never answered, in any mode; the next hits take its place.
#[tokio::test]
async fn a_point_of_a_file_without_a_row_is_never_answered() {
    use ragstore::domain::{FileId, ProjectId};
    use ragstore::index::{point_id, Point};
    let app = TestApp::spawn().await;
    let vs = store_with_docs(&app).await;
    let store = VectorStoreId::parse(&vs).unwrap();
    let ghost = FileId::generate();
    let text = "Volcanoes erupt zanzibarquux magma lava ash eruption volcano";
    let vector = app
        .state
        .pipeline
        .embedder
        .embed(vec![text.to_owned()])
        .await
        .unwrap()
        .remove(0);
    app.state
        .index
        .upsert(vec![Point {
            id: point_id(&ghost, &store, 0),
            vector,
            vector_store_id: store.clone(),
            project_id: ProjectId::default_project(),
            file_id: ghost.clone(),
            chunk_index: 0,
            text: text.to_owned(),
            attributes: Default::default(),
            extra: Default::default(),
        }])
        .await
        .unwrap();
    for mode in ["vector", "keyword", "hybrid"] {
        let res = search(
            &app,
            &vs,
            json!({"query": "zanzibarquux volcano eruption", "search_mode": mode, "max_num_results": 2}),
        )
        .await;
        let ids: Vec<&str> = res["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["file_id"].as_str().unwrap())
            .collect();
        assert!(!ids.contains(&ghost.as_str()), "{mode}: {res}");
        assert_eq!(names(&res)[0], "volcano.txt", "{mode}: {res}");
        // Only volcano.txt has these words; every chunk has a vector.
        let expected = if mode == "keyword" { 1 } else { 2 };
        assert_eq!(
            ids.len(),
            expected,
            "{mode}: the next hit takes the dropped one's place: {res}"
        );
    }
    app.stop().await;
}

/// The vector of a chunk cut from the middle of a section is made from the chunk read after its
/// section's title: two files with the same body under different headings give their middle
/// chunks different vectors, and a question about one title finds that file's chunks first.
/// The hits' text is the chunk alone (the title is in no chunk but the first).
#[tokio::test]
async fn a_chunk_is_embedded_after_its_section_title() {
    let app = TestApp::spawn().await;
    let body: String = (0..12)
        .map(|i| {
            format!(
                "On day {i} the committee met again to go through the schedule, read the \
                 minutes of the previous meeting aloud, agreed on the next steps and closed \
                 the session before noon without any further business.\n\n"
            )
        })
        .collect();
    let (status, vs) = app.post_json("/v1/vector_stores", json!({})).await;
    assert_eq!(status, 200, "{vs}");
    let vs = vs["id"].as_str().unwrap().to_owned();
    for (name, title) in [
        ("cacti.md", "How desert cacti store water"),
        ("tax.md", "Corporate tax filing deadlines"),
    ] {
        let f = app
            .upload(
                name,
                format!("# {title}\n\n{body}").into_bytes(),
                "assistants",
            )
            .await;
        let (status, res) = app
            .post_json(
                &format!("/v1/vector_stores/{vs}/files"),
                json!({"file_id": f["id"], "chunking_strategy": {"type": "static",
                    "static": {"max_chunk_size_tokens": 120, "chunk_overlap_tokens": 0}}}),
            )
            .await;
        assert_eq!(status, 200, "{res}");
    }
    app.drain().await;

    let res = search(
        &app,
        &vs,
        json!({"query": "How do desert cacti store water?", "search_mode": "vector",
               "max_num_results": 50}),
    )
    .await;
    let hits = res["data"].as_array().unwrap();
    let text = |h: &Value| h["content"][0]["text"].as_str().unwrap().to_owned();
    // Search returns the chunk alone: the title is only in the first chunk, its heading.
    for h in hits {
        let t = text(h);
        assert!(
            !t.contains("cacti") || t.starts_with("# How desert cacti"),
            "{t:?}"
        );
    }
    // The chunks after the first hold the same paragraphs in both files; only their section's
    // title tells them apart.
    let middle = |file: &str| -> Vec<f64> {
        hits.iter()
            .filter(|h| h["filename"] == file && !text(h).starts_with('#'))
            .map(|h| h["score"].as_f64().unwrap())
            .collect()
    };
    let (cacti, tax) = (middle("cacti.md"), middle("tax.md"));
    assert!(cacti.len() >= 3 && tax.len() >= 3, "{res}");
    let lowest_cacti = cacti.iter().copied().fold(f64::INFINITY, f64::min);
    let highest_tax = tax.iter().copied().fold(0.0, f64::max);
    assert!(lowest_cacti > highest_tax + 0.2, "{cacti:?} vs {tax:?}");
}
