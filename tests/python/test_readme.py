"""The README's Python snippets run as written against a real server (only the address and
the files they open are provided)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDRESS = "http://127.0.0.1:8321"


def snippet(heading: str, lang: str) -> str:
    """The first ```lang block after the line `heading`."""
    text = README.read_text()
    at = text.index(heading + "\n")
    m = re.compile(r"```" + lang + r"\n(.*?)```", re.S).search(text, at)
    assert m, f"no {lang} block after {heading!r}"
    return m.group(1)


def run(code: str, server: str, cwd: Path) -> str:
    assert README_ADDRESS in code
    code = code.replace(README_ADDRESS, server)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"--- code\n{code}\n--- stderr\n{done.stderr}"
    return done.stdout


def test_files_snippet(server: str, tmp_path: Path):
    (tmp_path / "hello.txt").write_text("hello ragstore\n")
    (tmp_path / "big.bin").write_bytes(bytes(range(256)) * 1000)
    out = run(snippet("## Use it", "python"), server, tmp_path)
    assert "b'hello ragstore\\n'" in out
    assert "completed file-" in out


def test_vector_store_snippet(server: str, tmp_path: Path):
    (tmp_path / "handbook.md").write_text(
        "# Operations handbook\n\nTo rotate the TLS certificates, run `certbot renew` on each "
        "load balancer and reload nginx. Certificates expire after 90 days.\n"
    )
    # It goes on from the files snippet, whose `client` it uses.
    client = 'from openai import OpenAI\nclient = OpenAI(base_url="http://127.0.0.1:8321/v1", api_key="anything")\n'
    out = run(client + snippet("### Vector stores and search", "python"), server, tmp_path)
    assert "handbook.md" in out and "certbot" in out
