#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, builds ragstore once
# (debug profile, shared by every test), runs the Rust tests of the whole workspace (unit tests of
# the server and of crates/extract, and the integration binary that drives the real app over
# HTTP, the metadata contract among them on SQLite and on a throwaway PostgreSQL cluster that
# scripts/pg-test-cluster.sh starts and stops, the storage contract on local disk and on moto's S3
# server, the vector index's contract on both engines with a Qdrant server from ../shared/qdrant/),
# then the Python suite that drives a running
# `ragstore serve` with the official `openai` SDK, then the other clients' suites (the `openai`
# npm SDK, llama-stack-client; scripts/test-clients.sh), the web console in Debian's headless
# Chromium driven by Playwright (scripts/test-console.sh) and the `openai` SDK through a LiteLLM
# proxy (scripts/test-litellm.sh).
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

# The engines the tests start are stopped whatever happens.
cleanups=()
cleanup() {
    for c in "${cleanups[@]}"; do eval "$c" || true; done
}
trap cleanup EXIT

echo "==> S3-compatible server for the S3 storage tests (moto; scripts/s3-test-server.sh)"
s3_env=$(./scripts/s3-test-server.sh start)
eval "$s3_env"
cleanups+=('./scripts/s3-test-server.sh stop "$S3_TEST_SERVER_PID"')

echo "==> building"
cargo build --locked --all-targets --workspace

# The PostgreSQL the tests create their databases in: one given in RAGSTORE_TEST_DATABASE_URL,
# or a throwaway cluster of the PostgreSQL installed here, removed when this script exits.
if [[ -z "${RAGSTORE_TEST_DATABASE_URL:-}" ]]; then
    echo "==> PostgreSQL for the metadata tests (scripts/pg-test-cluster.sh)"
    if pg_env=$(./scripts/pg-test-cluster.sh start); then
        eval "$pg_env"
        cleanups+=('./scripts/pg-test-cluster.sh stop "$RAGSTORE_PG_TEST_DIR"')
    else
        echo "    no PostgreSQL could be started: its tests will say they skip (and fail if CI is set)"
    fi
fi

# The Qdrant-server backend's tests need a real server: a throwaway one from ../shared/qdrant/
# on free ports (scripts/qdrant-test-server.sh), stopped on exit. A server already named by
# RAGSTORE_TEST_QDRANT_URL is used as it is.
if [[ -z ${RAGSTORE_TEST_QDRANT_URL:-} ]]; then
    echo "==> Qdrant server for the Qdrant backend's tests (scripts/qdrant-test-server.sh)"
    qdrant_dir=$(mktemp -d)
    cleanups+=('./scripts/qdrant-test-server.sh stop "$qdrant_dir"')
    RAGSTORE_TEST_QDRANT_URL=$(./scripts/qdrant-test-server.sh start "$qdrant_dir")
    export RAGSTORE_TEST_QDRANT_URL
    echo "    $RAGSTORE_TEST_QDRANT_URL"
fi

echo "==> Rust tests"
cargo nextest run --locked --workspace --no-fail-fast

# The integration suite again, every app on PostgreSQL + S3 + the Qdrant server (each its own
# database, bucket prefix and collections). Left out: the contract suites (they already ran on
# every backend) and the kill -9 tests of the embedded files (tests/it/replicas.rs kills a
# replica of a shared deployment instead).
echo "==> integration suite on PostgreSQL + S3 + Qdrant (RAGSTORE_TEST_BACKENDS=remote)"
RAGSTORE_TEST_BACKENDS=remote cargo nextest run --locked -p ragstore --test it --no-fail-fast \
    -E 'not test(/^(metadata_contract|index_contract|storage_contract|postgres|qdrant_server|crash|replicas)::/)'

echo "==> Python openai SDK tests"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" \
    RAGSTORE_CORPUS_DIR="$PWD/tests/corpus" python3 -m pytest tests/python -q -p no:cacheprovider

echo "==> Python openai SDK tests on PostgreSQL + S3 + Qdrant (RAGSTORE_TEST_BACKENDS=remote)"
RAGSTORE_TEST_BACKENDS=remote RAGSTORE_BIN="$PWD/target/debug/ragstore" \
    RAGSTORE_MODELS_DIR="$PWD/models" RAGSTORE_CORPUS_DIR="$PWD/tests/corpus" \
    python3 -m pytest tests/python -q -p no:cacheprovider

echo "==> other clients (openai for Node, llama-stack-client)"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" ./scripts/test-clients.sh

echo "==> web console in headless Chromium (scripts/test-console.sh)"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" ./scripts/test-console.sh

echo "==> LiteLLM proxy in front of ragstore (scripts/test-litellm.sh)"
RAGSTORE_BIN="$PWD/target/debug/ragstore" RAGSTORE_MODELS_DIR="$PWD/models" ./scripts/test-litellm.sh
