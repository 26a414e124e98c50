#!/usr/bin/env python3
"""What `ranker: "rerank"` costs: search latency with and without a cross-encoder.

Starts the release binary with `--reranker-model` pointing at a MiniLM-L6-sized cross-encoder
(`scripts/make-test-reranker.py --timing-body`: all-MiniLM-L6-v2's six layers under an untrained
one-logit head, the architecture and cost of cross-encoder/ms-marco-MiniLM-L-6-v2), ingests one
document of the corpus (the Debian Reference PDF that scripts/fetch-corpus.sh fetches, by default), then alternates searches with the default
ranker and with `rerank`, and prints p50/p99 of each and their ratio. The reranked order means
nothing here (the head is untrained); only the time does.

    scripts/bench-rerank.py [--bin target/release/ragstore] [--doc tests/corpus/debian-reference.en.pdf]
                            [--searches 40] [--max-results 10]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from openai import OpenAI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUESTIONS = [
    "How do I change the time zone?", "How do I mount a disk image?",
    "What does apt-get autoremove do?", "How do I set up sudo?",
    "Where are the kernel modules?", "How do I back up my home directory?",
    "How do I configure the network interface?", "What is a systemd unit?",
    "How do I list installed packages?", "How do I install a package?",
]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "ragstore"))
    ap.add_argument("--doc", default=os.path.join(ROOT, "tests", "corpus", "debian-reference.en.pdf"))
    ap.add_argument("--searches", type=int, default=40)
    ap.add_argument("--max-results", type=int, default=10)
    ap.add_argument("--port", type=int, default=8391)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-rerank-")
    model = os.path.join(work, "reranker")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "make-test-reranker.py"),
                    model, "--timing-body"], check=True, stdout=subprocess.DEVNULL)
    env = dict(os.environ, RAGSTORE_MODELS_DIR=os.path.join(ROOT, "models"), RAGSTORE_LOG="warn")
    server = subprocess.Popen(
        [args.bin, "serve", "--data-dir", os.path.join(work, "data"),
         "--addr", f"127.0.0.1:{args.port}", "--reranker-model", model], env=env)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{args.port}/v1", api_key="none")
        for _ in range(200):
            try:
                client.models.list()
                break
            except Exception:
                time.sleep(0.2)
        with open(args.doc, "rb") as f:
            file = client.files.create(file=f, purpose="assistants")
        store = client.vector_stores.create(name="rerank-bench", file_ids=[file.id])
        while client.vector_stores.retrieve(store.id).file_counts.in_progress:
            time.sleep(0.5)
        times = {"default": [], "rerank": []}
        for i in range(args.searches + 4):
            q = QUESTIONS[i % len(QUESTIONS)] + f" ({i})"
            for name, extra in (("default", {}), ("rerank", {"ranking_options": {"ranker": "rerank"}})):
                started = time.perf_counter()
                client.vector_stores.search(store.id, query=q, max_num_results=args.max_results,
                                            extra_body=extra)
                if i >= 4:  # warm-up
                    times[name].append((time.perf_counter() - started) * 1000)
        print(f"{args.searches} searches each, max_num_results {args.max_results} "
              f"({max(20, min(50, 2 * args.max_results))} candidates reranked), {os.path.basename(args.doc)}")
        for name, xs in times.items():
            print(f"  {name:8} p50 {pct(xs, 50):8.1f} ms   p99 {pct(xs, 99):8.1f} ms")
        print(f"  rerank / default p50: {pct(times['rerank'], 50) / pct(times['default'], 50):.1f}x")
        print(f"  load average at end: {os.getloadavg()}")
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
