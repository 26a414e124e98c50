#!/usr/bin/env python3
"""Upload of one large file (1 GiB by default) through POST /v1/files, with the bytes on local
disk vs in an S3-compatible bucket (moto's server, started by scripts/s3-test-server.sh):
throughput and the server's peak RSS (VmHWM), median of --runs runs each, and the ratio.

Then, on S3, an Upload (POST /v1/uploads) of --upload-mib MiB in the SDKs' 64 MiB parts: the
time to complete it without an md5 (the parts are joined inside the bucket by UploadPartCopy)
and with one (the parts are read back and the file written again), median of --runs each.

    cargo build --release --locked --bin ragstore
    scripts/bench-storage.py [--bin target/release/ragstore] [--mib 1024] [--upload-mib 512] [--runs 3]

Moto keeps objects in its own memory and is written in Python: the S3 figure is a floor for
what a real S3 or MinIO gives; the server's RSS is what this measures best."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(binary: str, work: str, env: dict[str, str],
                 storage_url: str | None) -> tuple[subprocess.Popen, int]:
    """A server on local disk (or `storage_url`) in `work`, once it answers /health."""
    port = free_port()
    cmd = [binary, "serve", "--addr", f"127.0.0.1:{port}", "--data-dir", f"{work}/data",
           "--models-dir", str(REPO / "models"), "--max-file-bytes", "4GiB", "--workers", "1"]
    if storage_url:
        cmd += ["--storage-url", storage_url]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/log", "wb"))
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    return proc, port


def one_run(binary: str, payload: Path, env: dict[str, str], storage_url: str | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as work:
        proc, port = start_server(binary, work, env, storage_url)
        try:
            start = time.monotonic()
            subprocess.run(
                ["curl", "-fsS", "-o", "/dev/null", "-F", "purpose=user_data",
                 "-F", f"file=@{payload};filename=big.bin", f"http://127.0.0.1:{port}/v1/files"],
                check=True,
            )
            secs = time.monotonic() - start
            return secs, peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def cpu_secs(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def post_json(port: int, path: str, body: dict) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=3600) as r:
        return json.load(r)


def upload_run(binary: str, parts: list[Path], md5: str | None, env: dict[str, str],
               storage_url: str) -> tuple[float, float, float, str]:
    """Seconds to send the parts, seconds to complete, the server's CPU seconds while it
    completed, and how the log says it was assembled."""
    with tempfile.TemporaryDirectory() as work:
        proc, port = start_server(binary, work, env, storage_url)
        try:
            total = sum(p.stat().st_size for p in parts)
            up = post_json(port, "/v1/uploads", {"purpose": "user_data", "filename": "big.bin",
                                                 "bytes": total, "mime_type": "application/octet-stream"})
            start = time.monotonic()
            ids = []
            for part in parts:
                out = subprocess.run(
                    ["curl", "-fsS", "-F", f"data=@{part};filename=part",
                     f"http://127.0.0.1:{port}/v1/uploads/{up['id']}/parts"],
                    check=True, capture_output=True, text=True).stdout
                ids.append(json.loads(out)["id"])
            sent = time.monotonic() - start
            body: dict = {"part_ids": ids}
            if md5:
                body["md5"] = md5
            cpu = cpu_secs(proc.pid)
            start = time.monotonic()
            done = post_json(port, f"/v1/uploads/{up['id']}/complete", body)
            completed = time.monotonic() - start
            cpu = cpu_secs(proc.pid) - cpu
            assert done["status"] == "completed" and done["file"]["bytes"] == total, done
            log = Path(f"{work}/log").read_text(errors="replace")
            how = "by the storage" if 'assembled="by the storage"' in log else "streamed"
            return sent, completed, cpu, how
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(REPO / "target/release/ragstore"))
    ap.add_argument("--mib", type=int, default=1024, help="size of the file (0: skip)")
    ap.add_argument("--upload-mib", type=int, default=512,
                    help="size of the Upload in 64 MiB parts (0: skip)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    exports = subprocess.run([str(REPO / "scripts/s3-test-server.sh"), "start"], check=True,
                             capture_output=True, text=True).stdout
    s3 = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines() if line.startswith("export "))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTORE_")}
    env.update({k: v for k, v in s3.items() if k.startswith("AWS_")})
    try:
        if args.mib > 0:
            with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR", "/tmp")) as f:
                block = os.urandom(1 << 20)
                for _ in range(args.mib):
                    f.write(block)
                f.flush()
                payload = Path(f.name)
                results: dict[str, list[tuple[float, float]]] = {"local": [], "s3": []}
                for run in range(args.runs):
                    for name in ("local", "s3"):
                        url = f"{s3['RAGSTORE_TEST_S3_URL']}/bench-{run}" if name == "s3" else None
                        secs, rss = one_run(args.bin, payload, env, url)
                        results[name].append((secs, rss))
                        print(f"run {run + 1} {name:5}: {args.mib / secs:7.1f} MiB/s, peak RSS {rss:6.0f} MiB", flush=True)
                med = {n: (statistics.median(s for s, _ in r), statistics.median(m for _, m in r)) for n, r in results.items()}
                for n, (secs, rss) in med.items():
                    print(f"median {n:5}: {args.mib / secs:7.1f} MiB/s ({secs:.1f} s), peak RSS {rss:.0f} MiB")
                print(f"S3 / local throughput: {med['local'][0] / med['s3'][0]:.2f}")
        if args.upload_mib > 0:
            upload_bench(args, payload_parts(args.upload_mib), env, s3)
    finally:
        subprocess.run([str(REPO / "scripts/s3-test-server.sh"), "stop", s3["S3_TEST_SERVER_PID"]])


def payload_parts(mib: int) -> list[Path]:
    """The Upload's bytes as 64 MiB part files (the last may be smaller), in a temp dir that
    lives as long as the process."""
    global _PARTS_DIR
    _PARTS_DIR = tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp"))
    parts, left, i = [], mib, 0
    while left > 0:
        n = min(64, left)
        path = Path(_PARTS_DIR.name) / f"part{i:03}"
        with open(path, "wb") as f:
            for _ in range(n):
                f.write(os.urandom(1 << 20))
        parts.append(path)
        left, i = left - n, i + 1
    return parts


def upload_bench(args, parts: list[Path], env: dict[str, str], s3: dict[str, str]) -> None:
    digest = hashlib.md5()
    for p in parts:
        digest.update(p.read_bytes())
    md5 = digest.hexdigest()
    results: dict[str, list[tuple[float, float]]] = {"no md5": [], "md5": []}
    for run in range(args.runs):
        for name, given in (("no md5", None), ("md5", md5)):
            url = f"{s3['RAGSTORE_TEST_S3_URL']}/bench-up-{run}-{name.replace(' ', '')}"
            sent, completed, cpu, how = upload_run(args.bin, parts, given, env, url)
            results[name].append((completed, cpu))
            print(f"upload run {run + 1} {name:6}: parts sent in {sent:.1f} s, completed in "
                  f"{completed:.2f} s, server CPU {cpu:.2f} s ({how})", flush=True)
    med = {n: (statistics.median(c for c, _ in r), statistics.median(u for _, u in r))
           for n, r in results.items()}
    (joined, joined_cpu), (streamed, streamed_cpu) = med["no md5"], med["md5"]
    print(f"median completion of a {args.upload_mib} MiB Upload ({len(parts)} parts): joined in S3 "
          f"{joined:.2f} s (server CPU {joined_cpu:.2f} s), read back and written {streamed:.2f} s "
          f"(server CPU {streamed_cpu:.2f} s); time ratio {joined / streamed:.2f}")


_PARTS_DIR = None

if __name__ == "__main__":
    main()
