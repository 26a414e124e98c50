#!/usr/bin/env bash
# bench-files.sh: throughput and memory of ragstore's Files API with a 1 GiB file.
#
# What it measures
#   1. Upload: POST /v1/files (multipart, purpose=assistants) of a 1 GiB random file with
#      curl, against dd writing the same bytes to the same filesystem as the server's data dir:
#        - dd bs=1M conv=fsync  (the fair baseline: the server fsyncs a file before answering)
#        - dd bs=1M             (no fsync: the bytes only reach the page cache)
#      plus the server's peak RSS: VmRSS sampled every ~50 ms during each upload, and VmHWM
#      read from /proc/<pid>/status after the upload runs.
#      Issue targets: upload/dd(conv=fsync) >= 0.5, peak RSS < 100 MB.
#   2. Download: GET /v1/files/{id}/content to /dev/null with curl, against
#      `cat <data-dir>/blobs/files/<id> > /dev/null`; the page cache is warm for both.
#   Every run is timed on its own; the table shows each run and the medians in MB/s
#   (1 MB = 10^6 bytes). Ratios are median server MB/s / median baseline MB/s.
#   The uploaded file is deleted (DELETE /v1/files/{id}) between upload runs; the last one is
#   kept for the download runs and deleted at the end.
#
# How to run (from anywhere; it builds with `cargo build --release` first)
#   scripts/bench-files.sh
#   RUNS=5 BENCH_DIR=/mnt/fast/bench scripts/bench-files.sh
#
# Environment
#   RUNS        runs per measurement, median reported          (default 3)
#   BENCH_DIR   source file, dd output and the server data dir  (default target/bench-files)
#               all live here, so they share one filesystem. Needs 4 GiB free.
#               The 1 GiB source file (BENCH_DIR/big.bin) is generated once and reused.
#   BENCH_SIZE_MIB  size of the source file in MiB (default 1024; smaller only for smoke tests)
#
# Needs: cargo, curl, dd, python3 (free port, JSON), awk, df.

set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="${RUNS:-3}"
BENCH_DIR="${BENCH_DIR:-$REPO_DIR/target/bench-files}"
SIZE_MIB="${BENCH_SIZE_MIB:-1024}"
SIZE_BYTES=$((SIZE_MIB * 1024 * 1024))
MIN_FREE_KIB=$((4 * 1024 * 1024)) # 4 GiB

SRC="$BENCH_DIR/big.bin"
DATA_DIR="$BENCH_DIR/data"
DD_OUT="$BENCH_DIR/dd.out"
SERVER_LOG="$BENCH_DIR/server.log"
SAMPLING_FLAG="$BENCH_DIR/.rss-sampling"

SERVER_PID=""
SAMPLER_PID=""

die() {
  echo "bench-files: error: $*" >&2
  exit 1
}
log() { echo "bench-files: $*" >&2; }

