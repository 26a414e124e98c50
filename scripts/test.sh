#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, builds ragstore once
# (debug profile, shared by every test), runs the Rust tests of the whole workspace (unit tests of
# the server and of crates/extract, and the integration binary that drives the real app over
# HTTP, the vector index's contract on both engines included: a Qdrant server is started for it),
# then the Python suite that drives a running `ragstore serve` with the official `openai`
# SDK, then the other clients' suites (the `openai` npm SDK, llama-stack-client;
# scripts/test-clients.sh), the web console in Debian's headless Chromium driven by Playwright
# (scripts/test-console.sh) and the `openai` SDK through a LiteLLM proxy (scripts/test-litellm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> embedding model and ONNX Runtime (scripts/fetch-models.sh)"
./scripts/fetch-models.sh

echo "==> real documents for the extraction tests (scripts/fetch-corpus.sh)"
./scripts/fetch-corpus.sh

echo "==> Python test dependencies (openai SDK, pytest)"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/python/requirements.txt

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "==> installing cargo-nextest (not on this machine)"
    cargo install --locked cargo-nextest
fi

echo "==> building"
cargo build --locked --all-targets --workspace

# The Qdrant-server backend's tests need a real server: a throwaway one from ../shared/qdrant/
# on free ports (scripts/qdrant-test-server.sh), stopped on exit. A server already named by
# RAGSTORE_TEST_QDRANT_URL is used as it is.
if [[ -z ${RAGSTORE_TEST_QDRANT_URL:-} ]]; then
    echo "==> Qdrant server for the Qdrant backend's tests (scripts/qdrant-test-server.sh)"
    qdrant_dir=$(mktemp -d)
    trap './scripts/qdrant-test-server.sh stop "$qdrant_dir"' EXIT
    RAGSTORE_TEST_QDRANT_URL=$(./scripts/qdrant-test-server.sh start "$qdrant_dir")
    export RAGSTORE_TEST_QDRANT_URL
    echo "    $RAGSTORE_TEST_QDRANT_URL"
fi

echo "==> Rust tests"
cargo nextest run --locked --workspace --no-fail-fast

echo "==> Python openai SDK tests"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" \
    RAGSTORE_CORPUS_DIR="$PWD/tests/corpus" python3 -m pytest tests/python -q -p no:cacheprovider

echo "==> other clients (openai for Node, llama-stack-client)"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" ./scripts/test-clients.sh

echo "==> web console in headless Chromium (scripts/test-console.sh)"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" ./scripts/test-console.sh

echo "==> LiteLLM proxy in front of ragstore (scripts/test-litellm.sh)"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" ./scripts/test-litellm.sh
