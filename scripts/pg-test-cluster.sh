#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on a free loopback port, with its data, socket
# and log in a new temporary directory. Installs nothing: it uses the PostgreSQL already on the
# machine (PG_BIN, else initdb on PATH, else the newest /usr/lib/postgresql/*/bin, ...).
#
#   eval "$(scripts/pg-test-cluster.sh start)"    # exports RAGSTORE_TEST_DATABASE_URL and
#                                                 # RAGSTORE_PG_TEST_DIR
#   scripts/pg-test-cluster.sh stop "$RAGSTORE_PG_TEST_DIR"
#   scripts/pg-test-cluster.sh run CMD ARGS...    # start, run CMD with the URL exported, stop
#
# RAGSTORE_TEST_DATABASE_URL names the cluster's `postgres` database as its superuser; each test
# creates a database of its own in it. Durability is off (fsync, synchronous_commit): the
# cluster lives as long as the tests.
set -euo pipefail

say() { echo "pg-test-cluster: $*" >&2; }

find_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        echo "$PG_BIN"
        return
    fi
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return
    fi
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) \
        $(ls -d /usr/pgsql-*/bin 2>/dev/null | sort -V -r) \
        /usr/local/pgsql/bin /opt/homebrew/bin /usr/local/bin; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            echo "$d"
            return
        fi
    done
    return 1
}

# Runs a command as the cluster's owner: PostgreSQL refuses to run as root, so root hands it to
# the `postgres` user (or `nobody`) with runuser, setpriv or su, whichever the system has.
OWNER=""
as_owner() {
    if [[ -z "$OWNER" ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u "$OWNER" -- "$@"
    elif command -v setpriv >/dev/null 2>&1; then
        local uid gid
        uid=$(id -u "$OWNER")
        gid=$(id -g "$OWNER")
        setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$@"
    else
        su -s /bin/sh "$OWNER" -c "$(printf '%q ' "$@")"
    fi
}

pick_owner() {
    if [[ "$(id -u)" != 0 ]]; then
        OWNER=""
    elif id postgres >/dev/null 2>&1; then
        OWNER=postgres
    else
        OWNER=nobody
    fi
}

free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    local port
    for _ in $(seq 50); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    return 1
}

start() {
    local bin dir port
    bin=$(find_bin) || {
        say "no PostgreSQL found (set PG_BIN to the directory holding initdb and pg_ctl)"
        exit 1
    }
    pick_owner
    local base=${TMPDIR:-/tmp}
    # The owner must reach the directory: a root-only TMPDIR will not do.
    if [[ -n "$OWNER" ]] && ! as_owner test -x "$base"; then
        base=/tmp
    fi
    dir=$(mktemp -d "$base/ragstore-pg.XXXXXX")
    chmod 700 "$dir"
    if [[ -n "$OWNER" ]]; then
        chown "$OWNER" "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
        >"$dir/initdb.log" 2>&1 || {
        say "initdb failed:"
        cat "$dir/initdb.log" >&2
        exit 1
    }
    # A port taken between picking and binding: try again with another.
    for attempt in 1 2 3; do
        port=$(free_port)
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o \
            "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
            start >/dev/null 2>&1; then
            say "PostgreSQL ($("$bin/postgres" --version)) on 127.0.0.1:$port, data in $dir"
            echo "export RAGSTORE_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
            echo "export RAGSTORE_PG_TEST_DIR=$dir"
            return
        fi
        say "could not start on port $port (attempt $attempt)"
    done
    cat "$dir/server.log" >&2 || true
    exit 1
}

stop() {
    local dir=${1:-${RAGSTORE_PG_TEST_DIR:-}} bin
    if [[ -z "$dir" || ! -d "$dir/data" ]]; then
        say "no cluster to stop at '${dir}'"
        return 0
    fi
    bin=$(find_bin)
    pick_owner
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case "${1:-}" in
start)
    start
    ;;
stop)
    stop "${2:-}"
    ;;
run)
    shift
    eval "$(start)"
    trap 'stop "$RAGSTORE_PG_TEST_DIR"' EXIT
    "$@"
    ;;
*)
    echo "usage: $0 start | stop DIR | run CMD [ARGS...]" >&2
    exit 2
    ;;
esac
