//! Search latency over HTTP with 100 000-point stores: `cargo bench --bench search`.
//!
//! Runs on the embedded index, then, if `RAGSTORE_BENCH_QDRANT_URL` names a Qdrant server's
//! gRPC URL, the same run again with the app on that server (`--qdrant-url`, a collection of
//! its own, dropped at the end): the same points, queries and cases, one engine after the other.
//! `RAGSTORE_BENCH_ENGINES=qdrant` (or `embedded`) runs only one of them.
//!
//! Builds the real `App` on a temp dir (local all-MiniLM-L6-v2 from `<repo>/models`, ingestion
//! workers off), creates the vector stores with `POST /v1/vector_stores`, then loads synthetic
//! points straight through the `VectorIndex` seam (`state.index.upsert`, 1 000 per call):
//!
//! - scenario A: one store with 100 000 points;
//! - scenario B: ten stores with 10 000 points each.
//!
//! Both live in the one shard (200 000 points in all), as they would in a server. Points are
//! random unit vectors (seeded xorshift, Gaussian, so uniform on the sphere) of the model's
//! dimensions, 100 points per `FileId::generate()` file (each with its row in the database: a
//! search answers only hits of files that have one), a short text, and attributes
//! `{"category": "c0".."c9" (random), "year": 2000 + i % 25}`. `index.maintain()` then builds the
//! HNSW graph (timed). Until then a first server (the app's router on `axum::serve`) answers;
//! The index's own upkeep is off (`index_upkeep_secs = 0`), so no background run can overlap the
//! load and turn the timed `maintain` into a no-op.
//!
//! Then, per case, 20 warm-up requests and 300 timed sequential `POST /v1/vector_stores/{vs}/search`
//! requests with distinct query strings (so the query embedding is part of every request) and
//! default `max_num_results` (10):
//!
//! - A, no filter;  A, filter `{"type":"eq","key":"category","value":"c3"}`;
//! - B (a random one of the ten stores per request), no filter and the same filter;
//!
//! each with `search_mode` `vector`, `keyword` and `hybrid` (the default: both legs, 50
//! candidates each, weighted). Chunk texts are 40 words, a third from the queries' adjectives
//! and nouns, the rest from a skewed synthetic vocabulary of 20 000 words.
//!
//! For the breakdown it also times the query embedding alone and `index.search` alone (no HTTP,
//! the same four cases), and 30 requests on A before `maintain` (plain segment, brute force).
//! Prints p50/p90/p99/max in ms per case, how many calls returned fewer than the 10 hits asked
//! for (every store holds ~1 000 or more `c3` points, so an exact search always finds 10), load
//! averages, and VmHWM/VmRSS of this process after loading and after searching (the HTTP client
//! runs in the same process, on the same multi-thread tokio runtime, one worker thread per
//! core). Targets: p99 < 50 ms (vector search), hybrid p99 < 30 ms. It prints figures only; nothing is asserted on time. The run
//! aborts if a request fails or a hit escapes the filter.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::future::{Future, IntoFuture};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ragstore::domain::{
    AttrValue, Attributes, FileId, FileRecord, FileStatus, Filter, ProjectId, Purpose,
    VectorStoreId,
};
use ragstore::index::qdrant::QdrantIndex;
use ragstore::index::{point_id, Leg, Point, SearchQuery};
use ragstore::{App, Backends, Config};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

const POINTS_A: usize = 100_000;
const STORES_B: usize = 10;
const POINTS_PER_STORE_B: usize = 10_000;
const UPSERT_BATCH: usize = 1_000;
const POINTS_PER_FILE: usize = 100;
const WARMUP: usize = 20;
const REQUESTS: usize = 300;
const BEFORE_MAINTAIN_REQUESTS: usize = 30;
const SEED: u64 = 0x5eed_2024_0bad_cafe;

