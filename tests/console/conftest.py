"""Fixtures for the web console's browser test.

The server is started by the openai SDK suite's own helper (`start_server` in
tests/python/conftest.py: `ragstore serve` from $RAGSTORE_BIN on a free port, a throw-away data
directory, an API key made with `ragstore keys create`), loaded under a name of its own so that it
is not confused with this conftest. The browser is Debian's Chromium (`apt-get install chromium`,
or $CHROMIUM), driven by Playwright; Playwright's own browser download is never used.

Screenshots go to $RAGSTORE_CONSOLE_SCREENSHOTS, by default target/console-screenshots/ (emptied
first), so they outlive pytest's temporary directories.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]


def _load_sdk_conftest():
    path = REPO_ROOT / "tests" / "python" / "conftest.py"
    spec = importlib.util.spec_from_file_location("ragstore_sdk_conftest", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sdk = _load_sdk_conftest()

# Without these a headless Chromium on a machine with no network stalls on its own background
# traffic (QUIC, component updates, sync), and without a sandbox it runs as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_report_header(config):
    from importlib.metadata import version

    return f"playwright {version('playwright')}, chromium {_chromium()}"


def _chromium() -> str:
    return os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["sdk.Server"]:
    """A `ragstore serve` with an API key (`server.api_key`), for the whole session."""
    yield from sdk.start_server(tmp_path_factory.mktemp("ragstore"))


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    path = _chromium()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"no Chromium at {path}: apt-get install chromium, or set CHROMIUM", pytrace=False)
    b = playwright.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where each step's screenshot goes (emptied at the start of the session)."""
    out = Path(os.environ.get("RAGSTORE_CONSOLE_SCREENSHOTS", REPO_ROOT / "target" / "console-screenshots"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out
