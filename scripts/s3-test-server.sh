#!/usr/bin/env bash
# A throwaway S3-compatible server for the tests: moto's server (PyPI `moto[server]`, installed
# once into a venv under target/), on a free port of 127.0.0.1, with one bucket. Like S3 it checks
# every request's SigV4 signature: its first three actions (unsigned) make an IAM user with an
# allow-all policy and its access key, and only that key is accepted afterwards, so a request
# ragstore signs wrongly fails here as it would on S3.
#
#   eval "$(scripts/s3-test-server.sh start)"   # exports AWS_* and RAGSTORE_TEST_S3_URL,
#                                               # and S3_TEST_SERVER_PID
#   scripts/s3-test-server.sh stop "$S3_TEST_SERVER_PID"
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${S3_TEST_VENV:-$PWD/target/moto-venv}"
bucket=ragstore-test

case "${1:-}" in
start)
    # A venv that was moved or half-installed is made again.
    if ! "$venv/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
        rm -rf "$venv"
        echo "s3-test-server: installing moto[server] into $venv" >&2
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    log="${TMPDIR:-/tmp}/moto-$port.log"
    INITIAL_NO_AUTH_ACTION_COUNT=3 "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/moto-api/" 2>/dev/null; then break; fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "s3-test-server: moto exited; see $log" >&2
            exit 1
        fi
        sleep 0.2
    done
    # The user and its key (the three unsigned actions), then the bucket, signed with the key.
    key=$("$venv/bin/python" - "$port" "$bucket" <<'PY'
import json, sys
import boto3
endpoint, bucket = f"http://127.0.0.1:{sys.argv[1]}", sys.argv[2]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="ragstore-test")
iam.put_user_policy(UserName="ragstore-test", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="ragstore-test")["AccessKey"]
boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
             aws_access_key_id=key["AccessKeyId"],
             aws_secret_access_key=key["SecretAccessKey"]).create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
PY
)
    read -r key_id secret <<<"$key"
    echo "s3-test-server: moto on 127.0.0.1:$port (pid $pid), bucket $bucket, signatures checked" >&2
    cat <<VARS
export AWS_ENDPOINT_URL=http://127.0.0.1:$port
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret
export AWS_REGION=us-east-1
export RAGSTORE_TEST_S3_URL=s3://$bucket
export S3_TEST_SERVER_PID=$pid
VARS
    ;;
stop)
    if [ -n "${2:-}" ]; then kill "$2" 2>/dev/null || true; fi
    ;;
*)
    echo "usage: $0 start | stop PID" >&2
    exit 2
    ;;
esac
