#!/usr/bin/env bash
# Client test suites against a running `ragstore serve` (each suite starts and stops its own
# server on a free port with a throw-away data dir):
#   tests/node        the official `openai` npm SDK, with Node's built-in test runner
#   tests/llamastack  `llama-stack-client` (Python), with pytest
# Installs what they need (npm ci; pip -r tests/llamastack/requirements.txt), runs both, and
# exits non-zero if either fails. Expects a built server and the embedding model:
#   RAGSTORE_BIN         default ./target/debug/ragstore
#   RAGSTORE_MODELS_DIR  default ./models (scripts/fetch-models.sh)
#   PYTHON               default python3; llama-stack-client 0.7.5 needs >= 3.12, older Pythons
#                        get 0.2.12 (see tests/llamastack/requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."

export RAGSTORE_BIN="${RAGSTORE_BIN:-$PWD/target/debug/ragstore}"
export RAGSTORE_MODELS_DIR="${RAGSTORE_MODELS_DIR:-$PWD/models}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$RAGSTORE_BIN" ]]; then
    echo "error: RAGSTORE_BIN=$RAGSTORE_BIN is not an executable (build with cargo build)" >&2
    exit 2
fi
if [[ ! -d "$RAGSTORE_MODELS_DIR" ]]; then
    echo "error: RAGSTORE_MODELS_DIR=$RAGSTORE_MODELS_DIR is not a directory (scripts/fetch-models.sh)" >&2
    exit 2
fi

echo "==> Node dependencies (npm ci in tests/node)"
(cd tests/node && npm ci --no-audit --no-fund --loglevel=error)

echo "==> Python dependencies (tests/llamastack/requirements.txt)"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/llamastack/requirements.txt

failed=()

echo "==> openai npm SDK suite (tests/node)"
if ! (cd tests/node && node --test --test-reporter=spec test/ragstore.test.mjs test/readme.test.mjs); then
    failed+=("tests/node")
fi

echo "==> llama-stack-client suite (tests/llamastack)"
if ! "$PYTHON" -m pytest tests/llamastack -q -p no:cacheprovider -rsxX; then
    failed+=("tests/llamastack")
fi

if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "==> client suites passed"
