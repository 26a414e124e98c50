#!/usr/bin/env python3
"""bench-replicas.py: scale-out figures, one worker replica against three on the same machine.

What it measures (per run, on a fresh PostgreSQL database, bucket prefix and Qdrant collections)
  One `ragstore serve --role api` replica takes every request; N `--role worker` replicas
  (N = 1, then 3; default flags: 4 workers each, one embedding thread per core each) run the
  jobs. Through the api replica: 420 small distinct text files (~1.5 kB, one chunk each) are
  uploaded and their extract jobs (queued at upload) drained, and a seed store of 20 of them
  is ingested. Then:
  1. Search, idle: --searches sequential searches (one client) on the seed store through the
     api replica: p50 and p99 latency.
  2. Ingest throughput: a file batch of 200 files (set A) into a new store, timed from the
     batch's creation to the first poll (every 0.1 s) that sees it completed: files/s. The CPU
     seconds each process used meanwhile (/proc/<pid>/stat utime+stime: the api replica, the
     worker replicas, PostgreSQL's processes, moto, Qdrant) and the machine's busy CPU
     (/proc/stat) say where the time went.
  3. Search while ingesting: a batch of the other 200 files (set C) into a third store; while
     it runs, the same sequential searches on the seed store through the api replica: p50/p99.
  4. The embedder alone, for reference: set A's chunks (read back with GET .../content) embedded
     again with POST /v1/embeddings on the api replica, 32 per request, one client: chunks/s and
     the api replica's CPU per chunk, to set against the workers' CPU per chunk in 2.
  Printed per configuration: the medians over --runs runs, and the throughput ratio
  (three workers / one). Load averages are printed: the machine may be shared.

Engines: PostgreSQL, an S3-compatible server and a Qdrant server. Those named by
RAGSTORE_TEST_DATABASE_URL (a superuser URL; a database is created per run), RAGSTORE_TEST_S3_URL
(+ AWS_* variables) and RAGSTORE_TEST_QDRANT_URL are used; otherwise the test scripts start
throwaway ones (scripts/pg-test-cluster.sh, s3-test-server.sh, qdrant-test-server.sh) and stop
them at the end.

How to run (from the repository root; needs target/release/ragstore and the models)
  cargo build --release --locked --bin ragstore && scripts/fetch-models.sh
  python3 scripts/bench-replicas.py                 # 3 runs of each configuration
  python3 scripts/bench-replicas.py --runs 1 --workers 1,3

Only the Python standard library (and psql, for CREATE DATABASE) is used. Everything listens on
127.0.0.1. Progress goes to stderr, the report to stdout.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = "all-MiniLM-L6-v2"
SEED_FILES = 20
BATCH_FILES = 200
EMBED_BATCH = 32
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"bench-replicas: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The files: short notes of prose, each its own (seeded).

WORDS = """river valley harbour lantern orchard garden meadow village market bridge chapel tower
castle mill forest field road letter journey winter summer autumn morning evening storm cloud
wind rain snow frost fire hearth kitchen window merchant farmer sailor soldier physician clerk
scholar judge captain shepherd miller weaver blacksmith innkeeper ledger map clock compass
candle ribbon carriage anchor barrel basket bread cheese apple wheat barley stone iron silver
coin debt promise quarrel secret rumour custom harvest famine fever remedy lesson sermon
contract estate parish frontier coast island mountain cliff shore lake bell steeple""".split()
VERBS = """carried watched repaired counted forgot remembered crossed sold bought mended buried
found lost painted measured weighed guarded opened closed followed questioned praised""".split()


def note(rng, i):
    sentences = [f"Record {i} of the survey."]
    while sum(len(s) for s in sentences) < 1400:
        a, b, c = rng.sample(WORDS, 3)
        sentences.append(f"The {a} {rng.choice(VERBS)} the {b} near the {c} "
                         f"in year {rng.randint(1500, 1900)}.")
    return " ".join(sentences)


# ---------------------------------------------------------------------------------------------
# HTTP

def request(method, url, body=None, headers=None, timeout=120):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as res:
        return res.status, res.read()


def get_json(url):
    return json.loads(request("GET", url)[1])


def post_json(url, obj):
    return json.loads(request("POST", url, json.dumps(obj).encode(),
                              {"Content-Type": "application/json"})[1])


def upload(base, name, text):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
            f"assistants\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: text/plain\r\n\r\n").encode() \
        + text.encode() + f"\r\n--{boundary}--\r\n".encode()
    _, out = request("POST", f"{base}/v1/files", body,
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(out)["id"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc

def cpu_secs(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime, stime, cutime, cstime (fields 14-17; after the comm, index 11-14).
        return sum(int(x) for x in fields[11:15]) / CLK_TCK
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0


def descendants(root):
    """root and every process under it."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def machine_busy_secs():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return (sum(v[:8]) - idle) / CLK_TCK


