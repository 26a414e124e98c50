#!/usr/bin/env python3
"""bench-ingest.py: ingestion throughput of ragstore against its own embedder.

What it measures (per run, on a fresh server and data dir)
  1. A deterministic English-like text file of --mb MB (10^6 bytes) is generated once (seeded
     RNG over a few hundred words of prose vocabulary and sentence templates) and uploaded with
     POST /v1/files (purpose=assistants): upload time, and whether the file's text extraction
     (an Extract job queued at upload) was already done when the vector store was created.
  2. Pipeline: POST /v1/vector_stores {file_ids: [file]}, then GET the vector store file every
     0.2 s until it is `completed`; timed from the store creation request to the first poll
     that sees `completed`. Chunks are counted with GET .../files/{file}/content (paged).
  3. Baseline, same server, same run: the embedder alone on exactly those chunk texts,
     POST /v1/embeddings sequentially in batches of 32 (the pipeline embeds 32 chunks per model
     run, from one worker), timed.
  Printed: chunks, pipeline s and chunks/s, embedder-alone s and chunks/s, their ratio
  (pipeline chunks/s / embedder chunks/s; issue target >= 0.8), and the server's peak RSS during
  ingestion: VmHWM from /proc/<pid>/status read when ingestion completed (the process-lifetime
  peak, so it includes model loading and the upload) and the max of VmRSS sampled every 100 ms
  from store creation to completion; for reference also VmRSS once the server is healthy. With --runs N > 1, every run gets a fresh server and the
  summary shows medians. Load averages are printed before and after: the machine may be shared.

How to run (from the repository root; needs target/release/ragstore and the models)
  cargo build --release && scripts/fetch-models.sh
  python3 scripts/bench-ingest.py                 # 5 MB, one run
  python3 scripts/bench-ingest.py --mb 1 --runs 3

Only the Python standard library is used. Everything listens on 127.0.0.1. Progress goes to
stderr, the report to stdout. The server is stopped with SIGTERM and its temp dir deleted.
"""

import argparse
import base64
import json
import os
import random
import re
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
EMBED_BATCH = 32
MODEL = "all-MiniLM-L6-v2"


