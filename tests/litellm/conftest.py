"""Fixtures for the ragstore LiteLLM-proxy test suite.

One ragstore server and one LiteLLM proxy per session, each on a free port: ragstore with a
throw-away data directory, LiteLLM (`litellm --config`) with tests/litellm/config.yaml pointed at
that ragstore. The tests drive the official `openai` SDK against the proxy (`client`) and check
with a second SDK client aimed straight at ragstore (`direct`) that each request really got there.

LiteLLM runs offline: LITELLM_LOCAL_MODEL_COST_MAP=True (no download of the model price map), no
database (no DATABASE_URL), and a random master key per session (1.106 refuses to start without
one). Both servers are stopped with SIGTERM.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import openai
import pytest
from openai import OpenAI

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]

RAGSTORE_STARTUP_TIMEOUT_S = 20.0
# LiteLLM's proxy imports a lot (≈10 s on an idle 2-core machine); leave room for a busy one.
LITELLM_STARTUP_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 15.0
# The address config.yaml is written for (ragstore's default); replaced by the session's.
CONFIG_RAGSTORE_URL = "http://127.0.0.1:8321/v1"


def pytest_report_header(config):
    return f"litellm {version('litellm')}, openai {openai.__version__}"


def _find_binary() -> Path:
    env = os.environ.get("RAGSTORE_BIN")
    path = Path(env) if env else REPO_ROOT / "target" / "debug" / "ragstore"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(f"ragstore binary not found at {path}; set RAGSTORE_BIN", returncode=2)
    return path


def _find_litellm() -> Path:
    """The `litellm` console script of the Python running pytest (the suite's venv)."""
    path = Path(sys.executable).parent / "litellm"
    if path.is_file():
        return path
    found = shutil.which("litellm")
    if found is None:
        pytest.exit("litellm not installed; pip install -r tests/litellm/requirements.txt", returncode=2)
    return Path(found)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:  # pragma: no cover - diagnostics only
        return f"<could not read {path}: {e}>"


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _run(name, cmd, env, cwd: Path, log_path: Path, ready_url: str, timeout: float, ok_codes=(0,)):
    """Starts `cmd`, waits until GET `ready_url` answers 200, yields, then stops it with SIGTERM
    and checks that it exited with one of `ok_codes`."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + timeout
        while _status(ready_url) != 200:
            if proc.poll() is not None:
                pytest.fail(
                    f"{name} exited with code {proc.returncode} during startup.\n"
                    f"command: {' '.join(cmd)}\n--- log ---\n{_tail(log_path)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{name} did not answer GET {ready_url} with 200 within {timeout:.0f}s.\n"
                    f"--- log ---\n{_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        raise

    yield proc

    try:
        if proc.poll() is not None:
            pytest.fail(f"{name} died during the session (exit code {proc.returncode}).\n{_tail(log_path)}", pytrace=False)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{name} ignored SIGTERM for {SHUTDOWN_TIMEOUT_S:.0f}s.\n{_tail(log_path)}", pytrace=False)
        assert code in ok_codes, f"{name} exited with code {code} after SIGTERM.\n{_tail(log_path)}"
    finally:
        log.close()


@pytest.fixture(scope="session")
def ragstore(tmp_path_factory: pytest.TempPathFactory):
    """ragstore's root URL, `http://127.0.0.1:PORT`."""
    workdir = tmp_path_factory.mktemp("ragstore-litellm")
    port = _free_port()
    root = f"http://127.0.0.1:{port}"
    models_dir = os.environ.get("RAGSTORE_MODELS_DIR", str(REPO_ROOT / "models"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGSTORE_")}
    cmd = [
        str(_find_binary()), "serve",
        "--addr", f"127.0.0.1:{port}",
        "--data-dir", str(workdir / "data"),
        "--shutdown-grace-secs", "5",
        "--models-dir", models_dir,
    ]
    for _ in _run("ragstore", cmd, env, workdir, workdir / "ragstore.log", f"{root}/health", RAGSTORE_STARTUP_TIMEOUT_S):
        yield root


@pytest.fixture(scope="session")
def proxy(ragstore: str, tmp_path_factory: pytest.TempPathFactory):
    """`(root URL, master key)` of a LiteLLM proxy whose config.yaml points at `ragstore`."""
    workdir = tmp_path_factory.mktemp("litellm-proxy")
    template = (HERE / "config.yaml").read_text()
    assert template.count(CONFIG_RAGSTORE_URL) == 3, "config.yaml should name ragstore's URL 3 times"
    config = workdir / "config.yaml"
    config.write_text(template.replace(CONFIG_RAGSTORE_URL, f"{ragstore}/v1"))

    port = _free_port()
    root = f"http://127.0.0.1:{port}"
    master_key = "sk-" + secrets.token_hex(32)
    # Nothing from the caller's environment may reroute LiteLLM (a DATABASE_URL would make it run
    # migrations; OPENAI_* would compete with config.yaml's environment_variables).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LITELLM_", "OPENAI_", "RAGSTORE_", "DATABASE_URL", "REDIS_"))
    }
    env.update(
        LITELLM_MASTER_KEY=master_key,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        NO_DOCS="True",
        NO_REDOC="True",
        PYTHONUNBUFFERED="1",
    )
    cmd = [str(_find_litellm()), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    ready = f"{root}/health/readiness"
    # uvicorn shuts LiteLLM down gracefully on SIGTERM ("Application shutdown complete") and then
    # re-raises the signal, so a clean stop ends with status -15.
    ok = (0, -signal.SIGTERM)
    for _ in _run("litellm", cmd, env, workdir, workdir / "litellm.log", ready, LITELLM_STARTUP_TIMEOUT_S, ok):
        yield root, master_key


@pytest.fixture(scope="session")
def client(proxy):
    """The official SDK pointed at the LiteLLM proxy."""
    root, key = proxy
    c = OpenAI(base_url=f"{root}/v1", api_key=key, max_retries=0, timeout=60.0)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def direct(ragstore: str):
    """The official SDK pointed straight at ragstore, to see what the proxy really did there."""
    c = OpenAI(base_url=f"{ragstore}/v1", api_key="direct", max_retries=0, timeout=30.0)
    try:
        yield c
    finally:
        c.close()
