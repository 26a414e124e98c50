"""Fixtures for the ragstore Python (OpenAI SDK) test suite.

One ragstore server is started per test session with a throw-away data directory and small size
limits, so the limit tests stay cheap. Every SDK test runs twice: against `/v1` and against the
llama-stack prefix `/v1/openai/v1`.

Every server the suite starts has a real API key (`ragstore keys create`, run before the server
starts, since the server remembers for 5 s whether any key exists), so it is not the open
no-key mode: every /v1 request sends `Authorization: Bearer <that key>`. Its rate limits are off
unless a test asks for some (see `start_server`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

KIB = 1024
MIB = 1024 * KIB

# The limits the session server is started with (see `server` below).
LIMITS = {
    "max_file_bytes": 1 * MIB,
    "max_part_bytes": 256 * KIB,
    "max_upload_bytes": 4 * MIB,
}

STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 10.0

# Per-key requests per minute by kind (`ragstore serve --rate-KIND N`); 0 = no limit. Test servers
# run without limits unless a test asks for some, so the suite is never throttled.
NO_RATE_LIMITS = {"uploads": 0, "retrievals": 0, "deletions": 0, "searches": 0, "attaches": 0}

# The project of the key every server is started with.
DEFAULT_PROJECT = "sdk"


def _find_binary() -> Path:
    env = os.environ.get("RAGSTORE_BIN")
    if env:
        path = Path(env)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.exit(f"RAGSTORE_BIN={env!r} is not an executable file", returncode=2)
        return path
    path = REPO_ROOT / "target" / "debug" / "ragstore"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"ragstore binary not found at {path}. Build it with `cd {REPO_ROOT} && cargo build` "
            "or point RAGSTORE_BIN at a ragstore executable.",
            returncode=2,
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:  # pragma: no cover - diagnostics only
        return f"<could not read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def limits() -> dict[str, int]:
    """The size limits the session server enforces, in bytes."""
    return dict(LIMITS)


def _env(data_dir: Path | None = None) -> dict[str, str]:
    """The environment for the binary: only its flags configure it, stray RAGSTORE_* variables
    must not leak in; but with RAGSTORE_TEST_BACKENDS=remote, the server of `data_dir` (and the
    admin commands on it) keep their data in PostgreSQL, S3 and a Qdrant server (`_remote`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTORE_")}
    if data_dir is not None and os.environ.get("RAGSTORE_TEST_BACKENDS") == "remote":
        env.update(_remote(data_dir))
    return env


def _remote(data_dir: Path) -> dict[str, str]:
    """The engines of the server whose data dir is `data_dir`, chosen once and remembered beside
    it: a fresh database in the cluster of RAGSTORE_TEST_DATABASE_URL, a fresh prefix of the
    bucket of RAGSTORE_TEST_S3_URL and fresh collections in RAGSTORE_TEST_QDRANT_URL (all set by
    scripts/test.sh)."""
    import json
    import secrets
    import urllib.parse

    saved = data_dir.parent / "remote-backends.json"
    if saved.exists():
        return json.loads(saved.read_text())
    tag = secrets.token_hex(6)
    admin = os.environ["RAGSTORE_TEST_DATABASE_URL"]
    name = f"ragstore_py_{tag}"
    subprocess.run(
        ["psql", admin, "-q", "-c", f'CREATE DATABASE "{name}"'],
        check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    parts = urllib.parse.urlsplit(admin)
    chosen = {
        "RAGSTORE_DATABASE_URL": urllib.parse.urlunsplit(parts._replace(path=f"/{name}")),
        "RAGSTORE_STORAGE_URL": os.environ["RAGSTORE_TEST_S3_URL"].rstrip("/") + f"/py-{tag}",
        "RAGSTORE_QDRANT_URL": os.environ["RAGSTORE_TEST_QDRANT_URL"],
        "RAGSTORE_QDRANT_COLLECTION_PREFIX": f"py{tag}",
    }
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(chosen))
    return chosen


def ragstore_cli(data_dir: Path, *args: str) -> str:
    """Runs an admin command of the binary (`keys ...`, `projects ...`) against the database in
    `data_dir` (works while a server runs on it); returns its stdout, fails the test if it fails."""
    cmd = [str(_find_binary()), *args, "--data-dir", str(data_dir)]
    done = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=_env(data_dir), timeout=60
    )
    if done.returncode != 0:
        pytest.fail(
            f"`{' '.join(cmd)}` exited with code {done.returncode}\n"
            f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout


def create_key(data_dir: Path, project: str, name: str | None = None) -> str:
    """`ragstore keys create --project PROJECT`: a new key (`rsk-…`, printed alone on stdout) of
    `project`, created if it does not exist. A server running on `data_dir` accepts it at once."""
    args = ["keys", "create", "--project", project]
    if name is not None:
        args += ["--name", name]
    out = ragstore_cli(data_dir, *args)
    key = out.strip()
    assert key.startswith("rsk-") and len(key.split()) == 1, f"keys create printed {out!r}"
    return key


@dataclass(frozen=True)
class Server:
    """A running `ragstore serve`: its root URL, its data directory, and the key it was started
    with (of project `DEFAULT_PROJECT` unless asked otherwise)."""

    url: str
    data_dir: Path
    api_key: str

    def cli(self, *args: str) -> str:
        return ragstore_cli(self.data_dir, *args)

    def create_key(self, project: str, name: str | None = None) -> str:
        return create_key(self.data_dir, project, name)

    def client(self, prefix: str = "/v1", api_key: str | None = None, **kwargs) -> openai.OpenAI:
        """A strict SDK client with this server's key (or `api_key`); no retries unless given."""
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 30.0)
        kwargs.setdefault("_strict_response_validation", True)
        return openai.OpenAI(base_url=self.url + prefix, api_key=api_key or self.api_key, **kwargs)