class CpuMeter:
    """CPU seconds of groups of processes between start() and stop()."""

    def __init__(self, groups):
        self.groups = groups  # name -> function returning the pids

    def snapshot(self):
        snap = {name: sum(cpu_secs(p) for p in pids()) for name, pids in self.groups.items()}
        snap["machine (all processes)"] = machine_busy_secs()
        return snap

    def start(self):
        self.t0, self.before = time.monotonic(), self.snapshot()

    def stop(self):
        after, wall = self.snapshot(), time.monotonic() - self.t0
        return wall, {k: after[k] - self.before[k] for k in after}


# ---------------------------------------------------------------------------------------------
# Engines

class Engines:
    def __init__(self, work):
        self.cleanups = []
        env = os.environ
        if env.get("RAGSTORE_TEST_DATABASE_URL"):
            self.pg_admin = env["RAGSTORE_TEST_DATABASE_URL"]
        else:
            out = self.script(["scripts/pg-test-cluster.sh", "start"])
            self.pg_admin = out["RAGSTORE_TEST_DATABASE_URL"]
            d = out["RAGSTORE_PG_TEST_DIR"]
            self.cleanups.append(["scripts/pg-test-cluster.sh", "stop", d])
        if env.get("RAGSTORE_TEST_S3_URL") and env.get("AWS_ENDPOINT_URL"):
            self.s3 = env["RAGSTORE_TEST_S3_URL"]
        else:
            out = self.script(["scripts/s3-test-server.sh", "start"])
            for k, v in out.items():
                os.environ[k] = v
            self.s3 = out["RAGSTORE_TEST_S3_URL"]
            self.cleanups.append(["scripts/s3-test-server.sh", "stop", out["S3_TEST_SERVER_PID"]])
        if env.get("RAGSTORE_TEST_QDRANT_URL"):
            self.qdrant = env["RAGSTORE_TEST_QDRANT_URL"]
        else:
            d = os.path.join(work, "qdrant")
            self.qdrant = subprocess.run(["scripts/qdrant-test-server.sh", "start", d], cwd=REPO,
                                         check=True, capture_output=True, text=True).stdout.strip()
            self.cleanups.append(["scripts/qdrant-test-server.sh", "stop", d])

    @staticmethod
    def script(cmd):
        out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
        found = {}
        for line in out.splitlines():
            if line.startswith("export ") and "=" in line:
                k, v = line[len("export "):].split("=", 1)
                found[k] = v.strip("'\"")
        return found

    def stop(self):
        for c in reversed(self.cleanups):
            subprocess.run(c, cwd=REPO, check=False, capture_output=True)

    def fresh_database(self, name):
        subprocess.run(["psql", "-q", self.pg_admin, "-c", f'CREATE DATABASE "{name}"'],
                       check=True, capture_output=True)
        base, _ = self.pg_admin.rsplit("/", 1)
        return f"{base}/{name}"

    def queue_busy(self, db):
        out = subprocess.run(["psql", "-qtA", db, "-c",
                              "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')"],
                             check=True, capture_output=True, text=True).stdout
        return int(out.strip())

    def pids(self, what):
        """PIDs of an engine: the process listening on its port, and those under it
        (PostgreSQL's backends)."""
        url = {"postgres": self.pg_admin, "moto": os.environ.get("AWS_ENDPOINT_URL", ""),
               "qdrant": self.qdrant}[what]
        port = int(url.split("://", 1)[-1].split("@")[-1].split("/")[0].rsplit(":", 1)[1])
        pid = listener_pid(port)
        return descendants(pid) if pid else []


