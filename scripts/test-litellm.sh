#!/usr/bin/env bash
# The LiteLLM-proxy client suite (tests/litellm): a ragstore server and a LiteLLM proxy
# (`litellm --config tests/litellm/config.yaml`, ragstore as its OpenAI-compatible provider), each
# started and stopped by the suite on a free port, driven with the official `openai` Python SDK.
# LiteLLM's proxy is big (~750 MB installed, ~1.5 min to install), so it gets its own venv:
#   LITELLM_VENV         default ./target/litellm-venv (created if missing, reused after)
#   RAGSTORE_BIN         default ./target/debug/ragstore
#   RAGSTORE_MODELS_DIR  default ./models (scripts/fetch-models.sh)
#   PYTHON               default python3 (>= 3.9), only to create the venv
# Extra arguments go to pytest, e.g. scripts/test-litellm.sh -k files.
set -euo pipefail
cd "$(dirname "$0")/.."

export RAGSTORE_BIN="${RAGSTORE_BIN:-$PWD/target/debug/ragstore}"
export RAGSTORE_MODELS_DIR="${RAGSTORE_MODELS_DIR:-$PWD/models}"
LITELLM_VENV="${LITELLM_VENV:-$PWD/target/litellm-venv}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$RAGSTORE_BIN" ]]; then
    echo "error: RAGSTORE_BIN=$RAGSTORE_BIN is not an executable (build with cargo build)" >&2
    exit 2
fi
if [[ ! -d "$RAGSTORE_MODELS_DIR" ]]; then
    echo "error: RAGSTORE_MODELS_DIR=$RAGSTORE_MODELS_DIR is not a directory (scripts/fetch-models.sh)" >&2
    exit 2
fi

if [[ ! -x "$LITELLM_VENV/bin/python" ]]; then
    echo "==> creating venv $LITELLM_VENV"
    "$PYTHON" -m venv "$LITELLM_VENV"
fi
echo "==> Python dependencies (tests/litellm/requirements.txt)"
start=$SECONDS
"$LITELLM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/litellm/requirements.txt
echo "    installed in $((SECONDS - start))s"

echo "==> LiteLLM proxy suite (tests/litellm)"
start=$SECONDS
status=0
"$LITELLM_VENV/bin/python" -m pytest tests/litellm -q -p no:cacheprovider -rsxX "$@" || status=$?
echo "    tests ran in $((SECONDS - start))s"
exit "$status"
