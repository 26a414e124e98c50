#!/usr/bin/env bash
# Soak test: 30 minutes of mixed load with kill -9 every 3 minutes, then the invariants.
# Loopback only. Arguments go to scripts/soak.py (e.g. --minutes 5 --kill-every 60).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/ragstore
if [ ! -x "$BIN" ]; then
  cargo build --release --locked
fi
exec python3 scripts/soak.py --bin "$BIN" "$@"
