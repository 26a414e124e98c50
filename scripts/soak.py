#!/usr/bin/env python3
"""Soak: mixed load on one server, with kill -9 every few minutes, then the invariants.

For --minutes (default 30) several clients upload, attach, search, update attributes,
detach, delete files and stores on a loopback server, while the server is killed with
SIGKILL every --kill-every seconds and started again. At the end the load stops, the queue
drains, and the script checks:

  - every file whose upload was acknowledged and not deleted is present, with its bytes;
  - no deleted file is listed, readable or found by any search;
  - every attached, not detached file of a live store ends `completed` in it;
  - no orphans: database rows of files, stores or chunks that nothing refers to, blobs
    without a row, staged temp files;
  - RSS and open files after the run against the same server idle at the start.

It prints figures and exits non-zero on a broken invariant. Loopback only; bounded in time.

    scripts/soak.py [--bin target/release/ragstore] [--minutes 30] [--kill-every 180]
"""

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

from openai import APIConnectionError, APIStatusError, OpenAI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = ("volcano magma basalt bread yeast dough tcp segment handshake rome aqueduct "
         "glacier valley river delta orbit comet planet enzyme protein cell option flag "
         "parser token vector index cache queue worker lease purge").split()


def text_doc(rng, n):
    return "\n\n".join(
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) + "."
        for _ in range(n)
    ).encode()


class Server:
    def __init__(self, args, data, port, log):
        self.args, self.data, self.port, self.log = args, data, port, log
        self.proc = None
        self.base = f"http://127.0.0.1:{port}"

    def start(self):
        env = dict(os.environ, RAGSTORE_MODELS_DIR=self.args.models)
        self.proc = subprocess.Popen(
            [self.args.bin, "serve", "--data-dir", self.data, "--addr", f"127.0.0.1:{self.port}",
             "--reaper-interval-secs", "2"],
            stdout=self.log, stderr=self.log, env=env)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def open_files(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


class Ledger:
    """What the clients were told, to check against at the end."""

    def __init__(self):
        self.lock = threading.Lock()
        self.files = {}         # id -> bytes, acknowledged and not deleted
        self.deleted = set()    # ids whose delete was acknowledged
        self.stores = {}        # id -> set of attached file ids (acknowledged)
        self.deleted_stores = set()
        # Deletes whose answer a kill cut off: done or not, the server may have either.
        self.maybe_deleted = {}  # id -> bytes
        self.ops = {}
        self.errors = {}

    def file_deleted(self, fid):
        with self.lock:
            self.files.pop(fid, None)
            self.deleted.add(fid)
            for attached in self.stores.values():
                attached.discard(fid)

    def file_maybe_deleted(self, fid):
        with self.lock:
            n = self.files.pop(fid, None)
            if n is not None:
                self.maybe_deleted[fid] = n
            for attached in self.stores.values():
                attached.discard(fid)

    def store_deleted(self, vs):
        with self.lock:
            self.stores.pop(vs, None)
            self.deleted_stores.add(vs)

    def count(self, what, ok=True):
        with self.lock:
            bucket = self.ops if ok else self.errors
            bucket[what] = bucket.get(what, 0) + 1


def client_loop(base, ledger, stop, seed):
    rng = random.Random(seed)
    client = OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=30)
    while not stop.is_set():
        target = None
        op = rng.choices(
            ["upload", "attach", "search", "attrs", "detach", "delete_file", "store", "delete_store"],
            weights=[5, 5, 8, 2, 1, 2, 1, 0.3])[0]
        try:
            with ledger.lock:
                files = list(ledger.files)
                stores = list(ledger.stores)
            if op == "upload" or not files:
                body = text_doc(rng, rng.randint(1, 40))
                f = client.files.create(file=(f"doc-{rng.randrange(1 << 30)}.txt", body), purpose="assistants")
                with ledger.lock:
                    ledger.files[f.id] = len(body)
            elif op == "store" or not stores:
                vs = client.vector_stores.create(name=f"s{rng.randrange(1000)}")
                with ledger.lock:
                    ledger.stores[vs.id] = set()
            elif op == "attach":
                vs, fid = rng.choice(stores), rng.choice(files)
                client.vector_stores.files.create(vector_store_id=vs, file_id=fid,
                                                  attributes={"n": rng.randrange(10)})
                with ledger.lock:
                    if vs in ledger.stores:
                        ledger.stores[vs].add(fid)
            elif op == "search":
                client.vector_stores.search(vector_store_id=rng.choice(stores),
                                            query=" ".join(rng.sample(WORDS, 3)))
            elif op == "attrs":
                vs = rng.choice(stores)
                with ledger.lock:
                    attached = list(ledger.stores.get(vs, ()))
                if attached:
                    client.vector_stores.files.update(file_id=rng.choice(attached), vector_store_id=vs,
                                                      attributes={"n": rng.randrange(10)})
            elif op == "detach":
                vs = rng.choice(stores)
                with ledger.lock:
                    attached = list(ledger.stores.get(vs, ()))
                if attached:
                    fid = rng.choice(attached)
                    client.vector_stores.files.delete(file_id=fid, vector_store_id=vs)
                    with ledger.lock:
                        ledger.stores.get(vs, set()).discard(fid)
            elif op == "delete_file":
                fid = target = rng.choice(files)
                client.files.delete(fid)
                ledger.file_deleted(fid)
            elif op == "delete_store":
                vs = target = rng.choice(stores)
                client.vector_stores.delete(vs)
                ledger.store_deleted(vs)
            ledger.count(op)
        except (APIConnectionError, APIStatusError) as e:
            # The server is being killed, or the object went away under a racing client.
            ledger.count(f"{op}:{getattr(e, 'status_code', 'conn')}", ok=False)
            if isinstance(e, APIConnectionError) and target is not None:
                # The delete may have committed before the kill cut its answer off.
                if op == "delete_file":
                    ledger.file_maybe_deleted(target)
                else:
                    ledger.store_deleted(target)
            time.sleep(0.2)


