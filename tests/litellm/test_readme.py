"""The README's LiteLLM snippet is what this suite runs: its config.yaml is tests/litellm's
(same settings), and its Python runs as written through the proxy."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "README.md"


def blocks(lang: str) -> list[str]:
    text = README.read_text()
    at = text.index("### Use it through LiteLLM\n")
    end = text.index("\n### ", at + 1)
    return re.findall(r"```" + lang + r"\n(.*?)```", text[at:end], re.S)


def test_readme_config_is_the_suites(proxy):
    (config,) = blocks("yaml")
    assert yaml.safe_load(config) == yaml.safe_load((HERE / "config.yaml").read_text())


def test_readme_python_runs_through_the_proxy(proxy, direct, tmp_path, monkeypatch):
    root, key = proxy
    (code,) = blocks("python")
    code = code.replace("http://127.0.0.1:4000", root)
    (tmp_path / "doc.txt").write_text("Basalt forms when lava cools quickly at the surface.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LITELLM_MASTER_KEY", key)
    before = {f.id for f in direct.files.list()}
    scope: dict = {}
    exec(code, scope)
    created = {f.id for f in direct.files.list()} - before
    assert created == {scope["f"].id}, "the file reached ragstore"
    assert direct.vector_stores.retrieve(scope["vs"].id).file_counts.completed == 1