def start_server(
    workdir: Path,
    *flags: str,
    project: str = DEFAULT_PROJECT,
    rate_limits: dict[str, int] | None = None,
) -> Iterator[Server]:
    """Starts `ragstore serve` on a free port with its data under `workdir` and the given extra
    flags, after creating an API key of `project` in its database; yields a `Server`, then stops
    it with SIGTERM and checks that it exits cleanly. A generator, for fixtures to `yield from`.

    `rate_limits` sets per-key requests per minute by kind (`{"uploads": 3}` for
    `--rate-uploads 3`); every kind not given is unlimited."""
    binary = _find_binary()
    data_dir = workdir / "data"
    stderr_path = workdir / "server.stderr.log"
    port = _free_port()
    root = f"http://127.0.0.1:{port}"

    # Before the server starts: it remembers for 5 s whether any key exists.
    api_key = create_key(data_dir, project, name="pytest")
    rates = dict(NO_RATE_LIMITS)
    for kind, per_minute in (rate_limits or {}).items():
        assert kind in rates, f"unknown rate limit kind {kind!r}"
        rates[kind] = per_minute

    models_dir = os.environ.get("RAGSTORE_MODELS_DIR", str(REPO_ROOT / "models"))
    cmd = [
        str(binary),
        "serve",
        "--addr", f"127.0.0.1:{port}",
        "--data-dir", str(data_dir),
        "--shutdown-grace-secs", "5",
        "--models-dir", models_dir,
        *(arg for kind, n in rates.items() for arg in (f"--rate-{kind}", str(n))),
        *flags,
    ]
    stderr_file = open(stderr_path, "wb")
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=stderr_file, stderr=stderr_file, env=_env(data_dir)
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"ragstore exited with code {proc.returncode} during startup.\n"
                    f"command: {' '.join(cmd)}\n--- server stderr (tail) ---\n{_tail(stderr_path)}",
                    pytrace=False,
                )
            if _healthy(f"{root}/health"):
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"ragstore did not answer GET /health within {STARTUP_TIMEOUT_S:.0f}s.\n"
                    f"command: {' '.join(cmd)}\n--- server stderr (tail) ---\n{_tail(stderr_path)}",
                    pytrace=False,
                )
            time.sleep(0.05)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr_file.close()
        raise

    yield Server(url=root, data_dir=data_dir, api_key=api_key)

    try:
        if proc.poll() is not None:
            pytest.fail(
                f"ragstore died during the test session (exit code {proc.returncode}).\n"
                f"--- server stderr (tail) ---\n{_tail(stderr_path)}",
                pytrace=False,
            )
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(
                f"ragstore did not exit within {SHUTDOWN_TIMEOUT_S:.0f}s of SIGTERM.\n"
                f"--- server stderr (tail) ---\n{_tail(stderr_path)}",
                pytrace=False,
            )
        assert code == 0, (
            f"ragstore exited with code {code} after SIGTERM, expected 0.\n"
            f"--- server stderr (tail) ---\n{_tail(stderr_path)}"
        )
    finally:
        stderr_file.close()


@pytest.fixture(scope="session")
def session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The session's server, with small size limits (`LIMITS`) so the limit tests stay cheap, a
    key of project `DEFAULT_PROJECT`, and no rate limits."""
    yield from start_server(
        tmp_path_factory.mktemp("ragstore"),
        "--max-file-bytes", "1MiB",
        "--max-part-bytes", "256KiB",
        "--max-upload-bytes", "4MiB",
    )


@pytest.fixture(scope="session")
def server(session_server: Server) -> str:
    """The session server's root URL (`http://127.0.0.1:PORT`)."""
    return session_server.url


@pytest.fixture(scope="session")
def api_key(session_server: Server) -> str:
    """The session server's API key (project `DEFAULT_PROJECT`)."""
    return session_server.api_key


@pytest.fixture(scope="session")
def auth_headers(api_key: str) -> dict[str, str]:
    """The header raw HTTP requests to the session server's /v1 routes need."""
    return {"Authorization": f"Bearer {api_key}"}


API_PREFIXES = {
    "v1": "/v1",
    "llama-stack": "/v1/openai/v1",
}


@pytest.fixture(params=list(API_PREFIXES.values()), ids=list(API_PREFIXES.keys()))
def api_base(request: pytest.FixtureRequest, server: str) -> str:
    """The API base URL, once per route prefix."""
    return server + request.param


@pytest.fixture
def client(api_base: str, api_key: str):
    """An SDK client against one of the two route prefixes; no retries, so errors surface.
    Strict: every response is validated against the SDK's own pydantic model for its route, so a
    missing required field or a wrong type fails the test (users' default parsing would accept
    it silently)."""
    c = openai.OpenAI(
        base_url=api_base,
        api_key=api_key,
        max_retries=0,
        timeout=30.0,
        _strict_response_validation=True,
    )
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def lenient_client(api_base: str, api_key: str):
    """The SDK's default (lenient) parsing, for the two places where the SDK's own types are
    narrower than OpenAI's API: `FileObject.purpose` has no `evals` (a purpose the API accepts),
    and `embeddings.create` asks for base64 by default and decodes it after validation."""
    c = openai.OpenAI(base_url=api_base, api_key=api_key, max_retries=0, timeout=30.0)
    try:
        yield c
    finally:
        c.close()
