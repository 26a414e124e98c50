"""The README's llama-stack-client snippet runs as written against a real server (only the
address and the file it opens are provided)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDRESS = "http://127.0.0.1:8321"


def test_readme_snippet(server: str, tmp_path: Path):
    text = README.read_text()
    at = text.index("### Use it from llama-stack-client\n")
    m = re.compile(r"```python\n(.*?)```", re.S).search(text, at)
    assert m
    code = m.group(1)
    assert README_ADDRESS in code
    (tmp_path / "handbook.md").write_text(
        "# Operations handbook\n\nTo rotate the TLS certificates, run `certbot renew` on each "
        "load balancer and reload nginx.\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code.replace(README_ADDRESS, server)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"--- code\n{code}\n--- stderr\n{done.stderr}"
    assert "handbook.md" in done.stdout and "certbot" in done.stdout, done.stdout