[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer (got '$RUNS')"
[[ "$SIZE_MIB" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZE_MIB must be a positive integer (got '$SIZE_MIB')"
for tool in cargo curl dd python3 awk df; do
  command -v "$tool" >/dev/null || die "'$tool' is not on PATH"
done

# ---------------------------------------------------------------------------------------------
# Helpers

now() { date +%s.%N; }
# seconds between two `now` stamps
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# MB/s (10^6 bytes) for SIZE_BYTES in $1 seconds
mbps() { awk -v n="$SIZE_BYTES" -v s="$1" 'BEGIN { printf "%.1f", n / s / 1e6 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# kB as reported by /proc (KiB) -> MB (10^6 bytes)
kib_to_mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }'; }
median() {
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
    END { if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
max_of() { printf '%s\n' "$@" | sort -g | tail -n 1; }
# PASS/FAIL for "$1 $2 $3", e.g. check 0.7 '>=' 0.5
check() { awk -v a="$1" -v op="$2" -v b="$3" 'BEGIN {
  ok = (op == ">=") ? (a >= b) : (a < b); print ok ? "PASS" : "FAIL" }'; }

proc_status_kib() { # field name (VmHWM, VmRSS) -> kB from /proc/<server>/status
  awk -v f="$1:" '$1 == f { print $2 }' "/proc/$SERVER_PID/status"
}

# Prints the largest VmRSS (kB) of pid $1 seen while the file $2 exists, sampling every ~50 ms.
sample_rss() {
  local pid=$1 flag=$2 max=0 key val rest
  while [[ -e "$flag" ]]; do
    while read -r key val rest; do
      if [[ "$key" == "VmRSS:" ]]; then
        if ((val > max)); then max=$val; fi
        break
      fi
    done <"/proc/$pid/status" || break
    sleep 0.05
  done
  echo "$max"
}

cleanup() {
  local status=$?
  rm -f "$SAMPLING_FLAG"
  if [[ -n "$SAMPLER_PID" ]]; then kill "$SAMPLER_PID" 2>/dev/null || true; fi
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      log "server did not stop on SIGTERM within 10 s; sending SIGKILL"
      kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -f "$DD_OUT" "$BENCH_DIR/rss.out" "$BENCH_DIR/upload.json"
  rm -rf "$DATA_DIR"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Preconditions: disk space, binary, source file

mkdir -p "$BENCH_DIR"
BENCH_DIR="$(cd "$BENCH_DIR" && pwd)"
free_kib=$(df -Pk "$BENCH_DIR" | awk 'NR == 2 { print $4 }')
if ((free_kib < MIN_FREE_KIB)); then
  die "only $((free_kib / 1024)) MiB free on the filesystem of $BENCH_DIR; need at least 4 GiB \
(source file + stored upload + dd output). Free some space or set BENCH_DIR elsewhere."
fi

log "building: cargo build --release"
(cd "$REPO_DIR" && cargo build --release --quiet) || die "cargo build --release failed"
BIN="$REPO_DIR/target/release/ragstore"
[[ -x "$BIN" ]] || die "no binary at $BIN after the build"

if [[ -f "$SRC" && "$(stat -c %s "$SRC")" -eq "$SIZE_BYTES" ]]; then
  log "reusing $SRC"
else
  log "generating $SRC ($SIZE_MIB MiB of random bytes)"
  head -c "$SIZE_BYTES" /dev/urandom >"$SRC.tmp"
  mv "$SRC.tmp" "$SRC"
fi
# Every upload and dd run reads the source from a warm page cache.
cat "$SRC" >/dev/null

# ---------------------------------------------------------------------------------------------
# Server

rm -rf "$DATA_DIR"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
# The default --max-file-bytes (512MiB) would refuse the 1 GiB file.
"$BIN" serve --addr "127.0.0.1:$PORT" --data-dir "$DATA_DIR" \
  --max-file-bytes "$((SIZE_BYTES + (64 << 20)))" >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

log "waiting for $BASE/health (server pid $SERVER_PID, log $SERVER_LOG)"
for _ in $(seq 100); do
  if curl -sf -o /dev/null "$BASE/health"; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during start-up; see $SERVER_LOG"
  sleep 0.1
done
curl -sf -o /dev/null "$BASE/health" || die "server not healthy after 10 s; see $SERVER_LOG"

delete_file() {
  local code
  code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$BASE/v1/files/$1")
  [[ "$code" == 200 ]] || die "DELETE /v1/files/$1 answered HTTP $code"
}

# ---------------------------------------------------------------------------------------------
# 1. Upload vs dd

up_s=() up_mbps=() up_rss=()
ddf_s=() ddf_mbps=() ddn_s=() ddn_mbps=()
FILE_ID=""

for i in $(seq "$RUNS"); do
  log "upload run $i/$RUNS"
  sync

  touch "$SAMPLING_FLAG"
  sample_rss "$SERVER_PID" "$SAMPLING_FLAG" >"$BENCH_DIR/rss.out" &
  SAMPLER_PID=$!
  out=$(curl -sS -o "$BENCH_DIR/upload.json" -w '%{http_code} %{time_total}' \
    -F purpose=assistants -F "file=@$SRC" "$BASE/v1/files")
  rm -f "$SAMPLING_FLAG"
  wait "$SAMPLER_PID"
  SAMPLER_PID=""
  read -r code secs <<<"$out"
  [[ "$code" == 200 ]] || die "POST /v1/files answered HTTP $code: $(head -c 500 "$BENCH_DIR/upload.json")"
  read -r id bytes < <(python3 -c 'import json, sys; o = json.load(open(sys.argv[1])); print(o["id"], o["bytes"])' \
    "$BENCH_DIR/upload.json")
  [[ -n "$id" ]] || die "no file id in the upload response: $(head -c 500 "$BENCH_DIR/upload.json")"
  [[ "$bytes" -eq "$SIZE_BYTES" ]] || die "server stored $bytes bytes, expected $SIZE_BYTES"
  up_s+=("$(printf '%.3f' "$secs")")
  up_mbps+=("$(mbps "$secs")")
  up_rss+=("$(cat "$BENCH_DIR/rss.out")")

  # Keep the last upload for the download runs.
  if ((i < RUNS)); then delete_file "$id"; else FILE_ID=$id; fi

  log "dd conv=fsync run $i/$RUNS"
  sync
  t0=$(now)
  dd if="$SRC" of="$DD_OUT" bs=1M conv=fsync status=none
  t1=$(now)
  ddf_s+=("$(elapsed "$t0" "$t1")")
  ddf_mbps+=("$(mbps "${ddf_s[-1]}")")
  rm -f "$DD_OUT"

  log "dd (no fsync) run $i/$RUNS"
  sync
  t0=$(now)
  dd if="$SRC" of="$DD_OUT" bs=1M status=none
  t1=$(now)
  ddn_s+=("$(elapsed "$t0" "$t1")")
  ddn_mbps+=("$(mbps "${ddn_s[-1]}")")
  rm -f "$DD_OUT"
  sync
done
hwm_after_upload=$(proc_status_kib VmHWM)

# ---------------------------------------------------------------------------------------------
# 2. Download vs cat

BLOB="$DATA_DIR/blobs/files/$FILE_ID"
[[ -f "$BLOB" ]] || die "stored blob not found at $BLOB"
[[ "$(stat -c %s "$BLOB")" -eq "$SIZE_BYTES" ]] || die "stored blob $BLOB has the wrong size"

# Warm the page cache for both (and check the content once, untimed).
cat "$BLOB" >/dev/null
curl -sS "$BASE/v1/files/$FILE_ID/content" | cmp -s - "$SRC" ||
  die "GET /v1/files/$FILE_ID/content does not return the uploaded bytes"

get_s=() get_mbps=() cat_s=() cat_mbps=()
for i in $(seq "$RUNS"); do
  log "download run $i/$RUNS"
  out=$(curl -sS -o /dev/null -w '%{http_code} %{time_total} %{size_download}' \
    "$BASE/v1/files/$FILE_ID/content")
  read -r code secs size <<<"$out"
  [[ "$code" == 200 ]] || die "GET /v1/files/$FILE_ID/content answered HTTP $code"
  [[ "$size" -eq "$SIZE_BYTES" ]] || die "GET returned $size bytes, expected $SIZE_BYTES"
  get_s+=("$(printf '%.3f' "$secs")")
  get_mbps+=("$(mbps "$secs")")

  log "cat run $i/$RUNS"
  t0=$(now)
  cat "$BLOB" >/dev/null
  t1=$(now)
  cat_s+=("$(elapsed "$t0" "$t1")")
  cat_mbps+=("$(mbps "${cat_s[-1]}")")
done
hwm_after_all=$(proc_status_kib VmHWM)
delete_file "$FILE_ID"

# ---------------------------------------------------------------------------------------------
# Report

med_up=$(median "${up_mbps[@]}")
med_ddf=$(median "${ddf_mbps[@]}")
med_ddn=$(median "${ddn_mbps[@]}")
med_get=$(median "${get_mbps[@]}")
med_cat=$(median "${cat_mbps[@]}")
ratio_fsync=$(ratio "$med_up" "$med_ddf")
ratio_nofsync=$(ratio "$med_up" "$med_ddn")
ratio_get=$(ratio "$med_get" "$med_cat")
rss_max_kib=$(max_of "${up_rss[@]}")
peak_kib=$(max_of "$rss_max_kib" "$hwm_after_upload")

fs_type=$(df -PT "$BENCH_DIR" | awk 'NR == 2 { print $2 " (" $1 ")" }')
commit=$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n "$(git -C "$REPO_DIR" status --porcelain 2>/dev/null)" ]]; then commit+=" (dirty tree)"; fi

echo
echo "ragstore Files API benchmark"
echo "  commit     $commit, cargo build --release"
echo "  file       $SIZE_BYTES bytes ($SIZE_MIB MiB, random), $RUNS runs each, medians; MB = 10^6 bytes"
echo "  bench dir  $BENCH_DIR on $fs_type"
echo "  host       $(uname -sr), $(nproc) CPUs, $(curl --version | head -n 1 | cut -d' ' -f1-2)"
echo
echo "1. Upload: POST /v1/files (curl -F purpose=assistants -F file=@big.bin) vs dd to the same filesystem"
printf '  %-6s %18s %22s %22s %16s\n' run "upload s (MB/s)" "dd conv=fsync s (MB/s)" "dd no fsync s (MB/s)" "max VmRSS (MB)"
for ((i = 0; i < RUNS; i++)); do
  printf '  %-6s %18s %22s %22s %16s\n' "$((i + 1))" \
    "${up_s[i]} (${up_mbps[i]})" "${ddf_s[i]} (${ddf_mbps[i]})" "${ddn_s[i]} (${ddn_mbps[i]})" \
    "$(kib_to_mb "${up_rss[i]}")"
done
printf '  %-6s %18s %22s %22s %16s\n' median "$med_up MB/s" "$med_ddf MB/s" "$med_ddn MB/s" ""
echo
echo "  ratio upload / dd conv=fsync:    $ratio_fsync   (target >= 0.5: $(check "$ratio_fsync" '>=' 0.5))"
echo "  ratio upload / dd without fsync: $ratio_nofsync   (page-cache only; for reference)"
echo "  server VmRSS, max of ~50 ms samples during uploads: $(kib_to_mb "$rss_max_kib") MB"
echo "  server VmHWM after the upload runs:                 $(kib_to_mb "$hwm_after_upload") MB"
echo "  peak RSS during uploads: $(kib_to_mb "$peak_kib") MB   (target < 100 MB: $(check "$(kib_to_mb "$peak_kib")" '<' 100))"
echo
echo "2. Download: GET /v1/files/{id}/content (curl -o /dev/null) vs cat <data-dir>/blobs/files/<id> > /dev/null, warm cache"
printf '  %-6s %18s %22s\n' run "GET s (MB/s)" "cat s (MB/s)"
for ((i = 0; i < RUNS; i++)); do
  printf '  %-6s %18s %22s\n' "$((i + 1))" "${get_s[i]} (${get_mbps[i]})" "${cat_s[i]} (${cat_mbps[i]})"
done
printf '  %-6s %18s %22s\n' median "$med_get MB/s" "$med_cat MB/s"
echo
echo "  ratio GET / cat: $ratio_get"
echo "  server VmHWM after all runs (uploads + downloads): $(kib_to_mb "$hwm_after_all") MB"
