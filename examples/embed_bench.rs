//! Throughput of the local embedder: sentences/s for ~40-word sentences, per thread layout.
//!
//!   scripts/fetch-models.sh && cargo run --example embed_bench [-- <models dir> <sentences>]
//!
//! The model runs in ONNX Runtime (optimised C++) whatever the cargo profile; only tokenizing and
//! chunking are slower in a debug build, so debug figures are a fair lower bound.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Instant;

use ragstore::domain::Chunking;
use ragstore::ingest::chunk::Chunker;
use ragstore::ingest::embed::Embedder;
use ragstore::ingest::local::{LocalEmbedder, MODEL_NAME};

const ROUNDS: usize = 3;

fn sentences(n: usize) -> Vec<String> {
    let words = [
        "the",
        "council",
        "approved",
        "a",
        "new",
        "budget",
        "for",
        "public",
        "libraries",
        "and",
        "schools",
        "while",
        "residents",
        "asked",
        "about",
        "river",
        "pollution",
        "near",
        "old",
        "factory",
        "researchers",
        "measured",
        "levels",
        "of",
        "nitrogen",
        "in",
        "samples",
        "taken",
        "every",
        "week",
        "during",
        "summer",
        "months",
        "results",
        "suggest",
        "that",
        "runoff",
        "from",
        "farms",
        "is",
        "main",
        "source",
        "experts",
        "recommend",
        "buffer",
        "zones",
        "along",
        "banks",
        "to",
        "reduce",
        "impact",
        "on",
        "fish",
    ];
    let mut state = 42u64;
    (0..n)
        .map(|_| {
            let len = 36 + (state % 9) as usize;
            let mut s = String::new();
            for _ in 0..len {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                s.push_str(words[(state >> 33) as usize % words.len()]);
                s.push(' ');
            }
            s.pop();
            s.push('.');
            s
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(500);
    let texts = sentences(n);
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();

    let chunker = Chunker::from_tokenizer_file(&dir.join(MODEL_NAME).join("tokenizer.json"))?;
    let tokens: usize = texts.iter().map(|t| chunker.count_tokens(t)).sum();
    println!(
        "{n} sentences, {:.1} words and {:.1} tokens each on average",
        words as f64 / n as f64,
        tokens as f64 / n as f64
    );
    let document = texts.join(" ");
    let started = Instant::now();
    let chunks = chunker.chunk(&document, Chunking::auto(254), false);
    println!(
        "chunking them as one document (auto, 254/127): {} chunks in {:.0} ms",
        chunks.len(),
        started.elapsed().as_secs_f64() * 1e3
    );

    for (sessions, intra) in [(1, 1), (2, 1), (1, 2)] {
        let started = Instant::now();
        let embedder = LocalEmbedder::load_with(&dir, sessions, intra)?;
        let load = started.elapsed();
        embedder.embed(texts[..8].to_vec()).await?;
        let mut rates = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let v = embedder.embed(texts.clone()).await?;
            anyhow::ensure!(v.len() == n);
            rates.push(n as f64 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "sessions={sessions} intra_threads={intra}: load {:.0} ms, {:.1} sentences/s (median of {ROUNDS}: {:.1?})",
            load.as_secs_f64() * 1e3,
            rates[ROUNDS / 2],
            rates
        );
    }
    Ok(())
}
