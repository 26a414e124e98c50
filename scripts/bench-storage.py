#!/usr/bin/env python3
"""Upload of one large file (1 GiB by default) through POST /v1/files, with the bytes on local
disk vs in an S3-compatible bucket (moto's server, started by scripts/s3-test-server.sh):
throughput and the server's peak RSS (VmHWM), median of --runs runs each, and the ratio.

    cargo build --release --locked --bin ragstore
    scripts/bench-storage.py [--bin target/release/ragstore] [--mib 1024] [--runs 3]

Moto keeps objects in its own memory and is written in Python: the S3 figure is a floor for
what a real S3 or MinIO gives; the server's RSS is what this measures best."""

from __future__ import annotations

import argparse
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


def one_run(binary: str, payload: Path, env: dict[str, str], storage_url: str | None) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as work:
        port = free_port()
        cmd = [binary, "serve", "--addr", f"127.0.0.1:{port}", "--data-dir", f"{work}/data",
               "--models-dir", str(REPO / "models"), "--max-file-bytes", "4GiB", "--workers", "1"]
        if storage_url:
            cmd += ["--storage-url", storage_url]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(f"{work}/log", "wb"))
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(REPO / "target/release/ragstore"))
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    exports = subprocess.run([str(REPO / "scripts/s3-test-server.sh"), "start"], check=True,
                             capture_output=True, text=True).stdout
    s3 = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines() if line.startswith("export "))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTORE_")}
    env.update({k: v for k, v in s3.items() if k.startswith("AWS_")})
    try:
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
    finally:
        subprocess.run([str(REPO / "scripts/s3-test-server.sh"), "stop", s3["S3_TEST_SERVER_PID"]])


if __name__ == "__main__":
    main()
