#!/usr/bin/env python3
"""Out of disk, as an unlucky operator meets it: runs ragstore with its data dir on a small
tmpfs, fills the file system, and checks that

  - uploads fail with a clear error (507 insufficient_storage) and leave nothing behind,
  - ingestion fails or waits with a clear error and the server keeps serving searches,
  - once space returns, uploads and ingestion work again (a waiting job finishes by itself),
  - nothing acknowledged is lost, across a kill -9 and a restart too.

Needs root (it mounts a tmpfs) and Linux. Prints what it saw and exits non-zero on a broken
promise.

    sudo scripts/out-of-disk.py [--bin target/debug/ragstore] [--size-mb 160]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from openai import APIStatusError, OpenAI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DOCS = {
    "volcano.txt": "Volcanoes erupt when magma rises through the crust. Basalt lava flows far.",
    "bread.txt": "Bread dough rises because yeast ferments sugars and releases carbon dioxide.",
    "tcp.txt": "TCP retransmits lost segments and uses a three-way handshake to connect.",
    "rome.txt": "The Roman Empire built aqueducts to carry water into its cities.",
}

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def get(base, path):
    with urllib.request.urlopen(base + path, timeout=10) as r:
        return json.load(r)


def wait_health(base, secs=60):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            if get(base, "/health")["status"] == "ok":
                return True
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    return False


def start(args, data, port, log):
    env = dict(os.environ, RAGSTORE_MODELS_DIR=args.models)
    return subprocess.Popen(
        [args.bin, "serve", "--data-dir", data, "--addr", f"127.0.0.1:{port}",
         "--reaper-interval-secs", "1"],
        stdout=log, stderr=log, env=env,
    )


def wait_file(client, vs, fid, secs, until=("completed", "failed", "cancelled")):
    deadline = time.time() + secs
    while True:
        f = client.vector_stores.files.retrieve(file_id=fid, vector_store_id=vs)
        if f.status in until or time.time() > deadline:
            return f
        time.sleep(0.5)


def fill(path):
    """Writes zeros to `path` until the file system is full; returns the bytes written."""
    n = 0
    block = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(block)
            except OSError:
                break
        # The last partial megabyte too.
        small = b"\0" * 4096
        while True:
            try:
                n += f.write(small)
            except OSError:
                break
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/ragstore"))
    ap.add_argument("--models", default=os.environ.get("RAGSTORE_MODELS_DIR", os.path.join(ROOT, "models")))
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--port", type=int, default=18731)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("out-of-disk.py mounts a tmpfs: run it as root")

    mnt = tempfile.mkdtemp(prefix="ragstore-disk-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mb}m", "tmpfs", mnt], check=True)
    data = os.path.join(mnt, "data")
    filler = os.path.join(mnt, "filler")
    # The vector index gets a disk of its own, to fill it alone.
    index_mnt = os.path.join(data, "index")
    os.makedirs(index_mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", index_mnt], check=True)
    index_filler = os.path.join(index_mnt, ".filler")
    base = f"http://127.0.0.1:{args.port}"
    log = open(os.path.join(tempfile.gettempdir(), "ragstore-out-of-disk.log"), "wb")
    server = start(args, data, args.port, log)
    try:
        check(wait_health(base), "server started on a small tmpfs")
        client = OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)

        # 1. Before: files in a store, searchable.
        ids = {}
        for name, text in DOCS.items():
            ids[name] = client.files.create(file=(name, text.encode()), purpose="assistants").id
        first = list(ids.values())[:2]
        later = list(ids.values())[2:]
        vs = client.vector_stores.create(name="before", file_ids=first).id
        for fid in first:
            check(wait_file(client, vs, fid, 120).status == "completed", f"{fid} indexed before the disk fills")

        # 2. The index's disk fills while a file is being ingested: its writes fail, the job
        # waits and retries, and finishes once space returns.
        fill(index_filler)
        mid = client.files.create(file=("mid.txt", (DOCS["volcano.txt"] + "\n\n") .encode() * 40), purpose="assistants").id
        vs_idx = client.vector_stores.create(name="index-full", file_ids=[mid]).id
        time.sleep(6)
        got = get(base, f"/v1/vector_stores/{vs_idx}/files/{mid}")
        check(got["status"] == "in_progress" and got["progress"]["chunks_indexed"] == 0,
              f"ingestion waits while the index's disk is full ({got['status']}, {got.get('progress')})")
        hits = client.vector_stores.search(vector_store_id=vs, query="lava and magma")
        check(len(hits.data) > 0, "searches work while the index's disk is full")
        os.remove(index_filler)
        f = wait_file(client, vs_idx, mid, 120)
        check(f.status == "completed", f"ingestion finishes once the index has space ({f.status})")
        hits = client.vector_stores.search(vector_store_id=vs_idx, query="lava and magma")
        check(len(hits.data) > 0, "and its chunks are searchable")

        # 3. The whole disk fills while a long file is being ingested.
        long_text = "".join(
            f"Section {i}. The survey of site {i * 7} recorded {i % 13} wells, {i % 5} bridges "
            f"and a ridge {i * 3} metres high, mapped in season {i % 9}.\n\n"
            for i in range(4000)
        )
        long_id = client.files.create(file=("long.txt", long_text.encode()), purpose="assistants").id
        vs2 = client.vector_stores.create(name="during", file_ids=[long_id] + later).id
        deadline = time.time() + 120
        while time.time() < deadline:
            got = get(base, f"/v1/vector_stores/{vs2}/files/{long_id}")
            if (got.get("progress") or {}).get("chunks_indexed", 0) > 0:
                break
            time.sleep(0.2)
        written = fill(filler)
        print(f"      filled the tmpfs with {written >> 20} MiB", flush=True)
        try:
            client.files.create(file=("big.bin", os.urandom(4 << 20)), purpose="assistants")
            check(False, "an upload on a full disk is refused")
        except APIStatusError as e:
            body = e.response.json()
            check(e.status_code == 507 and body["error"]["code"] == "insufficient_storage",
                  f"an upload on a full disk is refused clearly ({e.status_code} {body['error']['code']}: {body['error']['message']})")
        staged = os.listdir(os.path.join(data, "tmp"))
        check(staged == [], f"the refused upload left nothing staged ({staged})")

        # Ingestion on a full disk: waits (retrying) or fails, with a clear reason.
        try:
            client.vector_stores.create(name="refused")
            check(False, "creating a store on a full disk is refused")
        except APIStatusError as e:
            check(e.status_code == 507, f"creating a store on a full disk is refused clearly ({e.status_code})")
        time.sleep(8)
        got = get(base, f"/v1/vector_stores/{vs2}/files/{long_id}")
        check(got["status"] in ("in_progress", "failed"),
              f"ingestion on a full disk waits or fails ({got['status']}, progress {got.get('progress')}, "
              f"last_error {got.get('last_error')})")
        check(wait_health(base, 5), "the server still answers on a full disk")
        hits = client.vector_stores.search(vector_store_id=vs, query="lava and magma")
        check(len(hits.data) > 0, "searches still work on a full disk")

        # 4. Space returns.
        os.remove(filler)
        up = client.files.create(file=("after.txt", b"Glaciers carve valleys as they move."), purpose="assistants")
        check(up.id.startswith("file-"), "uploads work again once space returns")
        if True:
            for fid in [long_id] + later:
                f = wait_file(client, vs2, fid, 180)
                if f.status != "completed":
                    # It gave up while the disk was full: attaching again is the remedy its
                    # error names.
                    client.vector_stores.files.delete(file_id=fid, vector_store_id=vs2)
                    client.vector_stores.files.create(vector_store_id=vs2, file_id=fid)
                    f = wait_file(client, vs2, fid, 60)
                check(f.status == "completed", f"{fid} ingested once space returned")

        # 5. Nothing acknowledged is lost, through a kill -9 and a restart.
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = start(args, data, args.port, log)
        check(wait_health(base), "the server restarts after a kill -9")
        listed = {f.id for f in client.files.list()}
        missing = (set(ids.values()) | {up.id, mid, long_id}) - listed
        check(not missing, f"every acknowledged file is still there (missing: {sorted(missing)})")
        for fid in first:
            f = client.vector_stores.files.retrieve(file_id=fid, vector_store_id=vs)
            check(f.status == "completed", f"{fid} still completed in its store")
        for query, name in [("lava and magma", "volcano.txt"), ("yeast dough", "bread.txt")]:
            hits = client.vector_stores.search(vector_store_id=vs, query=query)
            check(hits.data and hits.data[0].filename == name, f"'{query}' still finds {name}")
        hits = client.vector_stores.search(vector_store_id=vs_idx, query="lava and magma")
        check(len(hits.data) > 0, "what was indexed after the index's disk filled is still there")
        got = get(base, f"/v1/vector_stores/{vs2}/files/{long_id}")
        check(got["status"] == "completed" and got["progress"]["chunks_indexed"] == got["progress"]["chunks_total"],
              f"the long file is whole after the restart ({got.get('progress')})")
        if True:
            for query, name in [("handshake retransmit", "tcp.txt"), ("aqueducts water", "rome.txt")]:
                hits = client.vector_stores.search(vector_store_id=vs2, query=query)
                check(hits.data and hits.data[0].filename == name, f"'{query}' finds {name} after the restart")
    finally:
        if server.poll() is not None:
            check(False, f"the server died (exit status {server.returncode})")
        server.send_signal(signal.SIGKILL)
        server.wait()
        subprocess.run(["umount", index_mnt], check=False)
        subprocess.run(["umount", mnt], check=False)
        os.rmdir(mnt)
        log.close()
    print(f"\n{len(failures)} broken promise(s); server log in {log.name}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
