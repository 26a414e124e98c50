"""Real documents nobody here wrote: the Debian Reference as PDF, HTML chapters, and DOCX/ODT/EPUB
versions pandoc made of one chapter (and RTF), fetched by `scripts/fetch-corpus.sh` (the test command runs
it) with their reference text from `pdftotext` and `pandoc -t plain`.

Two kinds of check:
- fidelity: the text ragstore extracts (the `extract` example, the same code the server runs)
  against the reference, as word recall and precision, held to the targets of
  `scripts/fidelity.py` (recall >= 0.97, precision >= 0.95);
- end to end through the SDK: the documents go into a vector store on a server with default
  limits, every one completes, and a sentence from the PDF finds its own page.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest

from conftest import REPO_ROOT, Server, start_server

# The measure and targets are scripts/fidelity.py's own.
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from fidelity import PRECISION, RECALL, words  # noqa: E402

_env_corpus = os.environ.get("RAGSTORE_CORPUS_DIR")
CORPUS = Path(_env_corpus) if _env_corpus else REPO_ROOT / "tests" / "corpus"
if not (CORPUS / ".complete").exists():
    if _env_corpus:
        # The test command fetched it: a missing corpus there is a failure, not a skip.
        raise RuntimeError(f"RAGSTORE_CORPUS_DIR={_env_corpus} has no complete corpus")
    pytest.skip(
        f"no corpus at {CORPUS}: run scripts/fetch-corpus.sh", allow_module_level=True
    )

DOCUMENTS = [
    "debian-reference.en.pdf",
    "ch02.en.html",
    "ch07.en.html",
    "index.en.html",
    "ch02.en.docx",
    "ch02.en.odt",
    "ch02.en.epub",
    "ch02.en.rtf",
]


def _extract_binary() -> Path:
    env = os.environ.get("RAGSTORE_BIN")
    target = Path(env).parent if env else REPO_ROOT / "target" / "debug"
    path = target / "examples" / "extract"
    if not path.is_file():
        pytest.fail(f"{path} not found: build it with `cargo build --all-targets`", pytrace=False)
    return path


@pytest.mark.parametrize("name", DOCUMENTS)
def test_extraction_matches_the_reference_text(name: str):
    proc = subprocess.run(
        [str(_extract_binary()), str(CORPUS / name)], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    got = words(proc.stdout.decode())
    ref = words((CORPUS / f"{name}.ref.txt").read_text(errors="replace"))
    common = sum((got & ref).values())
    recall = common / sum(ref.values())
    precision = common / max(1, sum(got.values()))
    missing = (ref - got).most_common(15)
    assert recall >= RECALL, f"{name}: recall {recall:.3f}; most missed words: {missing}"
    assert precision >= PRECISION, (
        f"{name}: precision {precision:.3f}; most extra words: {(got - ref).most_common(15)}"
    )


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory):
    """A server with the default limits: the PDF is larger than the session server accepts."""
    yield from start_server(tmp_path_factory.mktemp("ragstore-corpus"))


def _wait(client: openai.OpenAI, store_id: str, file_ids: list[str], timeout_s: float = 600):
    deadline = time.monotonic() + timeout_s
    while True:
        files = {f: client.vector_stores.files.retrieve(f, vector_store_id=store_id) for f in file_ids}
        if all(v.status != "in_progress" for v in files.values()):
            return files
        assert time.monotonic() < deadline, {f: v.status for f, v in files.items()}
        time.sleep(0.5)


def test_real_documents_through_a_vector_store(default_server: Server):
    client = openai.OpenAI(
        base_url=default_server.url + "/v1", api_key=default_server.api_key, max_retries=0, timeout=60
    )
    store = client.vector_stores.create(name="debian-reference")
    attached = {}
    for name, kind in [
        ("debian-reference.en.pdf", "pdf"),
        ("ch07.en.html", "html"),
        ("ch02.en.docx", "docx"),
    ]:
        with open(CORPUS / name, "rb") as fh:
            uploaded = client.files.create(file=(name, fh), purpose="assistants")
        client.vector_stores.files.create(
            vector_store_id=store.id, file_id=uploaded.id, attributes={"kind": kind}
        )
        attached[kind] = uploaded.id

    done = _wait(client, store.id, list(attached.values()))
    for kind, file_id in attached.items():
        assert done[file_id].status == "completed", (kind, done[file_id].last_error)
        assert done[file_id].usage_bytes > 0

    # A sentence of chapter 2, asked of the PDF only, comes back from the page pdftotext
    # found it on (pages are form-feed separated there), with the page in the hit's `extra`.
    # A 250-token chunk dilutes one sentence, so it need not rank first; it must rank.
    sentence = "The Debian archive is offered by many remote mirror sites"
    pages = (CORPUS / "debian-reference.en.pdf.ref.txt").read_text().split("\f")
    expected = [i + 1 for i, page in enumerate(pages) if sentence in " ".join(page.split())]
    assert len(expected) == 1, expected
    hits = list(
        client.vector_stores.search(
            store.id,
            query=sentence,
            filters={"type": "eq", "key": "kind", "value": "pdf"},
            max_num_results=10,
        )
    )
    assert hits and all(h.attributes["kind"] == "pdf" for h in hits)
    assert all(h.filename == "debian-reference.en.pdf" for h in hits)
    assert all(isinstance(h.extra["page"], int) for h in hits), [h.extra for h in hits]
    found = [h for h in hits if sentence in " ".join(h.content[0].text.split())]
    assert found, [(h.score, h.content[0].text[:80]) for h in hits]
    first = found[0].extra["page"]
    last = found[0].extra.get("page_end", first)
    assert first <= expected[0] <= last, (found[0].extra, expected)

    # The Word version keeps the chapter's headings as sections.
    hits = list(
        client.vector_stores.search(
            store.id,
            query="aptitude regex formula",
            filters={"type": "eq", "key": "kind", "value": "docx"},
            max_num_results=5,
        )
    )
    assert hits, "no DOCX hit"
    assert any("section" in (h.extra or {}) for h in hits), [h.extra for h in hits]

    # Deleting the PDF takes every one of its chunks out of search.
    client.files.delete(attached["pdf"])
    deadline = time.monotonic() + 120
    while True:
        hits = list(
            client.vector_stores.search(
                store.id,
                query=sentence,
                filters={"type": "eq", "key": "kind", "value": "pdf"},
            )
        )
        if not hits:
            break
        assert time.monotonic() < deadline, "deleted PDF still searchable"
        time.sleep(0.5)