def listener_pid(port):
    """The process listening on 127.0.0.1:port (or any address), from /proc/net/tcp."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{cols[9]}]")
        except FileNotFoundError:
            continue
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{d}/fd"):
                if os.readlink(f"/proc/{d}/fd/{fd}") in inodes:
                    return int(d)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return None


# ---------------------------------------------------------------------------------------------
# Replicas

class Replica:
    def __init__(self, binary, role, data, shared, extra):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(os.path.join(data + ".log"), "w")
        args = [binary, "serve", "--role", role, "--addr", f"127.0.0.1:{self.port}",
                "--data-dir", data, "--models-dir", os.path.join(REPO, "models"),
                "--database-url", shared["db"], "--storage-url", shared["s3"],
                "--qdrant-url", shared["qdrant"],
                "--qdrant-collection-prefix", shared["prefix"],
                "--rate-uploads", "0", "--rate-searches", "0", "--rate-attaches", "0",
                "--rate-retrievals", "0"] + extra
        env = dict(os.environ, RAGSTORE_LOG="warn")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log, env=env)

    def wait_ready(self):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica exited ({self.proc.returncode}); see {self.log.name}")
            try:
                if request("GET", f"{self.base}/ready", timeout=2)[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("replica never became ready")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def percentile(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def searches(base, vs, queries, stop=None, count=None):
    """Sequential searches (cycling through queries): latencies in ms."""
    out, i = [], 0
    while (count is None or i < count) and not (stop and stop.is_set()):
        q = queries[i % len(queries)]
        t = time.monotonic()
        res = post_json(f"{base}/v1/vector_stores/{vs}/search", {"query": q})
        out.append((time.monotonic() - t) * 1000)
        if not res["data"]:
            raise RuntimeError(f"search found nothing: {q}")
        i += 1
    return out


def wait_batch(base, vs, batch):
    while True:
        b = get_json(f"{base}/v1/vector_stores/{vs}/file_batches/{batch}")
        if b["status"] != "in_progress":
            if b["file_counts"]["completed"] != b["file_counts"]["total"]:
                raise RuntimeError(f"batch ended {b['status']}: {b['file_counts']}")
            return
        time.sleep(0.1)


def one_run(args, engines, work, n_workers, run):
    tag = uuid.uuid4().hex[:10]
    shared = {"db": engines.fresh_database(f"bench_{tag}"),
              "s3": f"{engines.s3.rstrip('/')}/bench-{tag}", "qdrant": engines.qdrant,
              "prefix": f"bench{tag}"}
    binary = os.path.join(REPO, "target", "release", "ragstore")
    replicas = []
    try:
        api = Replica(binary, "api", os.path.join(work, f"{tag}-api"), shared, [])
        replicas.append(api)
        api.wait_ready()
        for i in range(n_workers):
            replicas.append(Replica(binary, "worker", os.path.join(work, f"{tag}-w{i}"), shared,
                                    args.worker_flags.split()))
        for r in replicas:
            r.wait_ready()
        workers = replicas[1:]
        base = api.base

        rng = random.Random(1234 + run)
        texts = [note(rng, i) for i in range(SEED_FILES + 2 * BATCH_FILES)]
        t = time.monotonic()
        ids = [upload(base, f"note-{i:03}.txt", x) for i, x in enumerate(texts)]
        up_s = time.monotonic() - t
        t = time.monotonic()
        while engines.queue_busy(shared["db"]):
            time.sleep(0.2)
        log(f"  {len(ids)} uploads {up_s:.1f} s; their extract jobs drained "
            f"{time.monotonic() - t:.1f} s later")
        seed, set_a, set_c = (ids[:SEED_FILES], ids[SEED_FILES:SEED_FILES + BATCH_FILES],
                              ids[SEED_FILES + BATCH_FILES:])
        s0 = post_json(f"{base}/v1/vector_stores", {"name": "seed", "file_ids": seed})["id"]
        while get_json(f"{base}/v1/vector_stores/{s0}")["file_counts"]["completed"] < SEED_FILES:
            time.sleep(0.2)
        queries = [" ".join(texts[i].split(".")[1:3]) for i in range(SEED_FILES)]

        searches(base, s0, queries, count=10)  # warm-up
        idle = searches(base, s0, queries, count=args.searches)

        meter = CpuMeter({
            "api replica": lambda: [api.proc.pid],
            "worker replicas": lambda: [w.proc.pid for w in workers],
            "postgres": lambda: engines.pids("postgres"),
            "moto (S3)": lambda: engines.pids("moto"),
            "qdrant": lambda: engines.pids("qdrant"),
        })
        sa = post_json(f"{base}/v1/vector_stores", {"name": "a"})["id"]
        meter.start()
        batch = post_json(f"{base}/v1/vector_stores/{sa}/file_batches", {"file_ids": set_a})["id"]
        wait_batch(base, sa, batch)
        ingest_s, cpu = meter.stop()
        chunks = 0
        after = ""
        while True:
            page = get_json(f"{base}/v1/vector_stores/{sa}/files?limit=100{after}")
            chunks += sum(f["progress"]["chunks_total"] for f in page["data"])
            if not page["has_more"]:
                break
            after = f"&after={page['data'][-1]['id']}"

        sc = post_json(f"{base}/v1/vector_stores", {"name": "c"})["id"]
        stop = threading.Event()
        busy = []
        th = threading.Thread(target=lambda: busy.extend(searches(base, s0, queries, stop=stop)))
        batch = post_json(f"{base}/v1/vector_stores/{sc}/file_batches", {"file_ids": set_c})["id"]
        th.start()
        wait_batch(base, sc, batch)
        stop.set()
        th.join()

        # The chunks of set A, embedded again by the api replica alone: its CPU per chunk is
        # what embedding costs, to set against the workers' CPU per chunk.
        embed_texts = []
        for f in set_a:
            page = get_json(f"{base}/v1/vector_stores/{sa}/files/{f}/content")
            embed_texts.extend(c["text"] for c in page["data"])
        alone = CpuMeter({"api": lambda: [api.proc.pid]})
        alone.start()
        for i in range(0, len(embed_texts), EMBED_BATCH):
            post_json(f"{base}/v1/embeddings",
                      {"model": MODEL, "input": embed_texts[i:i + EMBED_BATCH]})
        embed_s, embed_cpu = alone.stop()

        r = {
            "files_per_s": BATCH_FILES / ingest_s, "ingest_s": ingest_s, "chunks": chunks,
            "cpu": cpu, "idle_p50": percentile(idle, 50), "idle_p99": percentile(idle, 99),
            "busy_p50": percentile(busy, 50), "busy_p99": percentile(busy, 99),
            "busy_n": len(busy), "embed_cps": len(embed_texts) / embed_s,
            "embed_cpu_ms": 1000 * embed_cpu["api"] / len(embed_texts),
        }
        log(f"  {n_workers} worker(s), run {run + 1}: {r['files_per_s']:.1f} files/s "
            f"({ingest_s:.1f} s, {chunks} chunks); search idle p50/p99 "
            f"{r['idle_p50']:.0f}/{r['idle_p99']:.0f} ms, while ingesting "
            f"{r['busy_p50']:.0f}/{r['busy_p99']:.0f} ms ({len(busy)} searches); embedder alone "
            f"{r['embed_cps']:.1f} chunks/s, {r['embed_cpu_ms']:.0f} ms CPU a chunk; CPU s: "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
        return r
    finally:
        for r in replicas:
            r.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1,3", help="worker replica counts to compare")
    ap.add_argument("--searches", type=int, default=200, help="idle searches per run")
    ap.add_argument("--worker-flags", default="",
                    help="extra flags for each worker replica (e.g. '--embed-threads 1')")
    args = ap.parse_args()
    binary = os.path.join(REPO, "target", "release", "ragstore")
    if not os.path.exists(binary):
        sys.exit("build it first: cargo build --release --locked --bin ragstore")
    counts = [int(x) for x in args.workers.split(",")]
    work = tempfile.mkdtemp(prefix="bench-replicas-")
    engines = Engines(work)
    loads = [os.getloadavg()]
    results = {}
    try:
        for run in range(args.runs):
            for n in counts:
                log(f"run {run + 1}/{args.runs}: 1 api replica + {n} worker replica(s)")
                results.setdefault(n, []).append(one_run(args, engines, work, n, run))
    finally:
        engines.stop()
        shutil.rmtree(work, ignore_errors=True)
    loads.append(os.getloadavg())

    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "cpu"}
           for n, rs in results.items()}
    cpu = {n: {k: statistics.median(r["cpu"][k] for r in rs) for k in rs[0]["cpu"]}
           for n, rs in results.items()}
    print(f"bench-replicas: {os.cpu_count()} cores; {BATCH_FILES} files of ~1.5 kB per batch, "
          f"median of {args.runs} run(s); load average before {loads[0][0]:.2f}, "
          f"after {loads[1][0]:.2f}")
    for n in counts:
        m = med[n]
        print(f"  1 api + {n} worker replica(s): ingest {m['files_per_s']:.1f} files/s "
              f"({m['ingest_s']:.1f} s, {m['chunks']:.0f} chunks); search p50/p99 idle "
              f"{m['idle_p50']:.0f}/{m['idle_p99']:.0f} ms, while ingesting "
              f"{m['busy_p50']:.0f}/{m['busy_p99']:.0f} ms; embedder alone (one client, "
              f"{EMBED_BATCH} a request) {m['embed_cps']:.1f} chunks/s")
        wall, c = m["ingest_s"], cpu[n]
        ours = sum(v for k, v in c.items() if k != "machine (all processes)")
        print("    CPU seconds during the batch: " + ", ".join(
            f"{k} {v:.1f}" for k, v in c.items() if k != "machine (all processes)")
            + f"; all of these {ours:.1f}, other processes on the machine "
            f"{c['machine (all processes)'] - ours:.1f}; the machine had "
            f"{wall * os.cpu_count():.1f} ({wall:.1f} s x {os.cpu_count()} cores)")
        print(f"    CPU per chunk: workers {1000 * c['worker replicas'] / m['chunks']:.0f} ms, "
              f"of which embedding (the embedder alone, same chunks) {m['embed_cpu_ms']:.0f} ms")
    if len(counts) >= 2:
        a, b = counts[0], counts[-1]
        print(f"  throughput ratio {b} workers / {a}: "
              f"{med[b]['files_per_s'] / med[a]['files_per_s']:.2f}")


if __name__ == "__main__":
    main()
