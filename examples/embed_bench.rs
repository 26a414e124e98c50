//! Throughput and memory of the local embedder on real text, per way of running the model.
//!
//!   scripts/fetch-models.sh
//!   cargo build --release --example embed_bench
//!   target/release/examples/embed_bench table TEXT_FILE [CHUNKS]
//!   target/release/examples/embed_bench once TEXT_FILE [CHUNKS] [key=value ...]
//!
//! The text is cut as the server cuts it (`auto`: 254-token chunks overlapping by 127) and
//! embedded in the server's pattern: one call of 32 chunks at a time. `mixed=1` cuts it into
//! chunks of 32, 64, 128 and 254 tokens instead, shuffled. Tokens per second count what the
//! model reads: each chunk's tokens plus [CLS] and [SEP], no padding.
//!
//! `table` runs every layout in this one process, round after round, and prints the median
//! tokens/s of each. `once` runs one layout and prints its tokens/s, the process's RSS after
//! loading (idle) and its peak RSS (VmHWM): run it once per layout, as separate processes, for
//! memory figures. Keys for `once` (defaults in brackets): engine=ort|fastembed [ort],
//! sessions [1], threads [1], batch_tokens [512], arena [0], pattern [0], opt [3], spin [0],
//! model [model.onnx], models [./models], mixed [0]. `engine=fastembed` is the embedder as it
//! was before it used `ort` directly (fastembed, batches of 32 texts, arena and memory pattern
//! on); run it with `model=<the old int8 file>` to compare against it.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use fastembed::{
    InitOptionsUserDefined, Pooling, TextEmbedding, TokenizerFiles, UserDefinedEmbeddingModel,
};
use ragstore::domain::Chunking;
use ragstore::ingest::chunk::Chunker;
use ragstore::ingest::embed::Embedder;
use ragstore::ingest::local::{onnx_runtime, LocalEmbedder, LocalOptions, MODEL_NAME};

/// Texts per call, as an ingestion worker sends them.
const CALL: usize = 32;

fn chunks(chunker: &Chunker, text: &str, mixed: bool, limit: usize) -> Vec<(String, usize)> {
    let sizes: &[u32] = if mixed { &[32, 64, 128, 254] } else { &[254] };
    let mut out = Vec::new();
    for &max in sizes {
        let chunking = Chunking {
            max_tokens: max,
            overlap_tokens: max / 2,
        };
        out.extend(
            chunker
                .chunk(text, chunking, false)
                .into_iter()
                .map(|c| (c.text, c.tokens + 2)),
        );
    }
    if mixed {
        // A fixed shuffle, so calls hold a mix of lengths as a mixed corpus would.
        let mut state = 42u64;
        for i in (1..out.len()).rev() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            out.swap(i, (state >> 33) as usize % (i + 1));
        }
    }
    // Spread over the whole text (its start may be a table of contents).
    let step = out.len().div_ceil(limit.max(1)).max(1);
    out.into_iter().step_by(step).take(limit).collect()
}

/// VmRSS and VmHWM of this process, in MiB.
fn rss() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The embedder as it was before `ort` was used directly: fastembed sessions, the call's texts
/// sorted by length and spread over the sessions in batches of at most 32.
struct Fastembed {
    sessions: Mutex<Vec<TextEmbedding>>,
    count: usize,
}

impl Fastembed {
    fn load(models: &Path, model_file: &str, sessions: usize, threads: usize) -> Self {
        let dir = models.join(MODEL_NAME);
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let model = UserDefinedEmbeddingModel::new(
            read(model_file),
            TokenizerFiles {
                tokenizer_file: read("tokenizer.json"),
                config_file: read("config.json"),
                special_tokens_map_file: read("special_tokens_map.json"),
                tokenizer_config_file: read("tokenizer_config.json"),
            },
        )
        .with_pooling(Pooling::Mean);
        let environment = onnx_runtime(models).unwrap();
        let pool = (0..sessions)
            .map(|_| {
                let options = InitOptionsUserDefined::new()
                    .with_environment(environment.clone())
                    .with_max_length(256)
                    .with_intra_threads(threads);
                TextEmbedding::try_new_from_user_defined(model.clone(), options).unwrap()
            })
            .collect();
        Fastembed {
            sessions: Mutex::new(pool),
            count: sessions,
        }
    }

