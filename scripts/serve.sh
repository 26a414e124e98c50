#!/usr/bin/env bash
# Fetches the embedding model (once), builds ragstore (release) and runs `ragstore serve`, passing any arguments through:
#   ./scripts/serve.sh                       # 127.0.0.1:8321, data in ./data
#   ./scripts/serve.sh --addr 0.0.0.0:8321 --data-dir /var/lib/ragstore
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-models.sh
cargo build --locked --release
exec ./target/release/ragstore serve "$@"
