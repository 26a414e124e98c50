"""The README's Python snippets run as written against a real server (only the address, the API
key and the files they open are provided)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDRESS = "http://127.0.0.1:8321"
# The README's placeholder key; the session server has a real one (`ragstore keys create`).
README_API_KEY = 'api_key="anything"'


def snippet(heading: str, lang: str) -> str:
    """The first ```lang block after the line `heading`."""
    text = README.read_text()
    at = text.index(heading + "\n")
    m = re.compile(r"```" + lang + r"\n(.*?)```", re.S).search(text, at)
    assert m, f"no {lang} block after {heading!r}"
    return m.group(1)


def run(code: str, server: str, api_key: str, cwd: Path) -> str:
    """Runs `code` against `server` with `api_key`: in place of the README's placeholder key, and
    as OPENAI_API_KEY for a client that leaves the key to the SDK."""
    assert README_ADDRESS in code
    code = code.replace(README_ADDRESS, server).replace(README_API_KEY, f"api_key={api_key!r}")
    env = {**os.environ, "OPENAI_API_KEY": api_key}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, f"--- code\n{code}\n--- stderr\n{done.stderr}"
    return done.stdout


def test_files_snippet(server: str, api_key: str, tmp_path: Path):
    (tmp_path / "hello.txt").write_text("hello ragstore\n")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 1000)
    out = run(snippet("## Use it", "python"), server, api_key, tmp_path)
    assert "b'hello ragstore\\n'" in out
    assert "completed file-" in out


def test_vector_store_snippet(server: str, api_key: str, tmp_path: Path):
    (tmp_path / "handbook.md").write_text(
        "# Operations handbook\n\nTo rotate the TLS certificates, run `certbot renew` on each "
        "load balancer and reload nginx. Certificates expire after 90 days.\n"
    )
    # It goes on from the files snippet, whose `client` it uses.
    client = f'from openai import OpenAI\nclient = OpenAI(base_url="{README_ADDRESS}/v1", {README_API_KEY})\n'
    out = run(client + snippet("### Vector stores and search", "python"), server, api_key, tmp_path)
    assert "handbook.md" in out and "certbot" in out
