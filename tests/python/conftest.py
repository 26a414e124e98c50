"""Fixtures for the ragstore Python (OpenAI SDK) test suite.

One ragstore server is started per test session with a throw-away data directory and small size
limits, so the limit tests stay cheap. Every SDK test runs twice: against `/v1` and against the
llama-stack prefix `/v1/openai/v1`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
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


def start_server(workdir: Path, *flags: str):
    """Starts `ragstore serve` on a free port with its data under `workdir` and the given extra
    flags; yields its root URL (`http://127.0.0.1:PORT`), then stops it with SIGTERM and checks
    that it exits cleanly. A generator, for fixtures to `yield from`."""
    binary = _find_binary()
    data_dir = workdir / "data"
    stderr_path = workdir / "server.stderr.log"
    port = _free_port()
    root = f"http://127.0.0.1:{port}"

    models_dir = os.environ.get("RAGSTORE_MODELS_DIR", str(REPO_ROOT / "models"))
    # Only the flags below configure the server; stray RAGSTORE_* variables must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTORE_")}
    cmd = [
        str(binary),
        "serve",
        "--addr", f"127.0.0.1:{port}",
        "--data-dir", str(data_dir),
        "--shutdown-grace-secs", "5",
        "--models-dir", models_dir,
        *flags,
    ]
    stderr_file = open(stderr_path, "wb")
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=stderr_file, stderr=stderr_file, env=env
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

    yield root

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
def server(tmp_path_factory: pytest.TempPathFactory):
    """The session's server, with small size limits (`LIMITS`) so the limit tests stay cheap."""
    yield from start_server(
        tmp_path_factory.mktemp("ragstore"),
        "--max-file-bytes", "1MiB",
        "--max-part-bytes", "256KiB",
        "--max-upload-bytes", "4MiB",
    )


API_PREFIXES = {
    "v1": "/v1",
    "llama-stack": "/v1/openai/v1",
}


@pytest.fixture(params=list(API_PREFIXES.values()), ids=list(API_PREFIXES.keys()))
def api_base(request: pytest.FixtureRequest, server: str) -> str:
    """The API base URL, once per route prefix."""
    return server + request.param


@pytest.fixture
def client(api_base: str):
    """An SDK client against one of the two route prefixes; no retries, so errors surface.
    Strict: every response is validated against the SDK's own pydantic model for its route, so a
    missing required field or a wrong type fails the test (users' default parsing would accept
    it silently)."""
    c = openai.OpenAI(
        base_url=api_base,
        api_key="anything",
        max_retries=0,
        timeout=30.0,
        _strict_response_validation=True,
    )
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def lenient_client(api_base: str):
    """The SDK's default (lenient) parsing, for the two places where the SDK's own types are
    narrower than OpenAI's API: `FileObject.purpose` has no `evals` (a purpose the API accepts),
    and `embeddings.create` asks for base64 by default and decodes it after validation."""
    c = openai.OpenAI(base_url=api_base, api_key="anything", max_retries=0, timeout=30.0)
    try:
        yield c
    finally:
        c.close()
