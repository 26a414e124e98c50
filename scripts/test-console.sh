#!/usr/bin/env bash
# The web console's browser test (tests/console): Playwright for Python drives Debian's Chromium
# (headless) through /console of a real `ragstore serve`: enter the key, drop files, create a
# store, attach, watch them complete or fail, search with filters, delete; a wrong key's 401.
# Installs Debian's `chromium` with apt-get when it is missing (CI runs as root) and the pinned
# Python packages (tests/console/requirements.txt); Playwright's own browser download is never
# used. Screenshots of each step go to target/console-screenshots/.
#   RAGSTORE_BIN                  default ./target/debug/ragstore
#   RAGSTORE_MODELS_DIR           default ./models (scripts/fetch-models.sh)
#   CHROMIUM                      default /usr/bin/chromium
#   RAGSTORE_CONSOLE_SCREENSHOTS  default ./target/console-screenshots
#   PYTHON                        default python3
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

export RAGSTORE_BIN="${RAGSTORE_BIN:-$PWD/target/debug/ragstore}"
export RAGSTORE_MODELS_DIR="${RAGSTORE_MODELS_DIR:-$PWD/models}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
PYTHON="${PYTHON:-python3}"

if [[ ! -x "$RAGSTORE_BIN" ]]; then
    echo "error: RAGSTORE_BIN=$RAGSTORE_BIN is not an executable (build with cargo build)" >&2
    exit 2
fi

if [[ ! -x "$CHROMIUM" ]]; then
    echo "==> installing Debian's chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

echo "==> Python dependencies (tests/console/requirements.txt)"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    -r tests/console/requirements.txt

echo "==> console browser test (tests/console)"
"$PYTHON" -m pytest tests/console -q -p no:cacheprovider "$@"
