"""Fixtures for the ragstore llama-stack-client test suite.

One ragstore server per session (a throw-away data directory, a free port), driven by the
`llama-stack-client` package. The client builds every path itself, with its `/v1` in it, so its
`base_url` is the server's root: llama-stack-client 0.2.x calls `/v1/openai/v1/files`,
`/v1/openai/v1/vector_stores/...` (and the llama-stack-native `/v1/models`); 0.3 and later call
`/v1/files`, `/v1/vector_stores/...`, `/v1/models`. ragstore serves both prefixes.

requirements.txt pins 0.7.5 for Python >= 3.12 and 0.2.12 (the last release for older Pythons)
below; `LEGACY` tells the tests which client they drive. Calls the installed client does not have
are skipped with the reason; known server mismatches are `xfail(strict=True)`, so a fix shows up
as an XPASS failure that asks for the marker to be removed.
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

import llama_stack_client
import pytest
from support import LEGACY, make_client

REPO_ROOT = Path(__file__).resolve().parents[2]

STARTUP_TIMEOUT_S = 20.0
SHUTDOWN_TIMEOUT_S = 10.0


def pytest_report_header(config):
    return f"llama-stack-client {llama_stack_client.__version__} ({'legacy 0.2.x' if LEGACY else 'current'} API)"


def _find_binary() -> Path:
    env = os.environ.get("RAGSTORE_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "ragstore"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(f"ragstore binary not found at {path}; set RAGSTORE_BIN", returncode=2)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:  # pragma: no cover - diagnostics only
        return f"<could not read {path}: {e}>"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_server(workdir: Path, *flags: str):
    """Starts `ragstore serve` on a free port with its data under `workdir`; yields its root URL,
    then stops it with SIGTERM and checks that it exits cleanly (a trimmed copy of
    tests/python/conftest.py's helper)."""
    binary = _find_binary()
    log_path = workdir / "server.log"
    port = _free_port()
    root = f"http://127.0.0.1:{port}"
    models_dir = os.environ.get("RAGSTORE_MODELS_DIR", str(REPO_ROOT / "models"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTORE_")}
    cmd = [
        str(binary), "serve",
        "--addr", f"127.0.0.1:{port}",
        "--data-dir", str(workdir / "data"),
        "--shutdown-grace-secs", "5",
        "--models-dir", models_dir,
        *flags,
    ]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not _healthy(f"{root}/health"):
            if proc.poll() is not None:
                pytest.fail(
                    f"ragstore exited with code {proc.returncode} during startup.\n"
                    f"command: {' '.join(cmd)}\n--- server log ---\n{_tail(log_path)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"ragstore did not answer GET /health within {STARTUP_TIMEOUT_S:.0f}s.\n"
                    f"--- server log ---\n{_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.05)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        raise

    yield root

    try:
        if proc.poll() is not None:
            pytest.fail(
                f"ragstore died during the session (exit code {proc.returncode}).\n{_tail(log_path)}",
                pytrace=False,
            )
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"ragstore ignored SIGTERM for {SHUTDOWN_TIMEOUT_S:.0f}s.\n{_tail(log_path)}", pytrace=False)
        assert code == 0, f"ragstore exited with code {code} after SIGTERM.\n{_tail(log_path)}"
    finally:
        log.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The session's server root, `http://127.0.0.1:PORT` (no path: the client adds `/v1/...`)."""
    yield from start_server(tmp_path_factory.mktemp("ragstore-llamastack"))


@pytest.fixture(scope="session")
def client(server: str):
    """The client as users run it (lenient response parsing, the default)."""
    c = make_client(server)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def strict_client(server: str):
    """The same client with `_strict_response_validation=True`: every response is validated
    against the client's pydantic models, so a missing or mistyped field is an error."""
    c = make_client(server, _strict_response_validation=True)
    try:
        yield c
    finally:
        c.close()
