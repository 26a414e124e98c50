#!/usr/bin/env bash
# A throwaway Qdrant server for the tests of the Qdrant backend, from ../shared/qdrant/ (a real
# server built from Qdrant's source, v1.18.3; see its README).
#
#   scripts/qdrant-test-server.sh start DIR   starts it on free loopback ports with its data in
#                                             DIR (created), prints its gRPC URL
#                                             (RAGSTORE_TEST_QDRANT_URL) and records its PID in
#                                             DIR/pid
#   scripts/qdrant-test-server.sh stop DIR    stops it and removes DIR
#
# scripts/test.sh starts one for the whole suite and stops it on exit.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cmd=${1:?usage: qdrant-test-server.sh start|stop DIR}
dir=${2:?usage: qdrant-test-server.sh start|stop DIR}

case "$cmd" in
start)
    # The server built from Qdrant's source sits beside the project: ../shared/qdrant/ from the
    # repository root (QDRANT_DIST names another place). A clone elsewhere (a CI checkout in a
    # temporary directory) finds it beside the main checkout, /work/shared/qdrant.
    start=""
    for dist in ${QDRANT_DIST:+"$QDRANT_DIST"} "$root/../shared/qdrant" /work/shared/qdrant; do
        if [[ -x $dist/start.sh ]]; then
            start="$dist/start.sh"
            break
        fi
    done
    if [[ -z $start ]]; then
        echo "no Qdrant server in ${QDRANT_DIST:-} $root/../shared/qdrant or /work/shared/qdrant" \
            "(see the README's 'Qdrant server' section)" >&2
        exit 1
    fi
    mkdir -p "$dir"
    # Two free ports, chosen by the kernel; if another process takes one first, try again.
    for _ in 1 2 3; do
        read -r http grpc < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
        if pid=$("$start" "$http" "$grpc" "$dir/server" 2>"$dir/start.log"); then
            echo "$pid" >"$dir/pid"
            echo "http://127.0.0.1:$grpc"
            exit 0
        fi
    done
    cat "$dir/start.log" >&2
    exit 1
    ;;
stop)
    if [[ -f $dir/pid ]]; then
        pid=$(cat "$dir/pid")
        kill "$pid" 2>/dev/null || true
        # Its clean shutdown flushes; give it a few seconds, then make sure.
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: qdrant-test-server.sh start|stop DIR" >&2
    exit 2
    ;;
esac