    fn embed(&self, texts: &[String]) -> usize {
        let mut order: Vec<&String> = texts.iter().collect();
        order.sort_by_key(|t| t.len());
        let per = order.len().div_ceil(self.count).clamp(1, 32);
        std::thread::scope(|scope| {
            let handles: Vec<_> = order
                .chunks(per)
                .map(|batch| {
                    scope.spawn(move || {
                        let mut session = loop {
                            if let Some(s) = self.sessions.lock().unwrap().pop() {
                                break s;
                            }
                            std::thread::yield_now();
                        };
                        let n = session.embed(batch, Some(batch.len())).unwrap().len();
                        self.sessions.lock().unwrap().push(session);
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        })
    }
}

enum Engine {
    Ort(LocalEmbedder),
    Fastembed(Fastembed),
}

impl Engine {
    fn load(models: &Path, keys: &BTreeMap<String, String>) -> Self {
        let num = |k: &str, default: usize| {
            keys.get(k)
                .map_or(default, |v| v.parse().expect("a number"))
        };
        let model = keys.get("model").cloned().unwrap_or("model.onnx".into());
        if keys.get("engine").map(String::as_str) == Some("fastembed") {
            return Engine::Fastembed(Fastembed::load(
                models,
                &model,
                num("sessions", 1),
                num("threads", 1),
            ));
        }
        let options = LocalOptions {
            sessions: num("sessions", 1),
            intra_threads: num("threads", 1),
            batch_tokens: num("batch_tokens", LocalOptions::default().batch_tokens),
            arena: num("arena", 0) == 1,
            memory_pattern: num("pattern", 0) == 1,
            optimization: num("opt", 3) as u8,
            spinning: num("spin", 0) == 1,
            model_file: model,
        };
        Engine::Ort(LocalEmbedder::load_options(models, &options).unwrap())
    }

    async fn embed(&self, texts: Vec<String>) -> usize {
        match self {
            Engine::Ort(e) => e.embed(texts).await.unwrap().len(),
            Engine::Fastembed(e) => e.embed(&texts),
        }
    }

    /// Tokens/s over `chunks`, 32 at a time.
    async fn rate(&self, chunks: &[(String, usize)]) -> f64 {
        let started = Instant::now();
        let mut tokens = 0;
        for call in chunks.chunks(CALL) {
            let n = self
                .embed(call.iter().map(|(t, _)| t.clone()).collect())
                .await;
            assert_eq!(n, call.len());
            tokens += call.iter().map(|(_, n)| n).sum::<usize>();
        }
        tokens as f64 / started.elapsed().as_secs_f64()
    }
}

fn parse_keys(args: impl Iterator<Item = String>) -> BTreeMap<String, String> {
    args.filter_map(|a| {
        let (k, v) = a.split_once('=')?;
        Some((k.to_owned(), v.to_owned()))
    })
    .collect()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    let text_file = PathBuf::from(
        args.next()
            .expect("usage: embed_bench table|once TEXT_FILE [CHUNKS] [key=value ...]"),
    );
    let rest: Vec<String> = args.collect();
    let limit = rest
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(usize::MAX);
    let keys = parse_keys(rest.into_iter());
    let models = PathBuf::from(
        keys.get("models")
            .cloned()
            .unwrap_or_else(|| format!("{}/models", env!("CARGO_MANIFEST_DIR"))),
    );
    let text = std::fs::read_to_string(&text_file).unwrap();
    let chunker =
        Chunker::from_tokenizer_file(&models.join(MODEL_NAME).join("tokenizer.json")).unwrap();
    let mixed = keys.get("mixed").map(String::as_str) == Some("1");
    let chunks = chunks(&chunker, &text, mixed, limit);
    let tokens: usize = chunks.iter().map(|(_, n)| n).sum();
    println!(
        "{} bytes of text -> {} chunks, {tokens} tokens read ({:.1} per chunk{})",
        text.len(),
        chunks.len(),
        tokens as f64 / chunks.len() as f64,
        if mixed { ", mixed lengths" } else { "" }
    );

    match mode.as_str() {
        "once" => {
            let started = Instant::now();
            let engine = Engine::load(&models, &keys);
            let load = started.elapsed().as_secs_f64();
            let (idle, _) = rss();
            let rate = engine.rate(&chunks).await;
            let (_, peak) = rss();
            println!(
                "{keys:?}: load {load:.2} s, {rate:.0} tokens/s, idle RSS {idle:.0} MiB, peak RSS {peak:.0} MiB"
            );
        }
        "table" => {
            let layouts: Vec<(&str, Vec<&str>)> = vec![
                (
                    "fastembed 2x1 (before)",
                    vec!["engine=fastembed", "sessions=2", "model=model_today.onnx"],
                ),
                ("ort 2x1 512 (default)", vec!["sessions=2"]),
                ("ort 1x2 512", vec!["threads=2"]),
                ("ort 2x1 1 text/run", vec!["sessions=2", "batch_tokens=1"]),
                ("ort 2x1 2k", vec!["sessions=2", "batch_tokens=2048"]),
                ("ort 2x1 4k", vec!["sessions=2", "batch_tokens=4096"]),
                ("ort 2x1 8k", vec!["sessions=2", "batch_tokens=8192"]),
                ("ort 2x1 opt=1", vec!["sessions=2", "opt=1"]),
                ("ort 2x1 int8", vec!["sessions=2", "model=model_int8.onnx"]),
            ];
            let mut engines = Vec::new();
            for (name, layout) in &layouts {
                let mut k = keys.clone();
                k.extend(parse_keys(layout.iter().map(|s| s.to_string())));
                if !models
                    .join(MODEL_NAME)
                    .join(k.get("model").map_or("model.onnx", String::as_str))
                    .is_file()
                {
                    println!("{name}: model file missing, skipped");
                    continue;
                }
                let engine = Engine::load(&models, &k);
                engine.embed(vec!["warm up".into()]).await;
                engines.push((name, engine, Vec::new()));
            }
            let rounds = keys.get("rounds").map_or(3, |r| r.parse().unwrap());
            for _ in 0..rounds {
                for (_, engine, rates) in engines.iter_mut() {
                    rates.push(engine.rate(&chunks).await);
                }
            }
            let base = engines.first().map(|(_, _, r)| median(r)).unwrap_or(1.0);
            println!(
                "{:<26} {:>10} {:>9}  rounds",
                "layout", "tokens/s", "vs first"
            );
            for (name, _, rates) in &engines {
                println!(
                    "{name:<26} {:>10.0} {:>8.2}x  {:.0?}",
                    median(rates),
                    median(rates) / base,
                    rates
                );
            }
        }
        _ => panic!("usage: embed_bench table|once TEXT_FILE [CHUNKS] [key=value ...]"),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
