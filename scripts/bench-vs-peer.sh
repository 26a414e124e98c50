#!/usr/bin/env bash
# bench-vs-peer.sh: ragstore against the peer (OGX, formerly llama-stack) on the same documents:
# time from upload to `completed`, embedded tokens/s (per core), coverage, peak/idle RSS,
# search p50/p99, as ratios ragstore/peer. Not part of CI. The measuring is done by
# scripts/bench_vs_peer.py (its docstring says exactly what is measured and how).
#
#   scripts/bench-vs-peer.sh                                  # both systems, 3 runs each
#   scripts/bench-vs-peer.sh --ragstore-bin /path/to/ragstore --json out.json
#   scripts/bench-vs-peer.sh --no-peer --runs 1 --text-mb 1   # quick, ragstore only
#   scripts/bench-vs-peer.sh --doc some.pdf --doc notes.md    # other documents
#
# Options (all passed on to bench_vs_peer.py):
#   --ragstore-bin PATH   default target/release/ragstore (not built here)
#   --server-arg ARG      extra `ragstore serve` flag, repeatable (--server-arg=--workers=2)
#   --models-dir DIR      default <repo>/models (scripts/fetch-models.sh fills it)
#   --peer-workdir DIR    default /work/peer: the venv and config.yaml that the peer script made
#   --peer-script PATH    default /work/shared/peer/llamastack.sh, run once if WORKDIR is not set
#                         up yet (builds CPython 3.13 and a ~6 GB venv: 10-30 min)
#   --no-peer / --no-ragstore   one system only
#   --runs N              runs per document and system (default 3; medians reported)
#   --text-mb MB          generated plain-text document for the RSS goal (default 5; 0 = none)
#   --text-runs N         runs for that document (default --runs)
#   --no-pdfs             leave out the Debian PDFs (e.g. only the 5 MB text)
#   --doc PATH            a .pdf/.txt/.md document instead of the default set, repeatable
#   --search-rounds N     times each of the 50 queries is sent (default 4)
#   --json FILE           every figure, every run, every latency
#   --keep                keep the servers' temp dirs (logs, data) under the cache dir
#
# Documents: R-intro.pdf (Debian `r-doc-pdf`, 113 pages) and shared-mime-info-spec.pdf (Debian
# `shared-mime-info`, 17 pages), fetched with `apt-get download` and unpacked with `dpkg-deb -x`
# (never installed), and a generated 5 MB English-like text (scripts/bench-ingest.py's
# generator). Reference text for coverage: `pdftotext` (poppler-utils, installed with apt-get
# if missing). The Python client deps (openai, tokenizers) go into a venv in the cache dir.
#
# Environment: BENCH_CACHE_DIR (default <repo>/target/bench-vs-peer): documents, venv, temp
# server dirs (removed after the run unless --keep).
set -euo pipefail
exec </dev/null

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${BENCH_CACHE_DIR:-$repo/target/bench-vs-peer}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
log() { echo "bench-vs-peer: $*" >&2; }

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq
        apt_updated=1
    fi
}

if ! command -v pdftotext >/dev/null || ! command -v pdfinfo >/dev/null; then
    log "installing poppler-utils (pdftotext, pdfinfo)"
    apt_update
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null
fi

# The Debian PDFs.
pdfs="$cache/pdfs"
if [ ! -s "$pdfs/R-intro.pdf" ] || [ ! -s "$pdfs/shared-mime-info-spec.pdf" ]; then
    dl="$cache/deb"
    rm -rf "$dl" && mkdir -p "$dl" "$pdfs"
    # as root, apt-get may warn that the _apt user cannot write here, which is harmless
    if ! (cd "$dl" && apt-get download -qq r-doc-pdf shared-mime-info 2>/dev/null); then
        apt_update
        (cd "$dl" && apt-get download -qq r-doc-pdf shared-mime-info 2>/dev/null)
    fi
    for deb in "$dl"/*.deb; do
        dpkg-deb -x "$deb" "$dl/root"
    done
    for name in R-intro.pdf shared-mime-info-spec.pdf; do
        found="$(find "$dl/root" -type f -name "$name" | head -1)"
        [ -n "$found" ] || { log "error: $name not found in the Debian packages"; exit 1; }
        cp "$found" "$pdfs/$name"
    done
    rm -rf "$dl"
    log "documents in $pdfs: $(ls "$pdfs" | tr '\n' ' ')"
fi

# The client venv: the openai SDK (with its httpx) and tokenizers, the versions the peer uses.
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai, tokenizers' 2>/dev/null; then
    log "making the client venv in $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q openai==3.54.0 tokenizers==0.23.3
fi

exec "$venv/bin/python" "$repo/scripts/bench_vs_peer.py" --cache-dir "$cache" --pdf-dir "$pdfs" \
    --models-dir "$repo/models" "$@"
