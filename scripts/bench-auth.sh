#!/usr/bin/env bash
# What authentication and rate limiting cost on GET /v1/files/{id}: the release binary twice on
# loopback, once open (no keys) and once with an API key (SHA-256 of the key, the key memory and
# the key's governor allowance on every request; limits raised so none is refused), alternated
# RUNS times with wrk; prints requests/s per run, the medians and their ratio.
# Usage: scripts/bench-auth.sh [RUNS=5] [SECONDS=10] [CONNECTIONS=16]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}; SECS=${2:-10}; CONNS=${3:-16}
BIN=target/release/ragstore
[ -x "$BIN" ] || cargo build --release --locked --bin ragstore
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)"; exit 1; }
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
export RAGSTORE_MODELS_DIR=${RAGSTORE_MODELS_DIR:-$PWD/models} RAGSTORE_LOG=warn

start() { # name port [key]
  "$BIN" serve --data-dir "$WORK/$1" --addr "127.0.0.1:$2" --workers 1 \
    --rate-retrievals 1000000000 >"$WORK/$1.log" 2>&1 &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/health" >/dev/null && return; sleep 0.2; done
  echo "server $1 did not start"; cat "$WORK/$1.log"; exit 1
}
upload() { # port [key]
  curl -sf ${2:+-H "Authorization: Bearer $2"} -F purpose=assistants -F file=@README.md \
    "http://127.0.0.1:$1/v1/files" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

KEY=$("$BIN" keys create --project bench --data-dir "$WORK/keyed" 2>/dev/null)
start open 18601; start keyed 18602
OPEN_ID=$(upload 18601); KEYED_ID=$(upload 18602 "$KEY")
curl -sf -o /dev/null -D - -H "Authorization: Bearer $KEY" "http://127.0.0.1:18602/v1/files/$KEYED_ID" \
  | grep -qi x-ratelimit-limit-requests || { echo "the keyed server is not limiting"; exit 1; }

rps() { wrk -t2 -c"$CONNS" -d"${SECS}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
open=(); keyed=()
for i in $(seq "$RUNS"); do
  o=$(rps "http://127.0.0.1:18601/v1/files/$OPEN_ID")
  k=$(rps -H "Authorization: Bearer $KEY" "http://127.0.0.1:18602/v1/files/$KEYED_ID")
  echo "run $i: open $o req/s, key + rate limit $k req/s"
  open+=("$o"); keyed+=("$k")
done
python3 - "${open[*]}" "${keyed[*]}" <<'PY'
import statistics, sys
o = [float(x) for x in sys.argv[1].split()]
k = [float(x) for x in sys.argv[2].split()]
mo, mk = statistics.median(o), statistics.median(k)
print(f"median: open {mo:.0f} req/s, key + rate limit {mk:.0f} req/s; "
      f"keyed/open = {mk/mo:.3f} ({(1 - mk/mo) * 100:+.1f}% slower)")
PY
