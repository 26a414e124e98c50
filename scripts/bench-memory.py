#!/usr/bin/env python3
"""bench-memory.py: ragstore's memory at rest, while ingesting one large document, and over many
small files ingested one after another. Not part of CI; prints figures, asserts nothing.

    python3 scripts/bench-memory.py [--bin target/release/ragstore] [--files 1000] [--mb 5]

Starts `ragstore serve` on a fresh data dir (its defaults, the models in ./models) and reads the
server's /proc/PID/status:
  idle        VmRSS once it answers /health and has been idle for 5 s;
  large doc   a generated plain-text document of --mb megabytes (prose from the Debian corpus
              if tests/corpus is there, else generated words) uploaded and attached to a
              store; peak = VmHWM reset (clear_refs) just before the upload, time to completed,
              and time to first searchable: from the upload request until a search for words
              of the document's first paragraph returns a chunk of it (polled every 0.1 s);
  many files  --files small documents (2-8 KB each) uploaded and attached one after another
              (each polled to `completed` before the next); VmRSS after every 10 % of them, and
              the growth from the first 10 % to the end.
Needs the `openai` package (pip install openai).
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from openai import OpenAI

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def mb(k):
    return f"{k / 1024:.0f} MB"


def rss(pid):
    """VmRSS, with its anonymous (heap) and file-backed (binary, libraries, the index's
    memory-mapped segments) parts."""
    return (f"{mb(kib(pid, 'VmRSS'))} (anon {mb(kib(pid, 'RssAnon'))}, "
            f"file {mb(kib(pid, 'RssFile'))})")


def words_source():
    corpus = os.path.join(REPO, "tests", "corpus")
    text = ""
    if os.path.isdir(corpus):
        for name in sorted(os.listdir(corpus)):
            if name.endswith(".ref.txt"):
                with open(os.path.join(corpus, name), encoding="utf-8", errors="replace") as f:
                    text += f.read() + "\n\n"
    words = text.split()
    if len(words) < 1000:
        rng = random.Random(7)
        vocab = [
            "index", "vector", "store", "search", "document", "chunk", "model", "token", "server",
            "package", "install", "config", "network", "kernel", "memory", "process", "file",
        ]
        words = [rng.choice(vocab) for _ in range(200_000)]
    return words


def document(words, nbytes, seed):
    rng = random.Random(seed)
    out, size = [], 0
    while size < nbytes:
        start = rng.randrange(0, max(1, len(words) - 120))
        para = " ".join(words[start:start + rng.randrange(40, 120)]) + "\n\n"
        out.append(para)
        size += len(para)
    return "".join(out).encode()


def wait_health(base, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("ragstore exited during start-up")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit("ragstore did not start")


def ingest(client, vs_id, name, data, probe=None):
    """Uploads, attaches and polls to the end. With `probe` (a query), also searches until a
    hit comes back and returns the seconds from the upload request to that hit."""
    started = time.time()
    first = None
    f = client.files.create(file=(name, data), purpose="assistants")
    client.vector_stores.files.create(vector_store_id=vs_id, file_id=f.id)
    while True:
        if probe is not None and first is None:
            hits = client.vector_stores.search(vector_store_id=vs_id, query=probe, max_num_results=1)
            if hits.data:
                first = time.time() - started
        vf = client.vector_stores.files.retrieve(vector_store_id=vs_id, file_id=f.id)
        if vf.status != "in_progress":
            if vf.status != "completed":
                print(f"  {name}: {vf.status} {vf.last_error}", file=sys.stderr)
            return first
        time.sleep(0.1 if probe is not None else 0.05)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "ragstore"))
    ap.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--mb", type=float, default=5.0)
    ap.add_argument("--port", type=int, default=18471)
    ap.add_argument("--server-arg", action="append", default=[])
    args = ap.parse_args()

    data_dir = tempfile.mkdtemp(prefix="ragstore-mem-")
    base = f"http://127.0.0.1:{args.port}"
    proc = subprocess.Popen(
        [args.bin, "serve", "--addr", f"127.0.0.1:{args.port}", "--data-dir", data_dir,
         "--models-dir", args.models_dir, *args.server_arg],
        env={**os.environ, "RAGSTORE_LOG": "warn"},
    )
    try:
        wait_health(base, proc)
        time.sleep(5)
        print(f"idle after start: {rss(proc.pid)}")
        client = OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=600)
        words = words_source()

        if args.mb > 0:
            vs = client.vector_stores.create(name="large")
            big = document(words, int(args.mb * 1e6), 1)
            with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                f.write("5")
            probe = " ".join(big[:400].decode(errors="ignore").split()[:12])
            started = time.time()
            first = ingest(client, vs.id, "large.txt", big, probe=probe)
            took = time.time() - started
            first = "never" if first is None else f"{first:.1f} s"
            print(f"large doc {len(big) / 1e6:.1f} MB: first searchable {first}, completed in "
                  f"{took:.1f} s, peak {mb(kib(proc.pid, 'VmHWM'))}, "
                  f"after {rss(proc.pid)}")
            client.vector_stores.delete(vs.id)
            time.sleep(5)
            print(f"idle after the large doc: {rss(proc.pid)}")

        if args.files > 0:
            vs = client.vector_stores.create(name="many")
            step = max(1, args.files // 10)
            samples = []
            started = time.time()
            for i in range(args.files):
                data = document(words, random.Random(i).randrange(2000, 8000), 100 + i)
                ingest(client, vs.id, f"small-{i}.txt", data)
                if (i + 1) % step == 0:
                    now = (kib(proc.pid, "VmRSS"), kib(proc.pid, "RssAnon"))
                    samples.append((i + 1, *now))
                    print(f"  {i + 1:5d} files: RSS {rss(proc.pid)} ({time.time() - started:.0f} s)",
                          file=sys.stderr)
            print("many files (RSS / anon): "
                  + ", ".join(f"{n}: {mb(r)} / {mb(a)}" for n, r, a in samples))
            if len(samples) >= 2:
                growth = samples[-1][1] - samples[0][1]
                anon = samples[-1][2] - samples[0][2]
                print(f"growth from {samples[0][0]} to {samples[-1][0]} files: {growth / 1024:+.0f} MB "
                      f"(anon {anon / 1024:+.0f} MB)")
        print(f"peak over the run: {mb(kib(proc.pid, 'VmHWM'))} (since the last reset)")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