fn main() -> Result<()> {
    let qdrant = std::env::var("RAGSTORE_BENCH_QDRANT_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let only = std::env::var("RAGSTORE_BENCH_ENGINES").unwrap_or_default();
    let wanted = |engine: &str| only.is_empty() || only.split(',').any(|e| e.trim() == engine);
    let mut engines = Vec::new();
    if wanted("embedded") {
        engines.push(None);
    }
    match qdrant {
        Some(url) if wanted("qdrant") => engines.push(Some(url)),
        Some(_) => {}
        None => println!(
            "(RAGSTORE_BENCH_QDRANT_URL is not set: the Qdrant-server run is skipped; \
             scripts/qdrant-test-server.sh starts a server)"
        ),
    }
    for qdrant in engines {
        // The data dir outlives the runtime: tasks still holding the index (a server after an
        // error) flush it when the runtime drops them.
        let dir = tempfile::tempdir()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let result = runtime.block_on(run(dir.path(), qdrant.as_deref()));
        drop(runtime);
        dir.close()?;
        result?;
        println!();
    }
    Ok(())
}

// --- a tiny seeded RNG (xorshift64*) -------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Standard normal (Box-Muller).
    fn gauss(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform on the unit sphere.
    fn unit_vector(&mut self, dims: usize) -> Vec<f32> {
        let v: Vec<f64> = (0..dims).map(|_| self.gauss()).collect();
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        v.into_iter().map(|x| (x / norm) as f32).collect()
    }
}

// --- queries -------------------------------------------------------------------------------------

const ADJ: &[&str] = &[
    "old", "quiet", "restless", "honest", "narrow", "golden", "bitter", "ancient", "careful",
    "curious", "distant", "fragile", "hidden", "famous", "sudden", "gentle", "crooked", "lonely",
];
const NOUN: &[&str] = &[
    "river",
    "harbour",
    "lantern",
    "orchard",
    "village",
    "market",
    "bridge",
    "tower",
    "ledger",
    "contract",
    "invoice",
    "engine",
    "policy",
    "harvest",
    "fever",
    "remedy",
    "castle",
    "compass",
    "merchant",
    "physician",
    "council",
    "frontier",
    "estate",
    "parish",
    "budget",
    "warranty",
];
const FRAME: &[&str] = &[
    "what happened to the {a} {n} near the {m}",
    "how does the {n} affect the {a} {m}",
    "{a} {n} and {m} in {y}",
    "why was the {n} so {a}",
    "rules for the {n} of a {a} {m}",
    "summary of the {m} report on {a} {n}s",
    "who owns the {a} {n}",
    "{n} {m} {a} {y} overview",
    "compare the {n} with the {a} {m}",
    "when did the {m} close the {a} {n}",
];

struct Queries {
    rng: Rng,
    issued: u64,
}

impl Queries {
    /// A query string never issued before in this run.
    fn next(&mut self) -> String {
        self.issued += 1;
        let frame = self.rng.pick(FRAME);
        let q = frame
            .replace("{a}", self.rng.pick(ADJ))
            .replace("{n}", self.rng.pick(NOUN))
            .replace("{m}", self.rng.pick(NOUN))
            .replace("{y}", &(1990 + self.rng.below(40)).to_string());
        format!("{q} (#{})", self.issued)
    }
}

// --- measurements --------------------------------------------------------------------------------

struct Stats {
    ms: Vec<f64>,
    /// Hits of each timed call that returned fewer than 10 (`None`: not a search).
    short: Option<Vec<usize>>,
}

impl Stats {
    fn new(mut ms: Vec<f64>, hits: &[usize]) -> Self {
        ms.sort_by(f64::total_cmp);
        let short = Some(hits.iter().copied().filter(|&h| h < 10).collect());
        Self { ms, short }
    }

    fn timings(ms: Vec<f64>) -> Self {
        Self {
            short: None,
            ..Self::new(ms, &[])
        }
    }

    /// Nearest-rank percentile.
    fn pct(&self, p: f64) -> f64 {
        let n = self.ms.len();
        let rank = ((p / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.ms[rank.min(n) - 1]
    }

    fn line(&self, name: &str) -> String {
        format!(
            "  {name:<46} {:>5} {:>8.2} {:>8.2} {:>8.2} {:>8.2}   {}",
            self.ms.len(),
            self.pct(50.0),
            self.pct(90.0),
            self.pct(99.0),
            self.ms.last().copied().unwrap_or(0.0),
            match &self.short {
                None => "-".to_owned(),
                Some(short) => match short.iter().min() {
                    None => "0".to_owned(),
                    Some(min) => format!("{} (fewest {min})", short.len()),
                },
            }
        )
    }
}

fn header() -> String {
    format!(
        "  {:<46} {:>5} {:>8} {:>8} {:>8} {:>8}   {}",
        "case (ms)", "n", "p50", "p90", "p99", "max", "calls with < 10 hits"
    )
}

fn proc_status(field: &str) -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(
            || "n/a".to_owned(),
            |kib| format!("{:.1} MB", kib * 1024.0 / 1e6),
        )
}

fn memory() -> String {
    format!(
        "VmHWM {}, VmRSS {}",
        proc_status("VmHWM"),
        proc_status("VmRSS")
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}

async fn timed<T>(f: impl Future<Output = Result<T>>) -> Result<(T, f64)> {
    let started = Instant::now();
    let out = f.await?;
    Ok((out, started.elapsed().as_secs_f64() * 1e3))
}

// --- HTTP ----------------------------------------------------------------------------------------

struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let res = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await?;
        let status = res.status();
        let bytes = res.bytes().await?;
        if !status.is_success() {
            bail!(
                "POST {path} -> {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    async fn create_store(&self, name: &str) -> Result<VectorStoreId> {
        let v = self
            .post("/v1/vector_stores", &json!({ "name": name }))
            .await?;
        let id = v["id"].as_str().ok_or_else(|| anyhow!("no id in {v}"))?;
        VectorStoreId::parse(id).ok_or_else(|| anyhow!("bad store id {id}"))
    }

    /// One search; returns the number of hits. Fails if a hit escaped the filter.
    async fn search(
        &self,
        store: &VectorStoreId,
        query: String,
        filter: Option<&Value>,
        mode: &str,
    ) -> Result<usize> {
        let mut body = json!({ "query": query, "search_mode": mode });
        if let Some(f) = filter {
            body["filters"] = f.clone();
        }
        let v = self
            .post(&format!("/v1/vector_stores/{store}/search"), &body)
            .await?;
        let data = v["data"]
            .as_array()
            .ok_or_else(|| anyhow!("no data in {v}"))?;
        if filter.is_some() && data.iter().any(|h| h["attributes"]["category"] != "c3") {
            bail!("a hit escaped the filter: {v}");
        }
        Ok(data.len())
    }
}

// --- loading -------------------------------------------------------------------------------------

struct Loaded {
    points: usize,
    upsert_secs: f64,
}

/// `n` synthetic points into `store`, `UPSERT_BATCH` per upsert; only the upserts are timed.
async fn load(
    st: &Backends,
    store: &VectorStoreId,
    n: usize,
    dims: usize,
    rng: &mut Rng,
    loaded: &mut Loaded,
) -> Result<()> {
    let mut file = FileId::generate();
    for start in (0..n).step_by(UPSERT_BATCH) {
        let mut points = Vec::with_capacity(UPSERT_BATCH);
        for i in start..n.min(start + UPSERT_BATCH) {
            if i % POINTS_PER_FILE == 0 {
                file = FileId::generate();
                file_row(st, &file).await?;
            }
            let chunk_index = (i % POINTS_PER_FILE) as u32;
            let mut attributes = Attributes::new();
            attributes.insert(
                "category".to_owned(),
                AttrValue::String(format!("c{}", rng.below(10))),
            );
            attributes.insert("year".to_owned(), AttrValue::Number((2000 + i % 25) as f64));
            points.push(Point {
                id: point_id(&file, store, chunk_index),
                vector: rng.unit_vector(dims),
                vector_store_id: store.clone(),
                project_id: ProjectId::default_project(),
                file_id: file.clone(),
                chunk_index,
                text: chunk_text(rng),
                attributes,
                extra: Map::new(),
            });
        }
        loaded.points += points.len();
        let started = Instant::now();
        st.index.upsert(points).await?;
        loaded.upsert_secs += started.elapsed().as_secs_f64();
    }
    Ok(())
}

/// The file's row: a search answers only hits whose file has one.
async fn file_row(st: &Backends, id: &FileId) -> Result<()> {
    let record = FileRecord {
        id: id.clone(),
        project_id: ProjectId::default_project(),
        filename: format!("{id}.txt"),
        purpose: Purpose::Assistants,
        bytes: 1_000,
        created_at: 1,
        expires_at: None,
        status: FileStatus::Processed,
        status_details: None,
        storage_key: FileRecord::storage_key_for(id),
    };
    st.meta.insert_file(&record, None, i64::MAX).await?;
    Ok(())
}

// --- the run -------------------------------------------------------------------------------------

struct Case<'a> {
    name: &'static str,
    stores: &'a [VectorStoreId],
    filter: Option<Value>,
    /// `search_mode`.
    mode: &'static str,
}

/// A chunk's text: 40 words, a third from the queries' adjectives and nouns, the rest from a
/// synthetic vocabulary of 20 000 words with a skewed (Zipf-like) frequency, so BM25 has common
/// and rare terms to weigh.
fn chunk_text(rng: &mut Rng) -> String {
    let mut words = Vec::with_capacity(40);
    for j in 0..40 {
        if j % 3 == 0 {
            words.push(rng.pick(if j % 2 == 0 { NOUN } else { ADJ }).to_owned());
        } else {
            let u = (rng.below(1_000_000) as f64) / 1_000_000.0;
            words.push(format!("w{}", (u * u * u * 20_000.0) as u32));
        }
    }
    words.join(" ")
}

async fn http_case(
    http: &Http,
    case: &Case<'_>,
    queries: &mut Queries,
    rng: &mut Rng,
    warmup: usize,
    n: usize,
) -> Result<Stats> {
    let mut ms = Vec::with_capacity(n);
    let mut hits = Vec::with_capacity(n);
    for i in 0..warmup + n {
        let store = &case.stores[rng.below(case.stores.len())];
        let query = queries.next();
        let (found, t) = timed(http.search(store, query, case.filter.as_ref(), case.mode))
            .await
            .with_context(|| format!("case {}", case.name))?;
        if i >= warmup {
            ms.push(t);
            hits.push(found);
        }
    }
    Ok(Stats::new(ms, &hits))
}

/// One run on the embedded index, or on the Qdrant server at `qdrant`.
async fn run(dir: &std::path::Path, qdrant: Option<&str>) -> Result<()> {
    let models_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut config = Config::for_data_dir(dir.join("data"));
    config.models_dir = models_dir.clone();
    config.workers_enabled = false;
    config.index_upkeep_secs = 0.0;
    if let Some(url) = qdrant {
        config.qdrant.url = Some(url.to_owned());
        config.qdrant.collection_prefix = format!("bench_{}", std::process::id());
    }
    let qdrant_options = qdrant.map(|url| config.qdrant.options(url));
    let embed_sessions = config.embed_thread_count();

    println!("search bench: POST /v1/vector_stores/{{vs}}/search over HTTP, in-process server");
    match qdrant {
        None => println!("  engine: embedded index (qdrant-edge, in this process)"),
        Some(url) => println!("  engine: Qdrant server at {url} (gRPC; another process)"),
    }
    println!(
        "  cores {}, embed sessions {embed_sessions}, models {}, data {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        models_dir.display(),
        dir.display()
    );
    println!("  load average (1/5/15 min) at start: {}", loadavg());

    let (app, build_ms) = timed(async { App::build(config).await }).await?;
    let st = app.backends().clone();
    let dims = st.pipeline.embedder.dims();
    println!(
        "  app built in {:.1} s (model {}, {dims} dims); {}",
        build_ms / 1e3,
        st.pipeline.embedder.model(),
        memory()
    );

    // Phase 1: the app's router alone (no background maintainer) while stores are created and
    // points loaded.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = Http {
        client: reqwest::Client::new(),
        base: format!("http://{}", listener.local_addr()?),
    };
    let setup_stop = CancellationToken::new();
    let setup_server = tokio::spawn(
        axum::serve(listener, app.router())
            .with_graceful_shutdown(setup_stop.clone().cancelled_owned())
            .into_future(),
    );

    let store_a = http.create_store("bench-A").await?;
    let mut stores_b = Vec::with_capacity(STORES_B);
    for i in 0..STORES_B {
        stores_b.push(http.create_store(&format!("bench-B{i}")).await?);
    }

    let mut rng = Rng::new(SEED);
    let mut loaded = Loaded {
        points: 0,
        upsert_secs: 0.0,
    };
    let load_started = Instant::now();
    load(&st, &store_a, POINTS_A, dims, &mut rng, &mut loaded).await?;
    for s in &stores_b {
        load(&st, s, POINTS_PER_STORE_B, dims, &mut rng, &mut loaded).await?;
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    println!(
        "  loaded {} points (A: 1 x {POINTS_A}, B: {STORES_B} x {POINTS_PER_STORE_B}) in {load_secs:.1} s, \
         of which upserts {:.1} s ({:.0} points/s); {}",
        loaded.points,
        loaded.upsert_secs,
        loaded.points as f64 / loaded.upsert_secs,
        memory()
    );
    // The run's collection, dropped once it succeeded (a failed run leaves it for a look).
    let collection = match &qdrant_options {
        Some(options) => {
            Some(QdrantIndex::open(options, st.pipeline.embedder.model(), dims).await?)
        }
        None => None,
    };
    let count_a = st.index.count(Some(&store_a), None).await?;
    let count_b0 = st.index.count(Some(&stores_b[0]), None).await?;
    let count_all = st.index.count(None, None).await?;
    if count_a != POINTS_A as u64 || count_b0 != POINTS_PER_STORE_B as u64 {
        bail!("index counts: A {count_a}, B0 {count_b0}");
    }
    println!("  index counts: all {count_all}, A {count_a}, B[0] {count_b0}");

    let mut queries = Queries {
        rng: Rng::new(SEED ^ 0x9e37_79b9_7f4a_7c15),
        issued: 0,
    };
    let before = Case {
        name: if qdrant.is_some() {
            "A, no filter, BEFORE maintain (server optimising)"
        } else {
            "A, no filter, BEFORE maintain (plain segment)"
        },
        stores: std::slice::from_ref(&store_a),
        filter: None,
        mode: "vector",
    };
    let before_stats = http_case(
        &http,
        &before,
        &mut queries,
        &mut rng,
        3,
        BEFORE_MAINTAIN_REQUESTS,
    )
    .await?;

    let ((), maintain_ms) = timed(async { Ok(st.index.maintain().await?) }).await?;
    let ((), again_ms) = timed(async { Ok(st.index.maintain().await?) }).await?;
    println!(
        "  index.maintain() ({}): {:.1} s; a second call: {:.0} ms",
        if qdrant.is_some() {
            "until the server's optimisers are done"
        } else {
            "HNSW build + flush"
        },
        maintain_ms / 1e3,
        again_ms
    );
    println!("  after loading + maintain: {}", memory());

    setup_stop.cancel();
    setup_server.await??;

    // Phase 2: the real server, App::serve.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = Http {
        client: reqwest::Client::new(),
        base: format!("http://{}", listener.local_addr()?),
    };
    let stop = CancellationToken::new();
    let server = tokio::spawn(app.serve(listener, stop.clone()));

    let filter = json!({"type": "eq", "key": "category", "value": "c3"});
    let case = |name, stores, filter, mode| Case {
        name,
        stores,
        filter,
        mode,
    };
    let a = std::slice::from_ref(&store_a);
    let cases = [
        case("A (1 store x 100k), no filter", a, None, "vector"),
        case(
            "A (1 store x 100k), category = c3",
            a,
            Some(filter.clone()),
            "vector",
        ),
        case(
            "B (random of 10 stores x 10k), no filter",
            &stores_b,
            None,
            "vector",
        ),
        case(
            "B (random of 10 stores x 10k), category = c3",
            &stores_b,
            Some(filter.clone()),
            "vector",
        ),
        case("keyword: A, no filter", a, None, "keyword"),
        case(
            "keyword: A, category = c3",
            a,
            Some(filter.clone()),
            "keyword",
        ),
        case("keyword: B, no filter", &stores_b, None, "keyword"),
        case(
            "keyword: B, category = c3",
            &stores_b,
            Some(filter.clone()),
            "keyword",
        ),
        case("hybrid: A, no filter", a, None, "hybrid"),
        case(
            "hybrid: A, category = c3",
            a,
            Some(filter.clone()),
            "hybrid",
        ),
        case("hybrid: B, no filter", &stores_b, None, "hybrid"),
        case(
            "hybrid: B, category = c3",
            &stores_b,
            Some(filter.clone()),
            "hybrid",
        ),
    ];
    let mut results = Vec::new();
    let searches_started = Instant::now();
    for case in &cases {
        let stats = http_case(&http, case, &mut queries, &mut rng, WARMUP, REQUESTS).await?;
        eprintln!("search bench: {} done", case.name);
        results.push((case.name, stats));
    }

    // Breakdown, no HTTP: the query embedding alone, and index.search alone on A.
    let mut embed_ms = Vec::with_capacity(REQUESTS);
    let mut vectors = Vec::with_capacity(REQUESTS);
    for i in 0..WARMUP + REQUESTS {
        let q = queries.next();
        let (mut v, t) = timed(async { Ok(st.pipeline.embedder.embed(vec![q]).await?) }).await?;
        if i >= WARMUP {
            embed_ms.push(t);
            vectors.push(v.pop().ok_or_else(|| anyhow!("no vector"))?);
        }
    }
    let c3 = Filter::parse(&filter).map_err(|e| anyhow!(e))?;
    let index_cases = [
        ("index.search alone, A, no filter", &cases[0], None),
        ("index.search alone, A, category = c3", &cases[1], Some(&c3)),
        ("index.search alone, B, no filter", &cases[2], None),
        ("index.search alone, B, category = c3", &cases[3], Some(&c3)),
    ];
    let mut index_results = Vec::new();
    for (name, case, filter) in index_cases {
        let mut ms = Vec::with_capacity(vectors.len());
        let mut found = Vec::with_capacity(vectors.len());
        for v in &vectors {
            let store = &case.stores[rng.below(case.stores.len())];
            let (hits, t) = timed(async {
                Ok(st
                    .index
                    .search(&SearchQuery {
                        store: store.clone(),
                        project: ProjectId::default_project(),
                        leg: Leg::Dense(v.clone()),
                        filter: filter.cloned(),
                        exclude_files: Vec::new(),
                        limit: 10,
                        score_threshold: None,
                    })
                    .await?)
            })
            .await?;
            ms.push(t);
            found.push(hits.len());
        }
        index_results.push((name, Stats::new(ms, &found)));
    }
    let searches_secs = searches_started.elapsed().as_secs_f64();

    println!();
    println!(
        "  HTTP search latency: {WARMUP} warm-up + {REQUESTS} timed sequential requests per case \
         (max_num_results 10, a new query string each time)"
    );
    println!("{}", header());
    for (name, stats) in &results {
        println!("{}", stats.line(name));
    }
    println!("{}", before_stats.line(before.name));
    println!("  breakdown, in-process (no HTTP):");
    println!(
        "{}",
        Stats::timings(embed_ms).line("query embedding alone (embedder.embed, 1 text)")
    );
    for (name, stats) in &index_results {
        println!("{}", stats.line(name));
    }
    println!();
    println!("  targets: p99 < 50 ms (vector); hybrid p99 < 30 ms");
    println!(
        "  searches took {searches_secs:.0} s; after searching: {}",
        memory()
    );
    println!(
        "  (client and server share this process and its tokio runtime; VmHWM is the process peak)"
    );

    stop.cancel();
    server.await??;
    println!("  load average (1/5/15 min) at end: {}", loadavg());
    if let Some(server) = collection {
        server.drop_collection().await?;
    }
    Ok(())
}