def log(msg):
    print(f"bench-ingest: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# The document: varied sentences from templates and a few hundred words, seeded.

NOUNS = """river valley harbour lantern orchard garden meadow village market bridge chapel tower
castle mill forest field road letter journey winter summer autumn spring morning evening night
storm cloud wind rain snow frost fire hearth kitchen table window door wall roof garden gate
merchant farmer sailor soldier widow child stranger physician clerk scholar judge captain
shepherd miller weaver blacksmith innkeeper servant master neighbour cousin brother sister
father mother daughter son friend guest traveller pilgrim king queen bishop council parliament
ledger book map clock compass candle ribbon coat hat boot cart horse carriage ship anchor sail
rope net barrel basket bread cheese wine apple pear cherry wheat barley stone iron silver gold
coin debt promise quarrel secret rumour custom law duty habit memory silence music song story
question answer reason doubt fortune misfortune harvest famine fever remedy lesson sermon
argument agreement contract ruin estate parish county province frontier coast island mountain
hill cliff shore lake pond well spring bell steeple square street lane alley cottage manor""".split()

ADJECTIVES = """old young quiet restless patient anxious honest cunning generous proud humble
weary cheerful solemn distant narrow broad crooked straight bright dim pale dark golden grey
green crimson bitter sweet sharp gentle heavy light cold warm damp dry ancient modern simple
elaborate careful careless curious doubtful faithful foolish wise stubborn eager idle busy
wealthy poor lonely crowded silent noisy steady fragile sturdy hidden famous forgotten
familiar strange sudden slow swift tender harsh plain handsome ragged neat""".split()

VERBS_PAST = """walked waited wondered watched answered asked carried followed remembered forgot
promised refused accepted returned wandered gathered counted mended painted built burned
crossed climbed opened closed whispered shouted laughed wept listened travelled settled
argued agreed borrowed lent sold bought planted harvested studied noticed suspected believed
discovered described considered recorded delivered collected""".split()

VERBS_PRESENT = """keeps holds turns brings leaves finds makes takes gives shows tells hears
sees knows seems becomes remains stands lies falls rises grows changes moves waits fades
returns""".split()

ADVERBS = """slowly quickly quietly carefully suddenly rarely often seldom gladly reluctantly
patiently eagerly bitterly gently firmly plainly surely barely nearly entirely""".split()

PREPOSITIONS = """near beyond beneath above across behind beside along through toward
against among within without""".split()

NAMES = """Ada Alice Arthur Beatrice Clara Daniel Edmund Eliza Frances George Harriet Henry
Isabel James Jane Lucy Margaret Martha Oliver Robert Samuel Thomas Walter William""".split()

CONNECTIVES = ["However,", "Meanwhile,", "Afterwards,", "In the end,", "For a time,",
               "Even so,", "At first,", "By evening,", "Nevertheless,", "That year,",
               "Before long,", "In truth,"]

TEMPLATES = [
    "The {adj} {noun} {vpast} {prep} the {noun2}.",
    "{name} {vpast} the {adj} {noun} and {vpast2} {adv}.",
    "{conn} the {noun} {vpres} {adj}, as it always had.",
    "Nobody in the {noun} {vpast} why the {noun2} was so {adj}.",
    "{name} said that the {noun} {vpres} {adj} only when the {noun2} is {adj2}.",
    "It was a {adj} {noun}, and {name} {vpast} it {adv} {prep} the {noun2}.",
    "{conn} {name} {vpast} a {adj} {noun} {prep} the {adj2} {noun2}.",
    "If the {noun} {vpres} {adj}, the {noun2} will not be {adj2} for long.",
    "There was a {noun} {prep} the {noun2}, {adj} and {adj2}, which {name} {vpast} {adv}.",
    "\"{cap_adj} {noun}s are the worst kind,\" {name} {vpast}, and the {noun2} {vpast2}.",
    "{name} and {name2} {vpast} the {noun} together, though neither {vpast2} the {noun2}.",
    "What the {noun} {vpres} is not what the {adj} {noun2} {vpres2}.",
    "{conn} the {adj} {noun} {vpast} {adv}, and the {noun2} {vpast2} with it.",
    "Every {noun} in the {noun2} {vpast} {adv} that {adj} winter.",
    "Was the {noun} {adj}, or had {name} merely {vpast} the {noun2} too {adv}?",
]


def sentence(rng):
    t = rng.choice(TEMPLATES)
    adj = rng.choice(ADJECTIVES)
    return t.format(
        adj=adj,
        cap_adj=adj.capitalize(),
        adj2=rng.choice(ADJECTIVES),
        noun=rng.choice(NOUNS),
        noun2=rng.choice(NOUNS),
        vpast=rng.choice(VERBS_PAST),
        vpast2=rng.choice(VERBS_PAST),
        vpres=rng.choice(VERBS_PRESENT),
        vpres2=rng.choice(VERBS_PRESENT),
        adv=rng.choice(ADVERBS),
        prep=rng.choice(PREPOSITIONS),
        name=rng.choice(NAMES),
        name2=rng.choice(NAMES),
        conn=rng.choice(CONNECTIVES),
    )


def generate_text(target_bytes, seed):
    """Paragraphs of 3..9 sentences, a chapter heading every 20..40 paragraphs."""
    rng = random.Random(seed)
    parts = []
    size = 0
    chapter = 0
    next_chapter = 0
    paragraphs = 0
    while size < target_bytes:
        if paragraphs == next_chapter:
            chapter += 1
            heading = f"Chapter {chapter}: The {rng.choice(ADJECTIVES).capitalize()} {rng.choice(NOUNS).capitalize()}\n\n"
            parts.append(heading)
            size += len(heading)
            next_chapter = paragraphs + rng.randint(20, 40)
        para = " ".join(sentence(rng) for _ in range(rng.randint(3, 9))) + "\n\n"
        parts.append(para)
        size += len(para)
        paragraphs += 1
    data = "".join(parts).encode("utf-8")
    return data[:target_bytes].rsplit(b" ", 1)[0] + b"\n"


# ---------------------------------------------------------------------------------------------
# HTTP (urllib)


class Api:
    def __init__(self, base):
        self.base = base

    def request(self, method, path, body=None, headers=None, timeout=600):
        data = None
        hdrs = {"Authorization": "Bearer bench"}
        if headers:
            hdrs.update(headers)
        if body is not None and not isinstance(body, bytes):
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = body
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                raw = res.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise RuntimeError(f"{method} {path} -> {e.code}: {detail}") from None
        return json.loads(raw) if raw else None

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body):
        return self.request("POST", path, body)

    def upload(self, filename, content, purpose):
        boundary = "----bench" + uuid.uuid4().hex
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        return self.request(
            "POST", "/v1/files", head + content + tail,
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssSampler:
    """Max VmRSS of `pid`, sampled every 100 ms while `active`."""

    def __init__(self, pid):
        self.pid = pid
        self.max_kib = 0
        self.active = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.wait(0.1):
            if self.active:
                v = proc_status_kib(self.pid, "VmRSS")
                if v is not None and v > self.max_kib:
                    self.max_kib = v

    def close(self):
        self.stop.set()
        self.thread.join()


def mb(kib):
    return kib * 1024 / 1e6


def loadavg():
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


# ---------------------------------------------------------------------------------------------
# One run


class Server:
    def __init__(self, binary, models_dir, tmp_root, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="ragstore-bench-ingest-", dir=tmp_root)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(self.dir, "server.log")
        self.log_file = open(self.log_path, "wb")
        env = dict(os.environ)
        # Default workers and embed threads: whatever the server picks for this machine.
        for k in ("RAGSTORE_WORKERS", "RAGSTORE_EMBED_THREADS", "RAGSTORE_EMBEDDING_URL"):
            env.pop(k, None)
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", f"127.0.0.1:{self.port}",
             "--data-dir", os.path.join(self.dir, "data"), "--models-dir", models_dir,
             *extra_args],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=env,
        )
        self.pid = self.proc.pid

    def wait_healthy(self, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not healthy after {timeout} s; log:\n{self.tail()}")

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self, keep=False):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log("server ignored SIGTERM for 60 s; killing it")
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        if keep:
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def run_once(n, args, content):
    server = Server(args.binary, args.models_dir, args.tmp_dir, args.server_arg)
    sampler = None
    try:
        t0 = time.monotonic()
        server.wait_healthy()
        log(f"run {n}: server pid {server.pid} healthy on {server.base} after {time.monotonic() - t0:.1f} s")
        api = Api(server.base)
        idle_kib = proc_status_kib(server.pid, "VmRSS") or 0
        sampler = RssSampler(server.pid)

        t0 = time.monotonic()
        f = api.upload("bench-ingest.txt", content, "assistants")
        upload_s = time.monotonic() - t0
        fid = f["id"]
        status_after_upload = f["status"]
        log(f"run {n}: uploaded {len(content)} bytes as {fid} in {upload_s:.2f} s")

        status_at_create = api.get(f"/v1/files/{fid}")["status"]
        sampler.active = True
        t0 = time.monotonic()
        vs = api.post("/v1/vector_stores", {"name": "bench-ingest", "file_ids": [fid]})
        vsid = vs["id"]
        last_progress = t0
        while True:
            vf = api.get(f"/v1/vector_stores/{vsid}/files/{fid}")
            now = time.monotonic()
            if vf["status"] == "completed":
                break
            if vf["status"] != "in_progress":
                raise RuntimeError(f"ingestion ended {vf['status']}: {vf.get('last_error')}")
            if now - last_progress >= 15:
                last_progress = now
                log(f"run {n}: ingesting… {now - t0:.0f} s, server RSS now "
                    f"{mb(proc_status_kib(server.pid, 'VmRSS') or 0):.0f} MB, load {loadavg()}")
            if now - t0 > args.timeout:
                raise RuntimeError(f"ingestion not completed after {args.timeout} s")
            time.sleep(0.2)
        pipeline_s = time.monotonic() - t0
        sampler.active = False
        hwm_kib = proc_status_kib(server.pid, "VmHWM") or 0
        rss_max_kib = sampler.max_kib
        log(f"run {n}: ingestion completed in {pipeline_s:.1f} s")

        chunks = []
        page = None
        while True:
            q = f"/v1/vector_stores/{vsid}/files/{fid}/content?limit=1000"
            if page:
                q += f"&page={page}"
            res = api.get(q)
            chunks.extend(item["text"] for item in res["data"])
            if not res.get("has_more"):
                break
            page = res["next_page"]
        log(f"run {n}: {len(chunks)} chunks; embedding them alone in batches of {EMBED_BATCH}…")

        t0 = time.monotonic()
        last_progress = t0
        for i in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[i:i + EMBED_BATCH]
            res = api.post("/v1/embeddings",
                           {"model": MODEL, "input": batch, "encoding_format": "base64"})
            if len(res["data"]) != len(batch):
                raise RuntimeError("embeddings: wrong number of vectors")
            if i == 0:
                dims = len(base64.b64decode(res["data"][0]["embedding"])) // 4
            now = time.monotonic()
            if now - last_progress >= 15:
                last_progress = now
                log(f"run {n}: embedder alone {i + len(batch)}/{len(chunks)} after {now - t0:.0f} s")
        embed_s = time.monotonic() - t0
        log(f"run {n}: embedder alone done in {embed_s:.1f} s ({dims} dims)")

        return {
            "upload_s": upload_s,
            "upload_mb_s": len(content) / upload_s / 1e6,
            "status_after_upload": status_after_upload,
            "status_at_create": status_at_create,
            "chunks": len(chunks),
            "pipeline_s": pipeline_s,
            "pipeline_cps": len(chunks) / pipeline_s,
            "embed_s": embed_s,
            "embed_cps": len(chunks) / embed_s,
            "ratio": embed_s / pipeline_s,
            "hwm_mb": mb(hwm_kib),
            "rss_max_mb": mb(rss_max_kib),
            "rss_idle_mb": mb(idle_kib),
        }
    finally:
        if sampler:
            sampler.close()
        server.stop(keep=args.keep)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=float, default=5.0, help="document size in MB (10^6 bytes), default 5")
    p.add_argument("--runs", type=int, default=1, help="runs, each on a fresh server; medians when > 1")
    p.add_argument("--seed", type=int, default=42, help="seed of the generated document")
    p.add_argument("--binary", default=os.path.join(REPO, "target", "release", "ragstore"))
    p.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    p.add_argument("--tmp-dir", default=None, help="where the server's temp data dir goes")
    p.add_argument("--timeout", type=float, default=7200, help="max seconds to wait for ingestion")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (server log, data)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra `ragstore serve` argument, repeatable (e.g. --server-arg=--embed-threads=1)")
    args = p.parse_args()
    if args.runs < 1 or args.mb <= 0:
        p.error("--runs must be >= 1 and --mb > 0")
    if not os.access(args.binary, os.X_OK):
        p.error(f"{args.binary} not found: run `cargo build --release` first")
    if not os.path.isdir(os.path.join(args.models_dir, MODEL)):
        p.error(f"no {MODEL} under {args.models_dir}: run scripts/fetch-models.sh")

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)

    content = generate_text(int(args.mb * 1e6), args.seed)
    words = len(content.split())
    sentences = re.split(rb'(?<=[.?"])\s+', content)
    distinct_sentences = len(set(sentences))
    log(f"document: {len(content)} bytes, {words} words, {len(sentences)} sentences "
        f"({distinct_sentences} distinct) "
        f"(seed {args.seed})")

    load_before = loadavg()
    started = time.time()
    results = []
    try:
        for n in range(1, args.runs + 1):
            results.append(run_once(n, args, content))
    except KeyboardInterrupt:
        log("interrupted; server stopped and temp dir removed")
        sys.exit(130)
    load_after = loadavg()

    out = []
    out.append("bench-ingest: ragstore ingestion pipeline vs its embedder alone")
    out.append(f"  binary {args.binary}")
    out.append(f"  document {len(content)} bytes ({len(content) / 1e6:.2f} MB), {words} words, "
               f"seed {args.seed}; runs {args.runs}; cores {os.cpu_count()}; "
               f"default workers / embed threads")
    out.append(f"  load average (1/5/15 min) before {load_before}, after {load_after}; "
               f"wall time {time.time() - started:.0f} s")
    out.append("")
    hdr = (f"  {'run':>4} {'upload s':>9} {'extract@create':>15} {'chunks':>7} {'pipeline s':>11} "
           f"{'chunks/s':>9} {'embed s':>9} {'chunks/s':>9} {'ratio':>6} {'VmHWM MB':>9} {'maxRSS MB':>10}")
    out.append(hdr)

    def row(label, r):
        return (f"  {label:>4} {r['upload_s']:>9.2f} {r['status_at_create']:>15} {r['chunks']:>7} "
                f"{r['pipeline_s']:>11.1f} {r['pipeline_cps']:>9.2f} {r['embed_s']:>9.1f} "
                f"{r['embed_cps']:>9.2f} {r['ratio']:>6.2f} {r['hwm_mb']:>9.1f} {r['rss_max_mb']:>10.1f}")

    for i, r in enumerate(results, 1):
        out.append(row(str(i), r))
    med = {k: statistics.median(r[k] for r in results)
           for k in results[0] if isinstance(results[0][k], (int, float))}
    med["status_at_create"] = "/".join(sorted({r["status_at_create"] for r in results}))
    if args.runs > 1:
        out.append(row("med", med))
    out.append("")
    label = "median " if args.runs > 1 else ""
    out.append(f"  upload: {label}{med['upload_s']:.2f} s ({med['upload_mb_s']:.1f} MB/s); file status "
               f"after upload: {', '.join(r['status_after_upload'] for r in results)}; at store "
               f"creation: {', '.join(r['status_at_create'] for r in results)} "
               f"(processed = text extraction already done)")
    out.append(f"  chunks: {med['chunks']:.0f}")
    out.append(f"  pipeline (store created -> file completed): {label}{med['pipeline_s']:.1f} s, "
               f"{med['pipeline_cps']:.2f} chunks/s")
    out.append(f"  embedder alone (POST /v1/embeddings, {EMBED_BATCH} per request, sequential): "
               f"{label}{med['embed_s']:.1f} s, {med['embed_cps']:.2f} chunks/s")
    out.append(f"  ratio pipeline/embedder (chunks/s): {label}{med['ratio']:.2f}  (target >= 0.8)")
    out.append(f"  server peak RSS during ingestion: VmHWM {label}{med['hwm_mb']:.1f} MB (process "
               f"lifetime peak at completion), max VmRSS sampled every 100 ms {label}"
               f"{med['rss_max_mb']:.1f} MB; VmRSS once healthy, before the upload: {label}"
               f"{med['rss_idle_mb']:.1f} MB")
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