def main():
    server = None
    try:
        run(server_box := [])
    finally:
        for server in server_box:
            if server.proc and server.proc.poll() is None:
                server.kill()


def run(server_box):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/ragstore"))
    ap.add_argument("--models", default=os.environ.get("RAGSTORE_MODELS_DIR", os.path.join(ROOT, "models")))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--kill-every", type=float, default=180)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--port", type=int, default=18732)
    ap.add_argument("--drain-minutes", type=float, default=20,
                    help="how long the queue may take to drain after the load stops")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ragstore-soak-")
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "server.log"), "wb")
    server = Server(args, data, args.port, log)
    server_box.append(server)
    server.start()
    time.sleep(2)
    rss0, fds0 = server.rss_kb(), server.open_files()
    print(f"idle at start: RSS {rss0 // 1024} MB, {fds0} open files", flush=True)

    ledger = Ledger()
    stop = threading.Event()
    threads = [threading.Thread(target=client_loop, args=(server.base, ledger, stop, args.seed + i), daemon=True)
               for i in range(args.clients)]
    for t in threads:
        t.start()
    end = time.time() + args.minutes * 60
    kills = 0
    peak_rss = 0
    next_kill = time.time() + args.kill_every
    while time.time() < end:
        time.sleep(1)
        peak_rss = max(peak_rss, server.rss_kb())
        if time.time() >= next_kill:
            server.kill()
            kills += 1
            server.start()
            next_kill = time.time() + args.kill_every
    stop.set()
    for t in threads:
        t.join(timeout=60)

    # Drain: every attached file of a live store reaches a final state.
    client = OpenAI(base_url=server.base + "/v1", api_key="none", max_retries=3, timeout=60)
    failures = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what, flush=True)
        if not ok:
            failures.append(what)

    drain_start = time.time()
    deadline = drain_start + args.drain_minutes * 60
    pending = True
    while pending and time.time() < deadline:
        pending = False
        for vs in list(ledger.stores):
            counts = client.vector_stores.retrieve(vs).file_counts
            if counts.in_progress:
                pending = True
        time.sleep(2)
    drained_in = time.time() - drain_start
    check(not pending, f"the queue drained after the load stopped (in {drained_in:.0f} s)")
    time.sleep(3)  # purges of the last deletes
    rss1, fds1 = server.rss_kb(), server.open_files()

    listed = {f.id: f.bytes for f in client.files.list(limit=10000)}
    missing = [f for f in ledger.files if f not in listed]
    check(not missing, f"every acknowledged file is present ({len(ledger.files)} files; missing {missing[:5]})")
    half = [f for f, n in ledger.maybe_deleted.items() if f in listed and listed[f] != n]
    check(not half, f"a file whose delete was cut off by a kill is whole or gone "
                    f"({len(ledger.maybe_deleted)}: {sum(f in listed for f in ledger.maybe_deleted)} kept; {half[:5]})")
    wrong = [f for f, n in ledger.files.items() if f in listed and listed[f] != n]
    check(not wrong, f"with its bytes ({wrong[:5]})")
    resurrected = [f for f in ledger.deleted if f in listed]
    check(not resurrected, f"no deleted file is listed ({len(ledger.deleted)} deleted; {resurrected[:5]})")
    readable = []
    for fid in list(ledger.deleted)[:50]:
        try:
            client.files.retrieve(fid)
            readable.append(fid)
        except APIStatusError as e:
            if e.status_code != 404:
                readable.append(fid)
    check(not readable, "no deleted file is readable")

    found_deleted, incomplete = [], []
    for vs, attached in ledger.stores.items():
        page = client.vector_stores.files.list(vector_store_id=vs, limit=100)
        status = {f.id: f.status for f in page}
        for fid in attached:
            if fid in ledger.files and status.get(fid) != "completed":
                incomplete.append((vs, fid, status.get(fid)))
        for q in range(3):
            hits = client.vector_stores.search(vector_store_id=vs, query=" ".join(random.sample(WORDS, 3)),
                                               max_num_results=50)
            found_deleted += [h.file_id for h in hits.data if h.file_id in ledger.deleted]
    check(not incomplete, f"every attached file of a live store is completed ({incomplete[:5]})")
    check(not found_deleted, f"no search returns a deleted file ({found_deleted[:5]})")

    server.stop()
    db = sqlite3.connect(os.path.join(data, "ragstore.db"))
    q = lambda sql: db.execute(sql).fetchone()[0]
    orphans = {
        "file_texts without a live file": q("SELECT count(*) FROM file_texts WHERE file_id NOT IN (SELECT id FROM files)"),
        "file_chunks without a live file": q("SELECT count(*) FROM file_chunks WHERE file_id NOT IN (SELECT id FROM files)"),
        "vector_store_files of a missing store": q("SELECT count(*) FROM vector_store_files WHERE vector_store_id NOT IN (SELECT id FROM vector_stores)"),
        "vector_store_files of a missing file": q("SELECT count(*) FROM vector_store_files WHERE file_id NOT IN (SELECT id FROM files)"),
        "deleted files not purged": q("SELECT count(*) FROM files WHERE deleted_at IS NOT NULL"),
        "unfinished jobs": q("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running', 'stopping')"),
    }
    for what, n in orphans.items():
        check(n == 0, f"no {what} ({n})")
    keys = {r[0] for r in db.execute("SELECT storage_key FROM files")}
    text_keys = {r[0] for r in db.execute("SELECT storage_key FROM file_texts WHERE storage_key IS NOT NULL")}
    blobs = set()
    for sub in ("files", "texts"):
        d = os.path.join(data, "blobs", sub)
        if os.path.isdir(d):
            blobs |= {f"{sub}/{n}" for n in os.listdir(d)}
    stray = blobs - keys - text_keys
    check(not stray, f"no blob without a row ({len(blobs)} blobs; {sorted(stray)[:5]})")
    staged = os.listdir(os.path.join(data, "tmp"))
    check(not staged, f"nothing left staged ({staged[:5]})")

    print(f"\n{args.minutes} min, {args.clients} clients, {kills} kill -9s")
    print("operations acknowledged:", json.dumps(dict(sorted(ledger.ops.items()))))
    print("refused or cut (kills, races):", json.dumps(dict(sorted(ledger.errors.items()))))
    print(f"RSS: idle at start {rss0 // 1024} MB, peak {peak_rss // 1024} MB, after the drain {rss1 // 1024} MB")
    print(f"open files: at start {fds0}, after the drain {fds1}")
    wal = os.path.join(data, "index", "wal")
    wal_mb = sum(os.stat(os.path.join(wal, n)).st_blocks * 512 for n in os.listdir(wal)) / 2**20 if os.path.isdir(wal) else 0
    print(f"index WAL on disk at the end: {wal_mb:.1f} MB")
    check(fds1 <= fds0 + 20, f"open files stable ({fds0} -> {fds1})")
    print(f"\n{len(failures)} broken invariant(s); data and log in {work}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
